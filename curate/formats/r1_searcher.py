"""R1-Searcher rollouts, the JSON Lines its evaluation writes:
`{question, answer, pred_ans, stop_reason_final, gen_text_store, gpt4o_output}`.

Tags as its code writes them (its README names them differently): `<|begin_of_query|> q <|end_of_query|>`,
`<|begin_of_documents|> (1)Title: T Text: x ... <|end_of_documents|>`, `</think>`, `<answer> a </answer>`.
The prompt ends with `Assistant: <think>`, so `gen_text_store` starts inside the think block.
`gpt4o_output` is its gpt-4o-mini judge's verdict (`True`/`False`), kept as the judge columns.
A rollout its script stopped early keeps no `gen_text_store`: the last `generated_text` is read
instead (flagged `partial_response`); one with neither cannot be read and goes to quarantine.
"""

from __future__ import annotations

from collections.abc import Mapping

from curate.errors import FieldError
from curate.formats.base import Sample, get_str, require_object, unmapped
from curate.trajectories.answers import r1_searcher_answer
from curate.trajectories.checks import r1_searcher_format
from curate.trajectories.parse import R1_SEARCHER
from curate.trajectories.record import Rollout, gold_list, optional_str, policy_model, trajectory_sample

KEYS = {"question", "answer", "pred_ans", "stop_reason_final", "gen_text_store", "generated_text", "gpt4o_output",
        "policy_model", "model", "model_name"}
ROLLOUT_KEYS = ("gen_text_store", "generated_text", "pred_ans", "stop_reason_final")
JUDGE = "gpt-4o-mini"      # evaluation/metric_calc_gpt_as_judge.py
OTHER_MARKERS = ("<search>", "<information>", "<|begin_search_query|>", "<|begin_search_result|>")


def matches(record: Mapping) -> bool:
    """Keys (`question` and its eval fields) and no other dialect's tags in the text."""
    if "question" not in record or not any(key in record for key in ROLLOUT_KEYS):
        return False
    text = record.get("gen_text_store") or record.get("generated_text") or ""
    return isinstance(text, str) and not any(marker in text for marker in OTHER_MARKERS)


def adapt(record) -> Sample:
    record = require_object(record)
    question = get_str(record, "question").strip()
    stop_reason = optional_str(record, "stop_reason_final")
    errors = []
    if record.get("gen_text_store") is not None:
        response_field = "gen_text_store"
    elif record.get("generated_text") is not None:
        response_field, errors = "generated_text", ["partial_response"]
    else:
        raise FieldError("gen_text_store", f"missing: the rollout kept no text (stop_reason_final={stop_reason!r})")
    response = get_str(record, response_field)
    judge_output = optional_str(record, "gpt4o_output")
    return trajectory_sample(Rollout(
        grammar=R1_SEARCHER, question=question, gold_answers=gold_list(record.get("answer"), "answer"),
        prompt=[{"role": "user", "content": question}], response=response, response_field=response_field,
        final_answer=r1_searcher_answer(response), answer_source="answer_tag", strict=r1_searcher_format(response),
        recorded_answer=optional_str(record, "pred_ans"), stop_reason=stop_reason, policy_model=policy_model(record),
        judge=JUDGE if judge_output is not None else None, judge_output=judge_output, errors=errors,
        meta=unmapped(record, KEYS),
    ))
