"""Quality scoring: Bradley–Terry, the reference prompts, reading grades off log-probs, DEITA per turn,
QuRating pairwise judgments, `score import`; and each method through SmolLM2-135M for real."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import spearmanr

from curate.ingest import ingest
from curate.models.llm import ChatResponse, LLMBackend
from curate.scoring.quality import bradley_terry, get_criterion, judge, load_targets, score_deita
from curate.scoring.quality.deita import COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE
from curate.scoring.quality.logprobs import expected_grade, label_probabilities
from curate.scoring.quality.pairwise import random_pairs, read_votes
from curate.scoring.quality.rubric import grade_distribution, parse_vote
from tests.conftest import count, write_jsonl

# -- Bradley–Terry ---------------------------------------------------------------------------------


def test_bradley_terry_recovers_known_ratings_from_simulated_judgments():
    rng = np.random.default_rng(7)
    n = 200
    truth = rng.normal(0.0, 1.5, n)
    pairs = random_pairs(n, comparisons=10, seed=1)
    a, b = pairs[:, 0], pairs[:, 1]
    # A noisy judge asked in both orders, 20 votes each, with a position bias towards the second text.
    bias = 0.4

    def votes_for_second(first, second):
        return rng.binomial(20, expit(truth[second] - truth[first] + bias)) / 20

    p = (votes_for_second(a, b) + 1 - votes_for_second(b, a)) / 2
    keep = bradley_terry.confident(p, 0.25)
    fit = bradley_terry.fit(a[keep], b[keep], p[keep], n, l2=0.01)
    assert fit.converged
    rated = fit.judgments > 0
    assert rated.mean() > 0.95
    assert spearmanr(fit.ratings[rated], truth[rated]).statistic > 0.95


def test_bradley_terry_two_items_solve_the_stationary_equation():
    fit = bradley_terry.fit(np.array([0]), np.array([1]), np.array([0.8]), 2, l2=0.1)
    d = fit.ratings[1] - fit.ratings[0]
    assert fit.ratings[0] == pytest.approx(-fit.ratings[1], abs=1e-6)
    assert expit(d) - 0.8 + 0.1 * d / 2 == pytest.approx(0.0, abs=1e-6)   # ∂/∂s_b of BCE + L2


def test_confidence_margin_is_qurating_half_threshold():
    p = np.array([0.5, 0.74, 0.75, 0.25, 0.9, 0.1])
    assert bradley_terry.confident(p, 0.25).tolist() == [False, False, True, True, True, True]


# -- the reference prompt texts ---------------------------------------------------------------------

QURATING_PAIRWISE_EDUCATIONAL = (
    "Compare two text excerpts and choose the text which has more educational value, e.g., it includes clear "
    "explanations, step-by-step reasoning, or questions and answers.\n\nAspects that should NOT influence your "
    "judgement:\n1. Which language the text is written in\n2. The length of the text\n3. The order in which the "
    "texts are presented\n\nNote that the texts are cut off, so you have to infer their contexts.\nThe texts might "
    "have similar quality, but you should still make a relative judgement and choose the label of the preferred "
    "text.\n\n[Option {label_a}]\n... {text_a} ...\n\n\n[Option {label_b}]\n... {text_b} ...\n\n\nNow you have to "
    "choose between either {label_a} or {label_b}. Respond only with a single word.")
QURATING_INDIVIDUAL_EXPERTISE = (
    "I need to rate a text excerpt on a scale of {grade_min} to {grade_max} (inclusive) based on how much expertise "
    "and prerequisite knowledge is required to understand it\n\nAspects that should NOT influence your judgement:\n"
    "1. Which language the text is written in\n2. The length of the text\n\nNote that the text is cut off, so you "
    "have to infer its context.\n\n[Text]\n... {text} ...\n\n\nNow assign a number grade between {grade_min} to "
    "{grade_max} (inclusive). Respond only with a single digit.\nThe score for the quality of the text is:")


def test_prompts_are_the_reference_texts():
    assert get_criterion("educational_value").pairwise_template() == QURATING_PAIRWISE_EDUCATIONAL
    assert get_criterion("required_expertise").individual_template() == QURATING_INDIVIDUAL_EXPERTISE
    assert COMPLEXITY_TEMPLATE.format(instruction="Q") == (
        "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
        "##Query: Q  \n##Complexity: ")
    assert QUALITY_TEMPLATE.format(instruction="Q", output="R") == (
        "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
        "Question. \n #Question#:\nQ\n#Response#:\nR \n##Quality: ")
    custom = get_criterion("helpfulness", "is more helpful to the person who asked.")
    assert "choose the text which is more helpful to the person who asked.\n" in custom.pairwise_template()


# -- reading answers ------------------------------------------------------------------------------


def test_expected_grade_is_the_softmax_expectation_over_grade_tokens():
    logits = np.array([0.1, 2.0, -1.0, 0.5, 0.0, 1.0])
    top = {str(g): float(l) - 5.0 for g, l in zip(range(1, 7), logits)} | {"The": -0.1}
    value, weights = expected_grade(label_probabilities(top, [str(g) for g in range(1, 7)]), range(1, 7), 20)
    softmax = np.exp(logits) / np.exp(logits).sum()
    assert value == pytest.approx(float(np.dot(np.arange(1, 7), softmax)))
    assert weights == pytest.approx(softmax.tolist())
    # spellings of one label add up; a grade missing from the top-k is an error naming it, never 3.0
    assert label_probabilities({" 3": math.log(0.2), "3": math.log(0.1)}, ["3"])["3"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="grade token.* 5, 6 not among the top-20"):
        expected_grade(label_probabilities({"1": -1, "2": -1, "3": -1, "4": -1}, list("123456")), range(1, 7), 20)


def test_rubric_splits_one_into_one_and_ten():
    first = {"1": math.log(0.5), "9": math.log(0.5)}
    probabilities = grade_distribution(first, {"0": math.log(0.5), ".": math.log(0.5)})
    assert probabilities["1"] == pytest.approx(0.25) and probabilities["10"] == pytest.approx(0.25)
    value, _ = expected_grade(probabilities, range(1, 11), 20) if all(
        probabilities[str(g)] > 0 for g in range(1, 11)) else (None, None)
    assert value is None            # grades 2..8 are absent: no value
    assert parse_vote(" 7") == 7 and parse_vote("10") == 10 and parse_vote("11") is None and parse_vote("x") is None


def test_votes_need_a_majority_of_label_answers():
    def answers(*texts):
        return ChatResponse.from_dict({"choices": [{"text": t, "finish_reason": "stop"} for t in texts]})

    reading = read_votes(answers("A", "B", "B", "B", "meh"), 5)
    assert reading.p_second == pytest.approx(0.75) and reading.error is None
    assert read_votes(answers("A", "?", "?", "?", "B"), 5).error == "only 2 of 5 answers were A or B"


# -- scripted judges pin the methods' logic (the real model runs below) ------------------------------


def _answer(top: dict[str, float]) -> ChatResponse:
    token = max(top, key=top.get)
    return ChatResponse.from_dict({"choices": [{"text": token, "finish_reason": "length", "tokens": 1, "logprobs": [
        {"token": token, "logprob": top[token], "top": top}]}]})


class LengthJudge(LLMBackend):
    """Prefers the longer text, with a position bias to the second; grades DEITA prompts by length."""

    name, model = "scripted", "length-judge"

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        self.requests += requests
        answers = []
        for request in requests:
            prompt = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
            if prompt.startswith("Compare two"):
                first = prompt.split("[Option A]\n... ")[1].split(" ...\n\n\n[Option B]")[0]
                second = prompt.split("[Option B]\n... ")[1].split(" ...\n\n\nNow")[0]
                p_b = expit((len(second) - len(first)) / 10 + 0.5)
                if request.n > 1:        # sampled answers, drawn from the same preference
                    votes = np.random.default_rng(len(self.requests)).random(request.n) < p_b
                    answers.append(ChatResponse.from_dict({"choices": [
                        {"text": "B" if vote else "A", "finish_reason": "stop"} for vote in votes]}))
                    continue
                answers.append(_answer({"A": math.log(1 - p_b), "B": math.log(p_b), "The": math.log(0.01)}))
            elif prompt.startswith("I need to rate"):
                if request.continue_final_message:          # after "1": P("0") = 0.5
                    answers.append(_answer({"0": math.log(0.5), ".": math.log(0.5)}))
                else:                                        # P("1") = 0.4, 0.6 spread over 2..9
                    answers.append(_answer({"1": math.log(0.4)} | {str(g): math.log(0.6 / 8) for g in range(2, 10)}))
            elif "##Complexity" in prompt and "NOPE" in prompt:
                answers.append(_answer({"1": -1.0, "2": -1.0, "The": -0.5}))
            else:
                grade = 2 if "##Complexity" in prompt else 5
                answers.append(_answer({str(g): (0.0 if g == grade else -3.0) for g in range(1, 7)}))
        return answers


@pytest.fixture
def conversations(store, tmp_path):
    records = [{"messages": [{"role": "user", "content": "q" * (5 * i + 1)},
                             {"role": "assistant", "content": "a" * (7 * i + 3)}]} for i in range(12)]
    records.append({"messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
                                 {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"}]})
    records.append({"messages": [{"role": "user", "content": "NOPE"}, {"role": "assistant", "content": "x"}]})
    ingest(store, [str(write_jsonl(tmp_path / "c.jsonl", records))])
    return store


def test_deita_scores_each_turn_and_records_failures_instead_of_a_default(conversations):
    store = conversations
    judge_backend = LengthJudge()
    counts = score_deita(store, judge_backend, load_targets(store), top_logprobs=20)
    assert counts == {"ok": 13, "failed": 1}
    grade_c = float(np.dot(range(1, 7), np.exp([(0.0 if g == 2 else -3.0) for g in range(1, 7)])
                           / np.exp([(0.0 if g == 2 else -3.0) for g in range(1, 7)]).sum()))
    grade_q = float(np.dot(range(1, 7), np.exp([(0.0 if g == 5 else -3.0) for g in range(1, 7)])
                           / np.exp([(0.0 if g == 5 else -3.0) for g in range(1, 7)]).sum()))
    with store.connect() as con:
        rows = dict(con.execute(
            "SELECT s.scorer, s.value FROM scores s JOIN samples USING (sample_id) WHERE turns = 2").fetchall())
        failed = con.execute("SELECT scorer, value, error FROM scores s JOIN samples USING (sample_id) "
                             "WHERE prompt = 'NOPE' ORDER BY scorer").fetchall()
    assert rows["deita:length-judge"] == pytest.approx(2 * grade_c * grade_q)        # Σ over the two turns
    assert rows["deita_mean:length-judge"] == pytest.approx(grade_c * grade_q)
    assert rows["deita_complexity:length-judge"] == pytest.approx(grade_c)
    failed = {scorer: (value, error) for scorer, value, error in failed}
    assert failed["deita_quality:length-judge"] == (pytest.approx(grade_q), None)     # its quality turn was fine
    for name in ("deita_complexity", "deita", "deita_mean"):
        value, error = failed[f"{name}:length-judge"]
        assert value is None and "turn 1 complexity: grade token(s) 3, 4, 5, 6 not among the top-20" in error
    # the multi-turn sample asked one complexity and one quality prompt per turn, with its own instruction
    asked = [r.messages[-1]["content"] for r in judge_backend.requests]
    assert sum("##Query: second  " in p for p in asked) == 1 and sum("#Response#:\ntwo \n" in p for p in asked) == 1


def test_pairwise_calibrates_both_orders_stores_judgments_and_fits_ratings(conversations):
    store = conversations
    targets = load_targets(store, "prompt <> 'NOPE' AND turns = 1")
    judge_backend = LengthJudge()
    counts = judge(store, judge_backend, targets, get_criterion("educational_value"), comparisons=4, seed=0)
    assert counts["pairs"] == counts["ok"] > 0 and counts["failed"] == 0
    assert len(judge_backend.requests) == 2 * counts["pairs"]
    with store.connect() as con:
        judgments = con.execute("SELECT sample_a, sample_b, p_forward, p_backward, p FROM pairwise_judgments").fetchall()
        lengths = dict(con.execute("SELECT sample_id, chars FROM samples").fetchall())
    for a, b, forward, backward, p in judgments:
        assert a < b and p == pytest.approx((forward + backward) / 2)
        assert forward > backward                       # the judge's bias towards the second text...
        assert (p > 0.5) == (lengths[b] > lengths[a])   # ...cancels in the calibrated preference
    from curate.scoring.quality import fit_ratings

    fitted = fit_ratings(store, "qurating:educational_value:length-judge", margin=0.25)
    assert fitted["rated"] == len(targets)
    with store.connect() as con:
        ratings = con.execute("SELECT s.value, m.chars FROM scores s JOIN samples m USING (sample_id) "
                              "WHERE scorer = 'qurating:educational_value:length-judge'").fetchall()
    values, chars = zip(*ratings)
    assert spearmanr(values, chars).statistic > 0.9
    # a stricter refit leaves samples without any confident judgment as recorded failures
    strict = fit_ratings(store, "qurating:educational_value:length-judge", margin=0.4999)
    assert strict["failed"] > 0
    assert count(store, "SELECT count(*) FROM scores WHERE scorer LIKE 'qurating:%' AND status = 'failed' "
                        "AND error LIKE 'none of its % judgments is confident%'") == strict["failed"]


# -- score import ----------------------------------------------------------------------------------


def test_score_import_by_id_or_content_with_clear_errors(cli, store, tmp_path):
    alpaca = [{"instruction": f"task {i}", "input": "", "output": f"done {i}"} for i in range(5)]
    ingest(store, [str(write_jsonl(tmp_path / "pool.jsonl", alpaca))])
    with store.connect() as con:
        ids = [i for (i,) in con.execute("SELECT sample_id FROM samples ORDER BY prompt").fetchall()]
    by_id = tmp_path / "rewards.jsonl"
    by_id.write_text("\n".join([json.dumps({"sample_id": ids[0], "reward": 0.5}),
                                json.dumps({"sample_id": ids[1], "reward": "high"}),
                                json.dumps({"sample_id": "f" * 32, "reward": 1.0}),
                                "{broken",
                                json.dumps({"sample_id": ids[2], "reward": -2})]) + "\n")
    result = cli("score", "import", by_id, "--scorer", "reward:rm", "--value-field", "reward", expect=1)
    assert "reward:rm: 2 samples scored; 1 rows name no stored sample" in result.stdout
    assert f"{by_id}:2: reward: expected a number, got 'high'" in result.stderr
    assert f"{by_id}:4: invalid JSON" in result.stderr
    with store.connect() as con:
        assert con.execute("SELECT sample_id, value FROM scores WHERE scorer = 'reward:rm' ORDER BY value").fetchall() \
            == [(ids[2], -2.0), (ids[0], 0.5)]
    by_content = tmp_path / "grades.csv"
    by_content.write_text("instruction,input,output,value\ntask 3,,done 3,7\ntask 4,,done 4,8.5\n")
    cli("score", "import", by_content, "--scorer", "human")
    with store.connect() as con:
        assert con.execute("SELECT sample_id, value FROM scores WHERE scorer = 'human' ORDER BY value").fetchall() \
            == [(ids[3], 7.0), (ids[4], 8.5)]
    no_identity = tmp_path / "bad.jsonl"
    no_identity.write_text(json.dumps({"text": "hm", "value": 1}) + "\n")
    result = cli("score", "import", no_identity, "--scorer", "x", expect=1)
    assert f"{no_identity}:1: sample_id: missing, and the row's other fields (text)" in result.stderr


def test_pairwise_votes_the_reference_reading_agree_with_logprobs(conversations):
    store = conversations
    targets = load_targets(store, "prompt <> 'NOPE' AND turns = 1")
    criterion = get_criterion("writing_style")
    judge(store, LengthJudge(), targets, criterion, comparisons=2, seed=4)
    judge(store, LengthJudge(), targets, get_criterion("style_votes", criterion.pairwise), comparisons=2, seed=4,
          read="votes", samples=400)
    with store.connect() as con:
        pairs = con.execute(
            "SELECT l.p, v.p, v.details FROM pairwise_judgments l JOIN pairwise_judgments v USING (sample_a, sample_b) "
            "WHERE l.scorer = 'qurating:writing_style:length-judge' "
            "AND v.scorer = 'qurating:style_votes:length-judge'").fetchall()
    assert len(pairs) > 5
    for by_logprobs, by_votes, details in pairs:
        assert by_votes == pytest.approx(by_logprobs, abs=0.06)
        assert set(json.loads(details)["forward"]) == {"votes_a", "votes_b"}


class TextOnlyJudge(LLMBackend):
    """A backend that gives no log-probs: its answers are read as text."""

    name, model = "scripted", "text-judge"

    def generate(self, requests):
        return [ChatResponse.from_dict({"choices": [{"text": "10" if "NOPE" not in r.messages[-1]["content"] else
                                                     "The text", "finish_reason": "length"}]}) for r in requests]


def test_rubric_expected_grade_with_ten_split_and_text_fallback(conversations):
    from curate.scoring.quality import score_rubric

    store = conversations
    targets = load_targets(store)
    criterion = get_criterion("writing_style")
    judge_backend = LengthJudge()
    assert score_rubric(store, judge_backend, targets, criterion) == {"ok": 14, "failed": 0}
    continued = [r for r in judge_backend.requests if r.continue_final_message]
    assert len(continued) == 14 and all(r.messages[-1] == {"role": "assistant", "content": "1"} for r in continued)
    expected = 1 * 0.2 + 10 * 0.2 + sum(g * 0.6 / 8 for g in range(2, 10))
    with store.connect() as con:
        values = [v for (v,) in con.execute("SELECT value FROM scores WHERE scorer = 'rubric:writing_style:length-judge'"
                                            ).fetchall()]
    assert values == [pytest.approx(expected)] * 14
    assert score_rubric(store, TextOnlyJudge(), targets, criterion) == {"ok": 13, "failed": 1}
    with store.connect() as con:
        rows = con.execute("SELECT value, error FROM scores WHERE scorer = 'rubric:writing_style:text-judge' "
                           "ORDER BY value NULLS LAST").fetchall()
    assert rows[0] == (10.0, None)
    assert rows[-1][0] is None and "the answer 'The text' is not a grade 1-10" in rows[-1][1]
