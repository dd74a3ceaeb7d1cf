"""Concurrency and workers per replica in the console's own templates: the Runtime
Settings step (fixed at 1 for a code step), Review, and the Overview's Runtime
Settings card. Rendered by jinja2 with the console's filters, as a page would be."""

from __future__ import annotations

from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest
from aiohttp import web

from daemon.config.daemon_config import Config
from daemon.console import app as console_app
from daemon.console import filters, wizard_forms
from daemon.console.pages import menu, status_class
from daemon.core.models import CONCURRENCY_RANGE, DEPLOYED, WORKERS_PER_REPLICA_RANGE
from tests.daemon.console.test_wizard_forms import STEP, a_script

HERE = Path(console_app.__file__).parent


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
    )  # fmt: skip
    app = web.Application()
    app.router.add_static("/static/", HERE / "static", name="static")
    filters.install(templates, app)
    return templates


class Page(HTMLParser):
    """A rendered page's elements by id (their attributes) and its terms (dt: dd text)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.terms: dict[str, str] = {}
        self._open: str | None = None  # "dt" or "dd" while in one
        self._text: list[str] = []
        self._term = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.by_id[str(found["id"])] = found
        if tag in ("dt", "dd"):
            self._open, self._text = tag, []

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != self._open:
            return
        text = " ".join("".join(self._text).split())
        if tag == "dt":
            self._term = text
        else:
            self.terms[self._term] = text
        self._open = None


def page(env: jinja2.Environment, template: str, **context: Any) -> Page:
    base = {"user": "alice", "csrf_token": "t", "flashes": [], "error": None}
    return Page(env.get_template(template).render(base | context))


def wizard(env: jinja2.Environment, step: str, state: dict[str, Any]) -> Page:
    return page(
        env, f"wizard_{step}.html", steps=wizard_forms.STEPS, step=step, done=[], w=state,
        config=Config(), egress_choices=wizard_forms.EGRESS_CHOICES, account_secrets=[],
        concurrency_range=CONCURRENCY_RANGE, workers_range=WORKERS_PER_REPLICA_RANGE,
        terms="", profiles=Config().profiles,
    )  # fmt: skip


def described(soup: Page, term: str) -> str:
    assert term in soup.terms, f"no {term!r} on the page"
    return soup.terms[term]


def test_the_runtime_step_asks_for_both_and_fixes_a_steps_concurrency(
    env: jinja2.Environment,
) -> None:
    script = a_script()
    saved = replace(script.settings, concurrency=16, workers_per_replica=4)
    state = wizard_forms.from_script(replace(script, settings=saved), "edit")
    state["rows"] = [{"key": "", "value": "", "secret": False}]
    soup = wizard(env, "runtime", state)
    concurrency, workers = soup.by_id["concurrency"], soup.by_id["workers"]
    assert (concurrency["name"], concurrency["value"]) == ("concurrency", "16")
    assert (concurrency["min"], concurrency["max"]) == ("1", "64")
    assert (workers["name"], workers["value"], workers["max"]) == ("workers_per_replica", "4", "16")

    state["general"]["kind"] = "step"
    fixed = wizard(env, "runtime", state).by_id["concurrency"]
    assert "disabled" in fixed and fixed["value"] == "1" and "name" not in fixed


def test_review_shows_what_will_be_saved(env: jinja2.Environment) -> None:
    state = wizard_forms.from_script(a_script(), "edit")
    state["runtime"] = {"env": [], "timeout_s": 45, "secrets": [], "concurrency": 8,
                        "workers_per_replica": None}  # fmt: skip
    state["resources"] = {"min_replicas": 1, "max_replicas": 1, "profile": "1vcpu-2gb"}
    soup = wizard(env, "review", state)
    assert described(soup, "Concurrency") == "8 per worker"
    assert described(soup, "Workers per Replica") == "one per whole vCPU of the profile"
    state["runtime"]["workers_per_replica"] = 3
    assert described(wizard(env, "review", state), "Workers per Replica") == "3"


def overview(env: jinja2.Environment, script: Any, workers: int) -> Page:
    return page(
        env, "overview.html", script=script, workers=workers, progress=None,
        status_class=status_class(script.status), tabs=[], tab="overview", base="/s",
        menu=menu(script.status), can_redeploy=False, confirm=None, polling=False,
        deployment=None, profile=Config().default_profile,
    )  # fmt: skip


def test_the_overview_shows_them_on_the_runtime_card(env: jinja2.Environment) -> None:
    script = replace(a_script(), status=DEPLOYED)
    script = replace(script, settings=replace(script.settings, concurrency=32))
    soup = overview(env, script, 1)
    assert described(soup, "Concurrency") == "32 per worker"
    assert described(soup, "Workers per Replica") == "1 (one per whole vCPU of the profile)"
    set_two = replace(script, settings=replace(script.settings, workers_per_replica=2))
    assert described(overview(env, set_two, 2), "Workers per Replica") == "2"
    step = replace(script, settings=replace(script.settings, step=STEP))
    assert described(overview(env, step, 1), "Concurrency").startswith("1 per worker (a code step")
