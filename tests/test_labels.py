"""Labelling: from fields and sources, zero-shot by embedding, open tagging by an LLM; the label graph."""

from __future__ import annotations

import json
from collections.abc import Sequence

import networkx as nx
import numpy as np
import pytest

from curate.errors import CurateError
from curate.ingest import ingest
from curate.labels import label_samples, load_vocab
from curate.labels.llm import VocabularyMapper, by_llm, normalise_tag, parse_tags
from curate.models.embed import encode_texts
from curate.models.llm import ChatRequest, ChatResponse, Choice, LLMBackend
from curate.selectors import Pool
from tests.conftest import count, write_jsonl


def _run_id(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def _labels(store, origin) -> dict[str, list[str]]:
    with store.connect() as con:
        rows = con.execute("SELECT s.prompt, list(l.label ORDER BY l.label) FROM labels l JOIN samples s "
                           "USING (sample_id) WHERE l.origin = ? GROUP BY 1", [origin]).fetchall()
    return dict(rows)


def _failures(store, origin) -> dict[str, str]:
    with store.connect() as con:
        return dict(con.execute("SELECT s.prompt, f.error FROM label_failures f JOIN samples s USING (sample_id) "
                                "WHERE f.origin = ?", [origin]).fetchall())


def _vocab_file(tmp_path, labels, name="vocab.json"):
    path = tmp_path / name
    path.write_text(json.dumps(labels))
    return path


# -- field --------------------------------------------------------------------------------------------

def test_field_labels_from_a_json_path(cli, store, tmp_path):
    records = [{"instruction": "a", "output": "1", "category": "math"},
               {"instruction": "b", "output": "2", "category": ["math", " code ", ""]},
               {"instruction": "c", "output": "3", "category": 7},
               {"instruction": "d", "output": "4"},
               {"instruction": "e", "output": "5", "category": ["math", {"x": 1}]},
               {"instruction": "f", "output": "6", "meta": {"topic": "poetry"}}]
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", records))], dialect="alpaca")
    out = cli("label", "field", "--path", "category").stdout
    assert "labelled 2 of 6 samples with 3 labels (2 distinct), origin field" in out
    assert _labels(store, "field") == {"a": ["math"], "b": ["code", "math"]}
    failures = _failures(store, "field")
    assert set(failures) == {"c", "e"}
    assert "got a number" in failures["c"] and "non-string items" in failures["e"]
    with store.connect() as con:
        kind, params, counts = con.execute("SELECT kind, params, counts FROM runs WHERE run_id = ?",
                                           [_run_id(cli("label", "field", "--path", "meta.topic", "--origin", "topic"))]
                                           ).fetchone()
    assert kind == "label:field" and json.loads(params)["path"] == "meta.topic" and json.loads(counts)["labelled"] == 1
    assert _labels(store, "topic") == {"f": ["poetry"]}

    # a vocabulary keeps only its labels; a re-run replaces the origin's labels and failures
    cli("label", "field", "--path", "category", "--label-vocab", _vocab_file(tmp_path, ["code"]))
    assert _labels(store, "field") == {"b": ["code"]}
    failures = _failures(store, "field")
    assert set(failures) == {"a", "c", "e"} and "none of its labels is in the vocabulary" in failures["a"]
    assert _labels(store, "topic") == {"f": ["poetry"]}     # other origins untouched


def test_field_needs_one_source_of_labels(cli, store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", [{"instruction": "a", "output": "1"}]))])
    assert "give one of --path" in cli("label", "field", expect=1).stderr
    assert "give one of --path" in cli("label", "field", "--path", "x", "--source", "file", expect=1).stderr


def test_source_labels_are_t0_templates(cli, store, shared_data):
    folder = shared_data / "instruct" / "t0_train_50k"
    files = ["paws_labeled_final_paraphrase_task.jsonl", "wiki_qa_Jeopardy_style.jsonl", "wiki_qa_Topic_Prediction_Answer_Only.jsonl"]
    cli("ingest", *[folder / f for f in files], "--source", "t0")
    cli("label", "field", "--source", "file")
    with store.connect() as con:
        per_label = dict(con.execute("SELECT label, count(*) FROM labels WHERE origin = 'source' GROUP BY 1").fetchall())
        samples = con.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert set(per_label) == {f.removesuffix(".jsonl") for f in files}
    assert sum(per_label.values()) >= samples and per_label["wiki_qa_Jeopardy_style"] == 8
    cli("label", "field", "--source", "name", "--origin", "source_name")
    assert count(store, "SELECT count(DISTINCT label) FROM labels WHERE origin = 'source_name'") == 1


# -- embedding ----------------------------------------------------------------------------------------

PROMPTS = {"What is the derivative of x squared plus three x?": "calculus",
           "Give me a recipe for chocolate chip cookies.": "baking",
           "Write a Python function that reverses a linked list.": "python programming",
           "Will it rain in Paris tomorrow afternoon?": "weather forecast"}


def test_embedding_labels_are_the_nearest_vocabulary_entries(cli, store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "p.jsonl", [{"prompt": p, "completion": "ok"} for p in PROMPTS]))])
    vocab = _vocab_file(tmp_path, ["calculus", "baking", "python programming", "weather forecast", "poetry"])
    out = cli("label", "embedding", "--label-vocab", vocab, "--top-k", 2, "--floor", 0.0).stdout
    assert "labelled 4 of 4 samples with 8 labels" in out
    with store.connect() as con:
        best = dict(con.execute("SELECT s.prompt, arg_max(l.label, l.score) FROM labels l JOIN samples s "
                                "USING (sample_id) WHERE origin = 'embedding' GROUP BY 1").fetchall())
        scores = [r[0] for r in con.execute("SELECT score FROM labels WHERE origin = 'embedding'").fetchall()]
    assert best == PROMPTS
    # the stored score is the cosine of the prompt view's embedding and the label's
    vectors = encode_texts(["<|user|>\n" + p for p in PROMPTS] + list(PROMPTS.values()))
    assert max(scores) == pytest.approx(float(np.max(vectors[:4] @ vectors[4:].T)), abs=1e-4)
    assert count(store, "SELECT count(*) FROM label_embeddings") == 5

    # a floor nobody reaches: no labels, and each sample's failure names its best candidate
    cli("label", "embedding", "--label-vocab", vocab, "--floor", 0.99)
    assert _labels(store, "embedding") == {}
    failures = _failures(store, "embedding")
    assert len(failures) == 4 and "'calculus' at" in failures["What is the derivative of x squared plus three x?"]


