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


def test_score_step_scores_with_the_real_small_llm_and_then_has_nothing_left(store, tmp_path):
    recipe = """\
        name: s
        steps:
          - synth: {n: 3, no_llm: true, seed: 1}
          - score: {method: deita, where: "kind = 'synthetic'", limit: 2}
    """
    run_step(store, tmp_path, recipe, 0)
    first = run_step(store, tmp_path, recipe, 1)
    assert first.run_id and first.counts["ok"] == 2
    scorer = "deita:smollm2-135m"         # complexity x quality, the value selectors read
    assert count(store, "SELECT count(*) FROM scores WHERE scorer = ? AND status = 'ok'", [scorer]) == 2
    again = run_step(store, tmp_path, recipe.replace("limit: 2", "limit: 3"), 1)
    assert again.counts["already"] == 2        # only the third sample is new work
    assert count(store, "SELECT count(*) FROM scores WHERE scorer = ?", [scorer]) == 3


def test_score_step_names_unknown_methods_and_options(store, tmp_path):
    store.schema_version()
    with pytest.raises(CurateError, match="unknown method 'vibes'.*deita"):
        run_step(store, tmp_path, """\
            name: s
            steps:
              - score: {method: vibes}
        """)
    with pytest.raises(CurateError, match="score rubric.*colour"):
        run_step(store, tmp_path, """\
            name: s
            steps:
              - score: {method: rubric, params: {colour: red}}
        """)
    with pytest.raises(CurateError, match="score deita: unknown option where .where and limit go beside params"):
        run_step(store, tmp_path, """\
            name: s
            steps:
              - score: {method: deita, params: {where: "chars < 10"}}
        """)


def test_label_step_tags_by_embedding_and_by_source(store, tmp_path):
    vocab = tmp_path / "tags.json"
    vocab.write_text('["arithmetic", "money and prices", "geometry", "cooking recipes"]')
    recipe = """\
        name: s
        steps:
          - synth: {n: 6, no_llm: true, seed: 2, source: rvsyn-test}
          - label: {method: embedding, label_vocab: tags.json, top_k: 2, floor: 0.0}
          - label: {method: field, source: name}
          - label: {method: magic}
    """
    run_step(store, tmp_path, recipe, 0)
    by_embedding = run_step(store, tmp_path, recipe, 1)
    assert by_embedding.counts["labelled"] == 6 and by_embedding.run_id
    with store.connect() as con:
        labels = {label for (label,) in con.execute(
            "SELECT DISTINCT label FROM labels WHERE origin = 'embedding'").fetchall()}
    assert labels and labels <= {"arithmetic", "money and prices", "geometry", "cooking recipes"}
    assert count(store, "SELECT count(*) FROM labels WHERE origin = 'embedding'") == 12   # top 2 each
    run_step(store, tmp_path, recipe, 2)
    assert count(store, "SELECT count(*) FROM labels WHERE origin = 'source' AND label = 'rvsyn-test'") == 6
    with pytest.raises(CurateError, match="unknown method 'magic'"):
        run_step(store, tmp_path, recipe, 3)


def test_difficulty_step_validates_its_options_before_loading_a_model(store, tmp_path):
    store.schema_version()
    for params, message in (("{judge: oracle}", "judge 'oracle'"), ("{colour: red}", "score difficulty.*colour"),
                            ("{judge: llm, judge_model: big}", "judge_.*unknown option model")):
        with pytest.raises(CurateError, match=message):
            run_step(store, tmp_path, f"""\
                name: s
                steps:
                  - score: {{method: difficulty, params: {params}}}
            """)
