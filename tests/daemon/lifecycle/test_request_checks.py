"""Request checks the console shares with the admin API: a project's kind and the
account's allocation."""

from __future__ import annotations

import pytest

from daemon.core.errors import BadRequest
from daemon.lifecycle import request_checks


def test_the_kind_is_functions_or_step() -> None:
    assert request_checks.kind("step") == "step"
    with pytest.raises(BadRequest, match="kind = 'steps' is not allowed: functions or step"):
        request_checks.kind("steps")


def test_a_project_of_another_kind_than_chosen_is_an_error_with_its_fix() -> None:
    assert request_checks.kind_mismatch("step", "step") is None
    no_toml = request_checks.kind_mismatch("step", "functions")
    assert no_toml is not None and no_toml["level"] == "error"
    assert "no step.toml" in no_toml["message"] and "[inputs]" in no_toml["fix"]
    extra = request_checks.kind_mismatch("functions", "step")
    assert extra is not None and "remove step.toml" in extra["fix"]


@pytest.mark.parametrize(("given", "micro"), [("250", 250_000_000), (0.5, 500_000), (0, 0)])
def test_an_allocation_is_credits_from_0_to_1e9(given: object, micro: int) -> None:
    assert request_checks.allocation_micro(given) == micro


@pytest.mark.parametrize("given", ["-1", "1e10", "lots", "", True, None, "nan"])
def test_a_bad_allocation_names_the_range(given: object) -> None:
    with pytest.raises(BadRequest, match="a number of credits from 0 to 1e9"):
        request_checks.allocation_micro(given)
