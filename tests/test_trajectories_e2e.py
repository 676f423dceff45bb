"""Acceptance: on trajectory files of all four dialects that no other test sees (generated here, from
the real FlashRAG NQ questions), `curate ingest` + `curate select trajectory` + `curate sql` give the
metrics and decisions of an independent, plain implementation of the reference definitions below.

The reference side reads the raw records itself: it shares no code with curate.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter, defaultdict
from pathlib import Path

import pytest

# -- the independent reference implementation -----------------------------------------------------


def squad_normalize(s: str) -> str:                      # SQuAD / Search-R1 normalize_answer, verbatim
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def ref_em(prediction, golds):
    return float(prediction is not None and any(squad_normalize(g) == squad_normalize(prediction) for g in golds))


def ref_cover_em(prediction, golds):
    return float(prediction is not None and any(squad_normalize(g) in squad_normalize(prediction) for g in golds))


def ref_f1(prediction, golds):                           # HotpotQA f1_score, max over golds
    if prediction is None:
        return 0.0
    best = 0.0
    for gold in golds:
        p, g = squad_normalize(prediction), squad_normalize(gold)
        if (p in ("yes", "no", "noanswer") or g in ("yes", "no", "noanswer")) and p != g:
            continue
        common = Counter(p.split()) & Counter(g.split())
        same = sum(common.values())
        if same:
            precision, recall = same / len(p.split()), same / len(g.split())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


TAGS = {
    "search-r1": ("<search>", "</search>", "<information>", "</information>"),
    "zerosearch": ("<search>", "</search>", "<information>", "</information>"),
    "r1-searcher": ("<|begin_of_query|>", "<|end_of_query|>", "<|begin_of_documents|>", "<|end_of_documents|>"),
    "simple-deep-searcher": ("<|begin_search_query|>", "<|end_search_query|>",
                             "<|begin_search_result|>", "<|end_search_result|>"),
}


def between(text, start, end):
    return re.findall(re.escape(start) + "(.*?)" + re.escape(end), text, re.DOTALL)


def ref_documents(dialect, block):
    """(id, text) of each document of one result block."""
    if dialect == "search-r1":
        found = re.findall(r'Doc \d+\(Title: "(.*?)"\) (.*?)(?=\nDoc \d+\(Title: |\Z)', block.strip(), re.DOTALL)
        return [((t, " ".join(x.split())), t + "\n" + x) for t, x in found]
    if dialect == "zerosearch":
        found = re.findall(r"Doc \d+: (.*?)(?=\nDoc \d+: |\Z)", block.strip(), re.DOTALL)
        return [(" ".join(x.split()), x) for x in found]
    if dialect == "r1-searcher":       # "(i)" entries, whatever their inside
        found = re.findall(r"(?:^|\n)\(\d+\)(.*?)(?=\n\(\d+\)|\n?\Z)", block, re.DOTALL)
        return [(" ".join(x.split()), x) for x in found]
    pages = [json.loads(p.split("\n", 1)[1]) for p in block.split("**Web Page ")[1:]]
    return [(p["title"], p["title"] + "\n" + p["context"]) for p in pages]


def ref_trajectory(dialect, record):
    """The reference measures of one raw record."""
    q0, q1, d0, d1 = TAGS[dialect]
    if dialect == "simple-deep-searcher":
        model = [p["gen"] for p in record["output"] if "gen" in p]
        shown = [p["doc_gen"] for p in record["output"] if "doc_gen" in p]
        blocks = [p["doc"] for p in record["output"] if "doc" in p]
        response = "".join(p.get("gen", p.get("doc_gen", "")) for p in record["output"])
        segments = model
        golds, question = record["answer"], record["question"]
        matches = re.findall(r"\\boxed\{(.*)\}", response)
        answer = matches[-1] if matches else None
        evidence = shown + [text for b in blocks for _, text in ref_documents(dialect, b)]
    else:
        response = record["gen_text_store"] if dialect == "r1-searcher" else record["response"]
        raw_blocks = re.findall(re.escape(d0) + ".*?" + re.escape(d1), response, re.DOTALL)
        blocks = [b[len(d0):-len(d1)] for b in raw_blocks]
        segments = [s for s in re.split(re.escape(d0) + ".*?" + re.escape(d1), response, flags=re.DOTALL) if s.strip()]
        model = segments
        if dialect == "r1-searcher":
            golds, question = [record["answer"]], record["question"]
            answer = (response.split("<answer>")[-1].split("</answer>")[0].strip()
                      if "<answer>" in response and "</answer>" in response else None)
        else:
            golds = record["reward_model"]["ground_truth"]["target"]
            question = record["prompt"][0]["content"].rsplit("Question:", 1)[1].strip()
            found = re.findall(r"<answer>(.*?)</answer>", response, re.DOTALL)
            answer = found[-1].strip() if found else None
        evidence = raw_blocks + [text for b in blocks for _, text in ref_documents(dialect, b)]
    queries = [" ".join(q.split()) for text in model for q in between(text, q0, q1)]
    documents = [doc_id for b in blocks for doc_id, _ in ref_documents(dialect, b)]
    model_text = "".join(model)
    implicit = 1 if dialect in ("r1-searcher", "simple-deep-searcher") else 0
    words = response.split()
    trigrams = Counter(zip(words, words[1:], words[2:]))
    return {
        "question": question, "final_answer": answer, "golds": golds,
        "em": ref_em(answer, golds), "f1": ref_f1(answer, golds), "cover_em": ref_cover_em(answer, golds),
        "searches": len(queries), "repeated_queries": len(queries) - len(set(queries)),
        "documents": len(documents), "unique_documents": len(set(documents)),
        "top_k": max((len(ref_documents(dialect, b)) for b in blocks), default=0),
        "retrieval_hit": any(squad_normalize(g) in squad_normalize(e) for g in golds for e in evidence),
        "unsupported": (None if answer is None or not squad_normalize(answer) else
                        not any(squad_normalize(answer) in squad_normalize(e) for e in evidence)),
        "first_words": len(segments[0].split()), "longest_words": max(len(s.split()) for s in segments),
        "fillers": max(max(s.count(w) for s in segments) for w in ("Alternatively", "hmm", "wait")),
        "trigram_share": max(trigrams.values()) / (len(words) - 2) if len(words) >= 3 else 0.0,
        "extra_closes": model_text.count("</think>") - model_text.count("<think>") - implicit,
        "boxed_early": response.split("</think>")[0].count("boxed{"),
        "cjk": any("\u4e00" <= ch <= "\u9fff" for ch in model_text),
        "words": len(words),
        "empty_query": any(not q.strip() for text in model for q in between(text, q0, q1)),
    }


def ref_failed(t):
    """The criteria SimpleDeepSearcher's curation drops a trajectory for (all defaults)."""
    per_search = t["unique_documents"] / t["searches"] if t["searches"] else 0
    checks = {
        "correct": not (t["em"] == 1 and t["cover_em"] == 1),
        "markers": t["empty_query"],
        "think_close": t["extra_closes"] > 0,
        "first_segment": t["first_words"] >= 300,
        "longest_segment": t["longest_words"] >= 300,
        "fillers": t["fillers"] > 3,
        "repetition": t["trigram_share"] > 0.3,
        "unique_documents": t["searches"] == 0 or per_search <= 0.95 * t["top_k"],
        "boxed_before_think": t["boxed_early"] > 0,
        "cjk": t["cjk"],
        "length": t["words"] > 3000,
    }
    return [name for name, failed in checks.items() if failed]


