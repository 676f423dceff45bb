"""Each quality-scoring method through the real transformers backend with SmolLM2-135M on LIMA samples,
then the selectors on what it stored. The model is weak: these prove the path, not the quality."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.ingest import ingest
from curate.store import Store

MODEL = "smollm2-135m"
SCORERS = {
    "deita": [f"deita_complexity:{MODEL}", f"deita_quality:{MODEL}", f"deita:{MODEL}", f"deita_mean:{MODEL}"],
    "rubric": [f"rubric:educational_value:{MODEL}"],
    "pairwise": [f"qurating:educational_value:{MODEL}"],
}
RANGES = {"deita_complexity": (1, 6), "deita_quality": (1, 6), "rubric": (1, 10)}


def _run(store: Store, *args, expect: int = 0):
    result = CliRunner().invoke(app, ["--db", store.path, *map(str, args)], catch_exceptions=False)
    assert result.exit_code == expect, f"{args}: exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


def _shortest(n: int) -> str:
    # The shortest LIMA samples keep the CPU time of a 135M model in check.
    return f"sample_id IN (SELECT sample_id FROM samples ORDER BY chars, sample_id LIMIT {n})"


def _scored_store(tmp_path_factory, shared_data, n: int, comparisons: int) -> Store:
    store = Store(tmp_path_factory.mktemp("real") / "curate.duckdb")
    ingest(store, [str(shared_data / "instruct" / "lima_train.jsonl")])
    where = _shortest(n)
    common = ["--backend", "transformers", "--model", MODEL, "--where", where]
    _run(store, "score", "quality", "--method", "deita", *common)
    _run(store, "score", "quality", "--method", "rubric", "--top-logprobs", 1000, *common)
    _run(store, "score", "quality", "--method", "pairwise", "--comparisons", comparisons, "--max-chars", 400,
         *common)
    return store


def _check_scores(store: Store, n: int) -> dict[str, int]:
    ok = {}
    with store.connect() as con:
        for names in SCORERS.values():
            for name in names:
                rows = con.execute("SELECT value, status, error FROM scores WHERE scorer = ?", [name]).fetchall()
                assert len(rows) == n, name
                for value, status, error in rows:
                    if status == "ok":
                        assert value is not None and math.isfinite(value) and error is None
                        low, high = RANGES.get(name.split(":")[0], (-math.inf, math.inf))
                        assert low <= value <= high, (name, value)
                    else:
                        assert status == "failed" and value is None and error, (name, error)
                ok[name] = sum(status == "ok" for _, status, _ in rows)
        # both orders of every pair were asked and kept
        judged = con.execute("SELECT count(*), count(p_forward), count(p_backward) FROM pairwise_judgments").fetchone()
        assert judged[0] > 0 and judged[1] > 0
        runs = con.execute("SELECT kind, status FROM runs WHERE kind LIKE 'score:%' ORDER BY started_at").fetchall()
    assert runs == [("score:deita", "completed"), ("score:rubric", "completed"), ("score:pairwise", "completed")]
    return ok


def _select_on_scores(store: Store, ok: dict[str, int], n: int, budget: int) -> None:
    usable = [name for name, n_ok in ok.items() if n_ok >= budget]
    assert usable, f"no scorer has {budget} successful scores: {ok}"
    for name in usable:
        run_id = _run(store, "select", "quality", "--score", name, "--budget", budget, "--where", _shortest(n)
                      ).stdout.strip().splitlines()[-1]
        with store.connect() as con:
            assert con.execute("SELECT count(*) FROM selections WHERE run_id = ? AND selected", [run_id]).fetchone()[0] \
                == budget
    _run(store, "embed", "--view", "conversation", "--where", _shortest(n))
    deita_score = f"deita:{MODEL}"
    if ok[deita_score]:
        run_id = _run(store, "select", "deita", "--score", deita_score, "--budget", budget, "--where", _shortest(n)
                      ).stdout.splitlines()[-1]
        with store.connect() as con:
            picked = con.execute("SELECT count(*) FROM selections WHERE run_id = ? AND selected", [run_id]).fetchone()[0]
        assert 1 <= picked <= min(budget, ok[deita_score])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent")
    return _scored_store(tmp_path_factory, SHARED_DATA, 3, comparisons=1)


def test_each_method_through_smollm_on_lima(small):
    ok = _check_scores(small, 3)
    assert ok[f"deita:{MODEL}"] >= 1          # DEITA's 1..6 tokens are all in SmolLM2's top-1000 for most prompts
    _select_on_scores(small, ok, 3, 2)


def test_rescoring_reuses_the_response_cache(small):
    result = _run(small, "score", "quality", "--method", "deita", "--backend", "transformers", "--model", MODEL,
                  "--where", _shortest(3))
    with small.connect() as con:
        failed = con.execute("SELECT count(*) FROM scores WHERE scorer = ? AND status = 'failed'",
                             [f"deita:{MODEL}"]).fetchone()[0]
    # samples with a deita score are skipped; failed ones are asked again, from the response cache
    expected = "nothing to score (3 already scored" if not failed else f"{3 - failed} already scored"
    assert expected in result.stdout


@pytest.mark.slow
def test_each_method_on_20_lima_samples_then_select(tmp_path_factory, shared_data):
    store = _scored_store(tmp_path_factory, shared_data, 20, comparisons=2)
    ok = _check_scores(store, 20)
    _select_on_scores(store, ok, 20, 5)
    _run(store, "embed", "--where", _shortest(20))
    run_id = _run(store, "select", "kmeans", "--budget", 6, "--k", 3, "--score", f"deita:{MODEL}",
                  "--where", _shortest(20)).stdout.splitlines()[-1]
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM selections WHERE run_id = ? AND selected", [run_id]).fetchone()[0] >= 1
