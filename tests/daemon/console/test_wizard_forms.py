"""The import wizard's forms: what each step sends, and what an edit or a redeploy
starts from (the script's saved configuration)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from multidict import MultiDict, MultiDictProxy

from daemon.config.daemon_config import Config
from daemon.console import wizard_forms
from daemon.core.errors import BadRequest
from daemon.core.models import (
    DRAFT,
    MASK,
    READY,
    ArchiveRef,
    EnvVar,
    Resources,
    Script,
    Settings,
    StepSpec,
    now_iso,
)  # fmt: skip

STEP = StepSpec((("name", "s"),), (("greeting", "s"),))


def a_script(status: str = DRAFT, step: StepSpec | None = None) -> Script:
    now = now_iso()
    settings = Settings(
        (EnvVar("TOKEN", "hidden", True), EnvVar("MODE", "fast", False)), 45,
        secrets=("API_KEY",), step=step,
    )  # fmt: skip
    return Script(
        1, "app", "first", "python", "3.11.2", status, "root", now, now,
        settings, Resources(1, 2, 60, "1vcpu-2gb"),
        ArchiveRef("p.zip", "ab" * 32, 10, "/x/p.zip"), ("f",), None,
    )  # fmt: skip


def form(pairs: list[tuple[str, str]]) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(pairs))


def test_a_drafts_edit_may_change_its_name_language_and_version() -> None:
    state = wizard_forms.from_script(a_script(DRAFT), "edit")
    assert state["mode"] == "edit" and state["target"] == "app" and not state["locked"]
    fields = {"name": "renamed", "description": "d2", "language": "python", "kind": "functions"}
    assert wizard_forms.general_fields(fields, locked=False)["name"] == "renamed"


def test_an_edit_after_a_deploy_and_a_redeploy_lock_name_language_and_version() -> None:
    assert wizard_forms.from_script(a_script(READY), "edit")["locked"]
    assert wizard_forms.from_script(a_script(DRAFT), "redeploy")["locked"]
    fields = {"name": "other", "language": "javascript", "description": "d", "kind": "step"}
    assert wizard_forms.general_fields(fields, locked=True) == {"description": "d", "kind": "step"}


def test_the_saved_configuration_fills_the_steps_with_secrets_masked() -> None:
    state = wizard_forms.from_script(a_script(step=STEP), "edit")
    assert state["rows"][0] == {"key": "TOKEN", "value": MASK, "secret": True}
    assert state["rows"][1] == {"key": "MODE", "value": "fast", "secret": False}
    assert state["secrets"] == ["API_KEY"]
    assert state["general"]["kind"] == state["general"]["kept_kind"] == "step"
    assert state["step"] == {"inputs": {"name": "s"}, "outputs": {"greeting": "s"}}
    assert state["resources_form"]["cpu_target"] == "60"
    assert "hidden" not in repr(state)


def test_runtime_settings_always_send_the_granted_secrets() -> None:
    config = Config()
    rows = [{"key": "MODE", "value": "fast", "secret": False}]
    none = wizard_forms.runtime_body(form([("timeout_s", "45")]), rows, config)
    assert none["secrets"] == []  # unticking every one revokes them
    body = wizard_forms.runtime_body(
        form([("timeout_s", "45"), ("secrets", "API_KEY"), ("secrets", "DB_URL")]), rows, config
    )
    assert body["secrets"] == ["API_KEY", "DB_URL"] and body["timeout_s"] == 45
    with pytest.raises(BadRequest, match="secret 'MODE' is granted and is an env variable"):
        wizard_forms.runtime_body(form([("timeout_s", "45"), ("secrets", "MODE")]), rows, config)


def test_the_body_of_a_new_script_and_of_a_locked_one() -> None:
    state = {
        "general": {"name": "app", "description": "d", "language": "python", "version": "",
                    "kind": "functions", "archive_id": "abc123"},
        "runtime": {"env": [], "timeout_s": 30, "secrets": []},
        "resources": {"min_replicas": 1, "max_replicas": 1, "profile": "1vcpu-2gb"},
    }  # fmt: skip
    body = wizard_forms.script_body(state)
    assert body["name"] == "app" and body["archive_id"] == "abc123"
    assert "language_version" not in body and "kind" not in body
    locked = wizard_forms.script_body({**state, "locked": True})
    assert not {"name", "language", "language_version"} & set(locked)
    assert locked["description"] == "d" and locked["timeout_s"] == 30


def test_runtime_settings_send_concurrency_and_workers_as_the_api_checks_them() -> None:
    config, rows = Config(), []
    body = wizard_forms.runtime_body(
        form([("timeout_s", "45"), ("concurrency", "8"), ("workers_per_replica", "2")]),
        rows, config,
    )  # fmt: skip
    assert (body["concurrency"], body["workers_per_replica"]) == (8, 2)
    default = wizard_forms.runtime_body(
        form([("timeout_s", "45"), ("concurrency", "1"), ("workers_per_replica", " ")]),
        rows, config,
    )  # fmt: skip
    assert (default["concurrency"], default["workers_per_replica"]) == (1, None)  # one per vCPU
    refusals = {
        ("concurrency", "65"): "concurrency = 65 is not allowed: an integer from 1 to 64",
        ("concurrency", "0"): "concurrency = 0 is not allowed: an integer from 1 to 64",
        ("concurrency", "many"): "concurrency = 'many' is not allowed: a whole number",
        ("workers_per_replica", "17"): "workers_per_replica = 17 is not allowed: an integer "
        "from 1 to 16, or null for one per whole vCPU of the profile",
    }
    for (field, value), said in refusals.items():
        with pytest.raises(BadRequest) as info:
            wizard_forms.runtime_body(form([("timeout_s", "45"), (field, value)]), rows, config)
        assert info.value.message == said and info.value.extra["field"] == field


def test_a_code_step_runs_at_concurrency_one_whatever_the_form_says() -> None:
    fields = form([("timeout_s", "45"), ("concurrency", "8")])
    body = wizard_forms.runtime_body(fields, [], Config(), "step")
    assert body["concurrency"] == 1
    no_field = wizard_forms.runtime_body(form([("timeout_s", "45")]), [], Config(), "step")
    assert no_field["concurrency"] == 1  # the field is shown disabled: not sent


def test_an_edit_starts_from_the_saved_concurrency_and_workers() -> None:
    script = a_script()
    settings = replace(script.settings, concurrency=16, workers_per_replica=4)
    state = wizard_forms.from_script(replace(script, settings=settings), "edit")
    assert state["runtime_form"]["concurrency"] == "16"
    assert state["runtime_form"]["workers_per_replica"] == "4"
    unset = wizard_forms.from_script(script, "edit")["runtime_form"]
    assert (unset["concurrency"], unset["workers_per_replica"]) == ("1", "")