def ref_selection(trajectories, budget, seed=42, drop=0.8):
    """Per question: its outcome (kept, all_solved, over_budget, none valid) and its valid rollouts
    with the fewest searches (one of which stands for it), following response_curation.py."""
    by_question = defaultdict(list)
    for rid, t in trajectories.items():
        by_question[t["question"]].append(rid)
    rng, candidates, outcome = random.Random(seed), [], {}
    for question in sorted(by_question):
        rids = by_question[question]
        rate = sum(trajectories[r]["cover_em"] == 1 for r in rids) / len(rids)
        solved = [trajectories[r]["searches"] for r in rids if trajectories[r]["cover_em"] == 1]
        valid = [r for r in rids if not ref_failed(trajectories[r])]
        dropped = rate == 1 and rng.random() < drop
        if not valid:
            outcome[question] = ("none_valid", [])
            continue
        fewest = min(trajectories[r]["searches"] for r in valid)
        best = [r for r in valid if trajectories[r]["searches"] == fewest]
        if dropped:
            outcome[question] = ("all_solved", best)
        else:
            candidates.append((rate, -(min(solved) if solved else 100), question, best))
    candidates.sort(key=lambda c: c[:3])
    for rank, (_, _, question, best) in enumerate(candidates):
        outcome[question] = ("kept" if budget is None or rank < budget else "over_budget", best)
    return outcome, [question for _, _, question, _ in candidates][:budget]