# -- llm -----------------------------------------------------------------------------------------------

def test_parse_tags_reads_what_models_write():
    assert parse_tags('[{"tag": "math", "explanation": "x"}, {"tag": "algebra", "explanation": "y"}]') == ["math", "algebra"]
    assert parse_tags('Sure! ```json\n["cooking", "recipe"]\n```') == ["cooking", "recipe"]
    assert parse_tags('{"tag": "a", "explanation": "b"}\n{"tag": "c", "explanation": "d"}') == ["a", "c"]
    assert parse_tags('[{"tag": "cut \\"off\\"", "explanation": "trunc') == ['cut "off"']
    assert parse_tags('{"tags": ["x", "y"]}') == ["x", "y"]
    for text in ("I cannot help with that.", "[1, 2, 3]", ""):
        with pytest.raises(ValueError, match="no tag in the answer"):
            parse_tags(text)


def test_normalise_tag():
    assert normalise_tag("  Data_Analysis. ") == "data analysis"
    assert normalise_tag('"Problem   Solving"') == "problem solving"
    assert normalise_tag("ＭＡＴＨ") == "math"
    assert normalise_tag("role-playing") == "role-playing"
    assert normalise_tag("...") is None
    assert normalise_tag("this is a whole sentence rather than a short tag") is None


class ScriptedBackend(LLMBackend):
    """Stands in for an LLM to pin the labeller's logic: answers chosen by a word in the query."""

    name = "scripted"
    model = "scripted"

    def __init__(self, answers: dict[str, str | None]):
        self.answers = answers
        self.requests: list[ChatRequest] = []

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        self.requests += requests
        responses = []
        for request in requests:
            key = next(k for k in self.answers if k in request.messages[-1]["content"])
            answer = self.answers[key]
            responses.append(ChatResponse(error="server said 500") if answer is None
                             else ChatResponse(choices=[Choice(text=answer, finish_reason="stop")]))
        return responses


