"""MIG on real T0 data: labelled zero-shot against MIG's 4,531 tags, then selected; fast against dense."""

from __future__ import annotations

import json

import pytest

from curate.selectors import Pool, run_selection
from curate.selectors.mig import MIGSelector, compare_orders, greedy_dense
from tests.conftest import count

# small T0 templates (about 270 prompts) for the default run; the whole folder in the slow test
TEMPLATES = ["wiki_qa_Direct_Answer_to_Question", "wiki_qa_Generate_Question_from_Topic", "wiki_qa_Jeopardy_style",
             "wiki_qa_Topic_Prediction_Answer_Only", "wiki_qa_Topic_Prediction_Question_Only",
             "paws_labeled_final_paraphrase_task", "glue_mrpc_generate_paraphrase"]


def label_and_select(cli, store, vocab, budget):
    report = cli("label", "embedding", "--label-vocab", vocab, "--top-k", 5, "--floor", 0.2).stdout
    fast_run = cli("select", "mig", "-n", budget, "--label-origin", "embedding", "--label-vocab", vocab
                   ).stdout.strip().splitlines()[-1]
    return report, fast_run


def check_fast_against_dense(store, vocab, budget, fast_run):
    pool = Pool.from_store(store)
    selector = MIGSelector(label_origin="embedding", label_vocab=str(vocab))
    problem = selector.problem(pool)
    with store.connect() as con:
        fast_ids = [r[0] for r in con.execute("SELECT sample_id FROM selections WHERE run_id = ? AND selected "
                                              "ORDER BY rank", [fast_run]).fetchall()]
    fast = problem.rows(pool, fast_ids)
    dense = greedy_dense(problem.vectors, problem.graph.weights, 1.0, problem.phi, budget)
    comparison = compare_orders(dense.order, fast, problem.vectors, problem.propagation, problem.phi)
    assert comparison.equal_up_to_ties, comparison.describe()
    return comparison


def test_t0_templates_labelled_by_embedding_then_mig(cli, store, shared_data, tmp_path):
    # every 4th of MIG's 4,531 tags: embedding the whole vocabulary costs ~50 s of CPU (the slow test does)
    folder, vocab = shared_data / "instruct" / "t0_train_50k", tmp_path / "valid_tags_quarter.json"
    vocab.write_text(json.dumps(json.loads((shared_data / "mig" / "valid_tags.json").read_text())[::4]))
    cli("ingest", *[folder / f"{t}.jsonl" for t in TEMPLATES])
    samples = count(store, "SELECT count(*) FROM samples")
    report, run_id = label_and_select(cli, store, vocab, 50)
    assert f"of {samples} samples" in report
    with store.connect() as con:
        counts = json.loads(con.execute("SELECT counts FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
        tags = set(json.loads(vocab.read_text()))
        labels = {r[0] for r in con.execute("SELECT DISTINCT label FROM labels WHERE origin = 'embedding'").fetchall()}
    random_run = cli("select", "random", "-n", 50, "--seed", 0).stdout.strip().splitlines()[-1]
    covered = {run: count(store, "SELECT count(DISTINCT l.label) FROM selections s JOIN labels l USING (sample_id) "
                                 "WHERE s.run_id = ? AND s.selected AND l.origin = 'embedding'", [run])
               for run in (run_id, random_run)}
    assert labels <= tags and len(labels) > 20
    assert counts["selected"] == 50 and counts["lazy"] is True
    assert covered[run_id] > covered[random_run]    # information gain covers more of the label space
    check_fast_against_dense(store, vocab, 50, run_id)


@pytest.mark.slow
@pytest.mark.timeout(3600)      # embedding 47K prompts with MiniLM on 2 cores takes over 15 minutes on a busy box
def test_t0_whole_folder_select_1000(cli, store, shared_data):
    folder, vocab = shared_data / "instruct" / "t0_train_50k", shared_data / "mig" / "valid_tags.json"
    cli("ingest", folder)
    cli("label", "field", "--source", "file")
    report, run_id = label_and_select(cli, store, vocab, 1000)
    assert count(store, "SELECT count(*) FROM selections WHERE run_id = ? AND selected", [run_id]) == 1000
    comparison = check_fast_against_dense(store, vocab, 1000, run_id)
    print(f"T0: fast against dense over 1,000 picks: {comparison.describe()}")
    # the 1,000 picks cover many of T0's 242 templates
    assert count(store, "SELECT count(DISTINCT l.label) FROM selections s JOIN labels l USING (sample_id) "
                        "WHERE s.run_id = ? AND s.selected AND l.origin = 'source'", [run_id]) > 100