# -- files the other tests never see --------------------------------------------------------------

SEARCH_R1_PROMPT = ("Answer the given question. You must conduct reasoning inside <think> and </think> first every time "
                    "you get new information. After reasoning, if you find you lack some knowledge, you can call a search "
                    "engine by <search> query </search> and it will return the top searched results between <information> "
                    "and </information>. You can search as many times as your want. If you find no further external "
                    "knowledge needed, you can directly provide the answer inside <answer> and </answer>, without "
                    "detailed illustrations. For example, <answer> Beijing </answer>. Question: {q}\n")
FILLER = "The claim needs checking against the sources before committing to it"


def _pick_docs(rng, gold, k, pool):
    docs = rng.sample(pool, k)
    if rng.random() < 0.6:
        docs[rng.randrange(k)] = (f"About {gold}", f"Sources describe {gold} in detail as the answer.")
    return docs


def _rollout(rng, rid, dialect, question, golds):
    """The parts of one rollout: reasoning segments, queries, result blocks, answer, quirks. Questions
    whose text has an even length are always answered exactly, so some are solved by every rollout."""
    pool = [(f"Topic {i}", f"Unrelated passage number {i} about history and geography.") for i in range(24)]
    n_search = rng.choice([0, 1, 1, 2, 2, 3])
    queries = [f"{question} part {rng.randrange(3)}" for _ in range(n_search)]
    if rng.random() < 0.1 and queries:
        queries[-1] = " "                                              # an empty query
    k = {"search-r1": 3, "zerosearch": 5, "r1-searcher": 5, "simple-deep-searcher": 10}[dialect]
    results = [_pick_docs(rng, golds[0], k, pool) for _ in queries]
    reasons = [f"[{rid}] Let me think about it."] + [f"Reading the results of step {i}." for i in range(n_search)]
    quirk = rng.choice(["none"] * 6 + ["fillers", "long", "repeat", "cjk", "extra_close", "outside"])
    if quirk == "fillers":
        reasons[-1] += " wait" * 4 + " hmm"
    elif quirk == "long":
        reasons[0] += " " + " ".join(f"{FILLER} {i}." for i in range(30))
    elif quirk == "repeat":
        reasons[-1] += " so it is" * 200
    elif quirk == "cjk":
        reasons[-1] += " 答案"
    kind = rng.choice(["exact", "exact", "exact", "cover", "wrong", "none"])
    if len(question) % 2 == 0:
        kind = "exact"
    answer = {"exact": golds[0], "cover": f"{golds[0]} probably", "wrong": "Atlantis", "none": None}[kind]
    return reasons, queries, results, answer, quirk


def _search_r1_like(dialect, rng, rid, question, golds):
    reasons, queries, results, answer, quirk = _rollout(rng, rid, dialect, question, golds)
    text = ""
    for index, reason in enumerate(reasons):
        if quirk == "outside" and index == len(reasons) - 1 and index > 0:
            text += reason + "\n"                                        # reasoning outside <think>
        else:
            text += f"<think> {reason} </think>" + (" </think>" if quirk == "extra_close" and index == 0 else "") + "\n"
        if index < len(queries):
            if dialect == "search-r1":
                docs = "".join(f'Doc {i + 1}(Title: "{t}") {x}\n' for i, (t, x) in enumerate(results[index]))
            else:
                docs = "\n".join(f"Doc {i + 1}: {x}" for i, (_, x) in enumerate(results[index]))
            text += f"<search> {queries[index]} </search>\n\n<information>{docs.strip()}</information>\n\n"
    if answer is not None:
        text += f"<answer> {answer} </answer>"
    record = {"data_source": "nq", "prompt": [{"role": "user", "content": SEARCH_R1_PROMPT.format(q=question)}],
              "ability": "fact-reasoning", "reward_model": {"style": "rule", "ground_truth": {"target": golds}},
              "extra_info": {"split": "test", "index": rid}, "response": text}
    if dialect == "zerosearch":
        record.update(question=question, golden_answers=golds)
    return record