def test_llm_labeller_normalises_maps_and_records_failures(store, tmp_path):
    prompts = ["alpha: integrate this", "beta: bake a cake", "gamma: ???", "delta: anything", "epsilon: zzz"]
    ingest(store, [str(write_jsonl(tmp_path / "p.jsonl", [{"prompt": p, "completion": "ok"} for p in prompts]))])
    backend = ScriptedBackend({
        "alpha": '[{"tag": "Mathematics", "explanation": "calculus"}, {"tag": "Calculus_Integration", "explanation": "."}]',
        "beta": '{"tag": "baking", "explanation": "cake"}\n{"tag": "recipe request", "explanation": "asks"}',
        "gamma": "I don't know.",
        "delta": None,
        "epsilon": '["quantum chromodynamics lattice simulation"]',
    })
    pool = Pool.from_store(store)
    report = label_samples(store, "llm", "llm", by_llm(pool, backend))
    assert (report.covered, report.labelled, report.failed) == (5, 3, 2)
    assert _labels(store, "llm") == {"alpha: integrate this": ["calculus integration", "mathematics"],
                                     "beta: bake a cake": ["baking", "recipe request"],
                                     "epsilon: zzz": ["quantum chromodynamics lattice simulation"]}
    failures = _failures(store, "llm")
    assert failures["delta: anything"] == "LLM call failed: server said 500"
    assert "no tag in the answer" in failures["gamma: ???"]
    with store.connect() as con:
        raw = con.execute("SELECT raw FROM label_failures WHERE error LIKE 'no tag%'").fetchone()[0]
        details = con.execute("SELECT details FROM labels WHERE label = 'calculus integration'").fetchone()[0]
    assert raw == "I don't know." and json.loads(details) == {"raw": "Calculus_Integration"}
    # InsTag's prompt, with the user's query
    assert backend.requests[0].messages[-1]["content"].startswith("Please identify tags of user intentions")
    assert backend.requests[0].messages[-1]["content"].endswith("Query: alpha: integrate this")

    # mapped onto a vocabulary by embedding similarity: near tags map, far ones fail with the reason
    vocab = load_vocab(_vocab_file(tmp_path, ["mathematics", "calculus", "baking", "cooking", "poetry"]))
    report = label_samples(store, "llm", "llm", by_llm(pool, backend, mapper=VocabularyMapper(vocab, 0.6)),
                           vocab=vocab)
    labels = _labels(store, "llm")
    assert labels["alpha: integrate this"] == ["calculus", "mathematics"] and "baking" in labels["beta: bake a cake"]
    assert "no tag maps onto the vocabulary" in _failures(store, "llm")["epsilon: zzz"]
    with store.connect() as con:
        mapped = con.execute("SELECT score, details FROM labels WHERE origin = 'llm' AND label = 'calculus'").fetchone()
    assert 0.6 <= mapped[0] < 1 and json.loads(mapped[1]) == {"raw": "Calculus_Integration"}


def test_llm_labelling_with_the_small_real_model(cli, store, tmp_path):
    # one prompt, few tokens: on 2 shared CPU cores SmolLM2 writes a few tokens a second
    ingest(store, [str(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "How do I sort a list in Python?",
                                                          "completion": "ok"}]))])
    first = cli("label", "llm", "--max-tokens", 24)
    labelled, failed = (count(store, f"SELECT count(DISTINCT sample_id) FROM {t} WHERE origin = 'llm'")
                        for t in ("labels", "label_failures"))
    assert labelled + failed == 1      # the sample is labelled or has its reason, never a default
    assert count(store, "SELECT count(*) FROM llm_cache WHERE error IS NULL") == 1
    assert count(store, "SELECT count(*) FROM label_failures WHERE raw IS NULL OR raw = ''") == 0
    assert count(store, "SELECT count(*) FROM labels WHERE origin = 'llm' AND (label = '' OR label <> lower(label))") == 0
    before = _labels(store, "llm")
    second = cli("label", "llm", "--max-tokens", 24)     # answered from the response cache: same labels
    assert _labels(store, "llm") == before and _run_id(first) != _run_id(second)


# -- the graph -----------------------------------------------------------------------------------------

def test_label_graph_stats_and_graphml(cli, store, tmp_path):
    tags = [["mathematics", "math"], ["maths", "algebra"], ["cooking", "baking"], ["python programming"],
            ["cooking"], ["poetry"]]
    records = [{"_id": str(i), "dialogs": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
                "annotation": {"instag": {"content": t}}} for i, t in enumerate(tags)]
    ingest(store, [str(write_jsonl(tmp_path / "m.jsonl", records))], dialect="mig-pool")
    out = cli("label", "graph", "--sim-threshold", 0.6, "--export", tmp_path / "g.graphml").stdout
    names = sorted({t for ts in tags for t in ts})
    vectors = encode_texts(names)
    sims = vectors @ vectors.T
    expected = {(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names)) if sims[i, j] >= 0.6}
    graph = nx.read_graphml(tmp_path / "g.graphml")
    assert sorted(graph.nodes) == names and nx.number_of_selfloops(graph) == len(names)
    assert {tuple(sorted(e)) for e in graph.edges if e[0] != e[1]} == expected and expected
    assert graph.nodes["cooking"]["samples"] == 2
    components = nx.number_connected_components(graph)
    assert f"label graph: {len(names)} nodes, {len(expected)} edges (+{len(names)} self-loops), {components} components" in out
    assert "--export" in cli("label", "graph", "--export", tmp_path / "g.txt", expect=1).stderr


def test_vocabulary_files_are_checked(tmp_path):
    for text, message in [("", "not valid JSON"), ('{"a": 1}', "expected a JSON list"), ("[]", "the list is empty"),
                          ('["ok", ""]', r"entry \[1\] is ''")]:
        path = tmp_path / "v.json"
        path.write_text(text)
        with pytest.raises(CurateError, match=message):
            load_vocab(path)
    with pytest.raises(CurateError, match="cannot read"):
        load_vocab(tmp_path / "missing.json")
