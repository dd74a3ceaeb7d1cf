"""step.toml: the spec of a code step, as validation and the deployer read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.archive.steps import StepSpecError, parse_step_toml, read_step_spec

OBJECT = "6f1c0c6e-8d4b-4a51-9a4e-0b7c8e1d2f30"


def test_a_spec_keeps_its_declaration_order() -> None:
    spec = parse_step_toml(
        f'[inputs]\nname = "s"\nwho = "e<{OBJECT}>"\nfiles = \'a["f"]\'\n'
        '[outputs]\ngreeting = "s"\ntags = "a[s]"\n'.encode()
    )
    assert spec.inputs == (("name", "s"), ("who", f"e<{OBJECT}>"), ("files", 'a["f"]'))
    assert json.loads(spec.json_text())["outputs"] == {"greeting": "s", "tags": "a[s]"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[inputs]\n"first name" = "s"\n', 'input name "first name" is not an identifier'),
        ('[inputs]\nclass = "s"\n', 'input name "class" is not an identifier'),
        ('[outputs]\nlog = "s"\n', 'output name "log" is reserved'),
        ('[inputs]\n_x = "s"\n', 'input name "_x" is reserved'),
        ('[inputs]\nx = "q"\n', 'input "x": unknown type code'),
        ('[inputs]\nx = "a[a[s]]"\n', "unknown type code"),
        ('[inputs]\nx = "e<nope>"\n', "unknown type code"),
        ("[extra]\n", 'unknown section "extra"'),
        ("inputs = 3\n", "[inputs] must be a table"),
        ("[inputs\n", "not valid TOML"),
    ],
)
def test_every_problem_is_named(text: str, problem: str) -> None:
    with pytest.raises(StepSpecError) as caught:
        parse_step_toml(text.encode())
    assert problem in str(caught.value)


def test_problems_come_all_at_once() -> None:
    with pytest.raises(StepSpecError) as caught:
        parse_step_toml(b'[inputs]\n"a b" = "s"\n[outputs]\nlog = "q"\n')
    assert len(caught.value.problems) == 2


def test_a_project_without_step_toml_is_not_a_step(tmp_path: Path) -> None:
    assert read_step_spec(tmp_path) is None
    (tmp_path / "step.toml").write_text('[inputs]\nname = "s"\n')
    assert json.loads(read_step_spec(tmp_path) or "") == {"inputs": {"name": "s"}, "outputs": {}}
