"""Recipe steps called directly (no Prefect): each does what its CLI command does."""

from __future__ import annotations

import textwrap

import pytest

from curate.config import load_recipe
from curate.errors import CurateError
from curate.flows.steps import STEPS, StepContext
from tests.conftest import count


def run_step(store, tmp_path, text: str, index: int = 0):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    recipe = load_recipe(path)
    spec = recipe.steps[index]
    return STEPS[spec.kind].run(StepContext(store=store, recipe=recipe, log=lambda m: None), spec.params)


def test_synth_step_lands_verified_synthetic_samples(store, tmp_path):
    result = run_step(store, tmp_path, """\
        name: s
        steps:
          - synth: {n: 20, no_llm: true, seed: 4}
    """)
    assert result.counts["kept"] == 20 and result.run_id
    assert count(store, "SELECT count(*) FROM samples WHERE kind = 'synthetic' AND gold_answer IS NOT NULL") == 20


def test_select_step_reports_bad_selector_parameters(store, tmp_path):
    store.schema_version()
    with pytest.raises(CurateError, match="select step 'pick'.*colour"):
        run_step(store, tmp_path, """\
            name: s
            steps:
              - select: {name: pick, selector: random, budget: 3, params: {colour: red}}
        """)
    with pytest.raises(CurateError, match="unknown selector 'nope'"):
        run_step(store, tmp_path, """\
            name: s
            steps:
              - select: {name: pick, selector: nope, budget: 3}
        """)