def _r1_searcher(rng, rid, question, golds):
    reasons, queries, results, answer, quirk = _rollout(rng, rid, "r1-searcher", question, golds)
    text = ""
    for index, reason in enumerate(reasons):
        text += reason
        if index < len(queries):
            docs = "".join(f"({i + 1})Title: {t} Text:  {x}\n" for i, (t, x) in enumerate(results[index]))
            text += (f"\n\n<|begin_of_query|> {queries[index]}<|end_of_query|>\n\n<|begin_of_documents|>\n{docs}"
                     "<|end_of_documents|>\n\n")
    text += " </think>" + (" </think>" if quirk == "extra_close" else "") + "\n\n"
    if answer is not None:
        text += f"<answer> {answer} </answer>"
    return {"question": question, "answer": golds[0], "pred_ans": f" {answer} " if answer else "I don't know.",
            "stop_reason_final": "finished", "gen_text_store": text, "gpt4o_output": rng.choice(["True", "False"])}


def _simple_deep_searcher(rng, rid, question, golds):
    reasons, queries, results, answer, quirk = _rollout(rng, rid, "simple-deep-searcher", question, golds)
    output = []
    for index, reason in enumerate(reasons):
        if index < len(queries):
            output.append({"gen": f"{reason}\n\n<|begin_search_query|>{queries[index]}<|end_search_query|>"})
            output.append({"search_query": queries[index]})
            pages = "".join(f"**Web Page {i + 1}:**\n" + json.dumps(
                {"id": i + 1, "title": t, "url": f"https://example.org/{t}", "snippet": x[:20], "context": x},
                indent=2) + "\n" for i, (t, x) in enumerate(results[index]))
            output.append({"doc": pages})
            output.append({"doc_gen": f"\n\n<|begin_search_result|>Summary: {results[index][0][1]}<|end_search_result|>\n\n"})
        else:
            close = "\n</think>" + ("\n</think>" if quirk == "extra_close" else "")
            boxed = f"\n\n\\boxed{{{answer}}}" if answer is not None else ""
            output.append({"gen": f"{reason}{close}{boxed}"})
    return {"question": question, "answer": golds, "input": f"Question:\n{question}\n\n", "output": output,
            "metric": {}, "search_count": len(queries), "min_search": 1}


