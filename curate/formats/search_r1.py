"""Search-R1 rollouts: `<think>`, `<search> q </search>`, `<information>Doc i(Title: "T") text</information>`,
`<answer> a </answer>`.

Records, in any of the shapes Search-R1's pipeline leaves them:
- its parquet rows (`prompt` as a one-message chat, gold in `reward_model.ground_truth.target`) plus
  a `response` column;
- JSON Lines with `prompt` (text or chat) and `response`, or a `response` holding the whole decoded
  ChatML sequence;
- `text`: the whole decoded ChatML sequence (what the `.txt` reader yields, one per rollout).

Gold answers are optional (`golden_answers`, `answer` or `answers` also work); the question is the
`question` field or the text after the last "Question:" of the user turn. The answer comes from the
response only, and the strict check is Search-R1's `is_valid_sequence`.
"""

from __future__ import annotations

from collections.abc import Mapping

from curate.errors import FieldError
from curate.formats.base import Sample, canonical_role, get_str, require_object, unmapped
from curate.trajectories.answers import last_answer_tag
from curate.trajectories.chatml import is_chatml, split_chatml
from curate.trajectories.checks import search_r1_sequence
from curate.trajectories.parse import SEARCH_R1, Grammar
from curate.trajectories.record import Rollout, gold_list, optional_str, policy_model, trajectory_sample

KEYS = {"prompt", "response", "text", "question", "reward_model", "golden_answers", "answer", "answers",
        "stop_reason", "policy_model", "model", "model_name"}
TAGS = ("<search>", "<information>", "<answer>", "<think>")
OTHER_MARKERS = ("<|begin_of_query|>", "<|begin_of_documents|>", "<|begin_search_query|>", "<|begin_search_result|>")


def response_text(record: Mapping) -> str | None:
    for key in ("text", "response"):
        if isinstance(record.get(key), str):
            return record[key]
    return None


def matches(record: Mapping) -> bool:
    """Keys (`text`, or `response`) and tags: Search-R1's, and no other dialect's markers."""
    text = response_text(record)
    return (text is not None and any(tag in text for tag in TAGS)
            and not any(marker in text for marker in OTHER_MARKERS))


def _chat_turns(prompt: list, where: str) -> list[dict[str, str]]:
    turns = []
    for index, message in enumerate(prompt):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise FieldError(f"{where}[{index}]", "expected {role, content} with text content")
        turns.append({"role": canonical_role(message.get("role"), f"{where}[{index}].role"),
                      "content": message["content"]})
    return turns


def _turns_of_chatml(turns: list[tuple[str, str]], where: str) -> list[dict[str, str]]:
    return [{"role": canonical_role(role, where), "content": content} for role, content in turns]


def _prompt_and_response(record: Mapping) -> tuple[list[dict[str, str]], str, str]:
    """(prompt turns, response, the field the response came from)."""
    if "text" in record:
        text = get_str(record, "text")
        turns, response = split_chatml(text)
        if response is None:
            raise FieldError("text", "no `<|im_start|>assistant` turn: expected a decoded ChatML rollout")
        return _turns_of_chatml(turns, "text"), response, "text"
    response = get_str(record, "response", allow_empty=True)
    prompt = record.get("prompt")
    if prompt is None:
        turns, rest = split_chatml(response) if is_chatml(response) else ([], None)
        if rest is None:
            raise FieldError("prompt", "missing, and the response holds no ChatML prompt")
        return _turns_of_chatml(turns, "response"), rest, "response"
    if isinstance(prompt, list):
        return _chat_turns(prompt, "prompt"), response, "response"
    if isinstance(prompt, str):
        if is_chatml(prompt):
            return _turns_of_chatml(split_chatml(prompt)[0], "prompt"), response, "response"
        return [{"role": "user", "content": prompt}], response, "response"
    raise FieldError("prompt", f"expected a string or a list of messages, got {type(prompt).__name__}")


def question_of(record: Mapping, prompt: list[dict[str, str]]) -> str:
    if record.get("question") is not None:
        return get_str(record, "question").strip()
    users = [m["content"] for m in prompt if m["role"] == "user"]
    if not users:
        raise FieldError("prompt", "no user turn to take the question from")
    question = users[-1].rsplit("Question:", 1)[-1].strip()
    if not question:
        raise FieldError("prompt", "the user turn holds no question")
    return question


def golds_of(record: Mapping) -> list[str] | None:
    reward_model = record.get("reward_model")
    if reward_model is not None:
        if not isinstance(reward_model, Mapping) or not isinstance(reward_model.get("ground_truth"), Mapping):
            raise FieldError("reward_model.ground_truth", "expected {ground_truth: {target: [...]}}")
        return gold_list(reward_model["ground_truth"].get("target"), "reward_model.ground_truth.target")
    for key in ("golden_answers", "answer", "answers"):
        if record.get(key) is not None:
            return gold_list(record[key], key)
    return None


def read_rollout(record, grammar: Grammar, simulated: bool) -> Rollout:
    record = require_object(record)
    prompt, response, response_field = _prompt_and_response(record)
    prompt = [m for m in prompt if m["content"].strip()]
    final = last_answer_tag(response)
    return Rollout(
        grammar=grammar, question=question_of(record, prompt), gold_answers=golds_of(record), prompt=prompt,
        response=response, response_field=response_field, final_answer=final,
        answer_source="answer_tag", strict=search_r1_sequence(response),
        stop_reason=optional_str(record, "stop_reason"), policy_model=policy_model(record),
        simulated=simulated, meta=unmapped(record, KEYS | {"search_mode", "simulated"}),
    )


def adapt(record) -> Sample:
    return trajectory_sample(read_rollout(record, SEARCH_R1, simulated=False))