def write_unseen_files(folder: Path, questions: list[dict], seed: int = 7) -> dict[str, tuple[str, dict]]:
    """Three rollouts per question per dialect; returns rollout id -> (dialect, record)."""
    rng = random.Random(seed)
    rollouts, files = {}, defaultdict(list)
    for dialect in ("search-r1", "zerosearch", "r1-searcher", "simple-deep-searcher"):
        for q in questions:
            for _ in range(3):
                rid = f"r{len(rollouts)}"
                if dialect in ("search-r1", "zerosearch"):
                    record = _search_r1_like(dialect, rng, rid, q["question"], q["golden_answers"])
                elif dialect == "r1-searcher":
                    record = _r1_searcher(rng, rid, q["question"], q["golden_answers"])
                else:
                    record = _simple_deep_searcher(rng, rid, q["question"], q["golden_answers"])
                rollouts[rid] = (dialect, record)
                files[dialect].append(record)
    for dialect, records in files.items():
        if dialect == "simple-deep-searcher":
            (folder / "sds_items.json").write_text(json.dumps(records, ensure_ascii=False))
        else:
            (folder / f"{dialect}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return rollouts


# -- the test -------------------------------------------------------------------------------------

SQL_METRICS = """
SELECT regexp_extract(s.messages[2].content, '\\[(r\\d+)\\]', 1) AS rid, t.*
FROM trajectories t JOIN samples s USING (sample_id)
"""


def sql_json(cli, query: str) -> list[dict]:
    result = cli("sql", query, "--format", "json")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def unseen(cli, shared_data, tmp_path):
    questions = [json.loads(line) for line in (shared_data / "search/qa/FlashRAG/test.jsonl").read_text().splitlines()]
    rollouts = write_unseen_files(tmp_path, questions)
    result = cli("ingest", str(tmp_path))
    for dialect in ("search-r1", "zerosearch", "r1-searcher", "simple-deep-searcher"):
        assert f"detected dialect {dialect}" in result.stderr
    return rollouts


def test_ingest_and_sql_match_the_reference_metrics(cli, unseen):
    rows = {row["rid"]: row for row in sql_json(cli, SQL_METRICS)}
    assert set(rows) == set(unseen)
    for rid, (dialect, record) in unseen.items():
        ref, got = ref_trajectory(dialect, record), rows[rid]
        assert got["dialect"] == dialect, rid
        assert (got["question"], got["final_answer"], got["gold_answers"]) == (
            ref["question"], ref["final_answer"], ref["golds"]), rid
        assert (got["em"], got["cover_em"]) == (ref["em"], ref["cover_em"]), rid
        assert got["f1"] == pytest.approx(ref["f1"]), rid
        for column, key in [("searches", "searches"), ("repeated_queries", "repeated_queries"),
                            ("documents", "documents"), ("unique_documents", "unique_documents"), ("top_k", "top_k"),
                            ("retrieval_hit", "retrieval_hit"), ("unsupported_answer", "unsupported"),
                            ("first_segment_words", "first_words"), ("longest_segment_words", "longest_words"),
                            ("extra_think_closes", "extra_closes"), ("boxed_before_think_end", "boxed_early"),
                            ("response_words", "words")]:
            assert got[column] == ref[key], (rid, column)
        assert got["max_trigram_share"] == pytest.approx(ref["trigram_share"]), rid
        assert max(got["max_alternatively"], got["max_hmm"], got["max_wait"]) == ref["fillers"], rid
        assert (got["cjk_outside_documents"] > 0) == ref["cjk"], rid
        assert got["simulated_search"] == (dialect == "zerosearch"), rid


def test_select_matches_the_reference_curation_and_every_drop_has_reasons(cli, unseen):
    budget = 2
    run_id = cli("select", "trajectory", "--budget", budget).stdout.strip().splitlines()[-1]
    decisions = sql_json(cli, f"""
        SELECT regexp_extract(s.messages[2].content, '\\[(r\\d+)\\]', 1) AS rid, sel.selected, sel.rank, sel.reason,
               sel.details
        FROM selections sel JOIN samples s USING (sample_id) WHERE sel.run_id = '{run_id}'""")
    assert len(decisions) == len(unseen)                           # every trajectory has a decision
    trajectories = {rid: ref_trajectory(dialect, record) for rid, (dialect, record) in unseen.items()}
    outcome, order = ref_selection(trajectories, budget)
    got = {d["rid"]: d for d in decisions}
    reason_of_outcome = {"kept": None, "all_solved": "every rollout of this question is correct", "over_budget": "over budget"}
    for question, (status, best) in outcome.items():
        rids = [rid for rid, t in trajectories.items() if t["question"] == question]
        for rid in rids:
            failed = ref_failed(trajectories[rid])
            if failed:                       # all failed criteria, listed
                assert not got[rid]["selected"] and got[rid]["reason"] == "failed: " + ", ".join(failed), rid
                assert json.loads(got[rid]["details"])["failed"] == failed, rid
            elif rid not in best:
                assert got[rid]["reason"] == "a valid rollout of this question with no more searches was chosen", rid
        if status == "none_valid":
            continue
        # one rollout of the fewest-search ones stands for the question; the others say why not
        standing = [rid for rid in best if not got[rid]["reason"].startswith("a valid rollout")]
        assert len(standing) == 1, (question, [got[r]["reason"] for r in best])
        (rid,) = standing
        assert got[rid]["selected"] == (status == "kept"), (question, status, got[rid])
        if status != "kept":
            assert got[rid]["reason"].startswith(reason_of_outcome[status]), (question, status, got[rid])
    statuses = Counter(status for status, _ in outcome.values())
    assert statuses["kept"] == budget and statuses["over_budget"] and statuses["all_solved"] and statuses["none_valid"]
    assert sum(d["selected"] for d in decisions) == budget
    assert all(d["reason"] for d in decisions)
    # the reference's ranking: pass rate ascending, then searches of a correct rollout descending
    ranked = sorted((d for d in decisions if d["selected"]), key=lambda d: d["rank"])
    assert [trajectories[d["rid"]]["question"] for d in ranked] == order
    # a criteria subset keeps more, and its drops list only those criteria
    run_id = cli("select", "trajectory", "--criteria", "correct", "--all-solved-drop", "0").stdout.strip().splitlines()[-1]
    reasons = {d["reason"] for d in sql_json(cli, f"SELECT reason FROM selections WHERE run_id = '{run_id}' AND NOT selected")}
    assert {r for r in reasons if r.startswith("failed")} == {"failed: correct"}
