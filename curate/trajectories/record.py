"""One rollout -> a `Sample` of kind `trajectory`, with its `trajectories` row and `trajectory_steps` rows.

A dialect adapter reads its record's fields into a `Rollout` (question, gold answers, prompt turns,
response, final answer, strict check); `trajectory_sample` parses the response into steps, measures
it, scores it, and lays it out as messages: the prompt turns, then one assistant turn per stretch of
the policy's text and one tool turn per observation or environment message, so that an emitted
training set can mask what the policy did not write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from curate.errors import FieldError
from curate.formats.base import Sample, check_conversation
from curate.trajectories.checks import CJK, StrictCheck, lenient_errors
from curate.trajectories.metrics import contains_answer, normalize_answer, score_answer
from curate.trajectories.parse import Grammar, Observation, Step, parse_steps

FILLER_WORDS = ("Alternatively", "hmm", "wait")   # SimpleDeepSearcher counts these, case as written


@dataclass
class Rollout:
    grammar: Grammar
    question: str
    gold_answers: list[str] | None
    prompt: list[dict[str, str]]               # the turns before the response (system, user)
    response: str | list[str | Observation]
    response_field: str                        # where the response came from, for errors
    final_answer: str | None
    answer_source: str | None                  # answer_tag | boxed
    strict: StrictCheck
    recorded_answer: str | None = None         # an answer the data came with (R1-Searcher's pred_ans)
    stop_reason: str | None = None
    policy_model: str | None = None
    judge: str | None = None
    judge_output: str | None = None
    simulated: bool = False                    # the search engine was an LLM (ZeroSearch)
    errors: list[str] = field(default_factory=list)   # further lenient errors the adapter saw
    meta: dict[str, Any] = field(default_factory=dict)


def _words(text: str) -> int:
    return len(text.split())


def _without_think_tags(text: str) -> str:
    return text.replace("<think>", " ").replace("</think>", " ")


def max_trigram_share(text: str) -> float:
    """The share of the most frequent word trigram among all trigrams (SimpleDeepSearcher's `detect_repeat`)."""
    words = text.split()
    if len(words) < 3:
        return 0.0
    counts = Counter(zip(words, words[1:], words[2:]))
    return max(counts.values()) / (len(words) - 2)


def _messages(prompt: list[dict[str, str]], steps: Sequence[Step]) -> tuple[list[dict[str, str]], list[int]]:
    """Prompt turns, then assistant turns for runs of the policy's steps and a tool turn for each
    environment step; and each step's 1-based message index."""
    messages, indexes = list(prompt), []
    for step in steps:
        role = "assistant" if step.from_model else "tool"
        if role == "assistant" and len(messages) > len(prompt) and messages[-1]["role"] == "assistant":
            messages[-1]["content"] += step.text
        else:
            messages.append({"role": role, "content": step.text})
        indexes.append(len(messages))
    return messages, indexes


def _judge_verdict(output: str | None) -> bool | None:
    text = (output or "").strip()
    return {"True": True, "False": False}.get(text)


def trajectory_sample(rollout: Rollout) -> Sample:
    steps = parse_steps(rollout.grammar, rollout.response)
    if not any(step.from_model and step.text.strip() for step in steps):
        raise FieldError(rollout.response_field, "holds no text written by the policy")
    messages, message_indexes = _messages(rollout.prompt, steps)
    messages = check_conversation(messages, "trajectory")

    response = "".join(step.text for step in steps)
    model_text = "".join(step.text for step in steps if step.from_model)
    segments = [m["content"] for m in messages[len(rollout.prompt):] if m["role"] == "assistant"]
    queries = [" ".join(step.query.split()) for step in steps if step.role == "search"]
    observations = [step for step in steps if step.role == "observation"]
    documents = [doc for step in observations for doc in step.documents or []]
    reasoning = [_without_think_tags(step.text) for step in steps
                 if step.role == "think" or (step.role == "invalid" and step.issue is None)]
    evidence = [text for step in observations
                for text in [step.text, *(f"{d.title or ''}\n{d.text}" for d in step.documents or [])]]

    golds = rollout.gold_answers
    scores = score_answer(rollout.final_answer, golds) if golds else None
    answer = rollout.final_answer
    answer_checkable = answer is not None and normalize_answer(answer) != ""
    evidence = [normalize_answer(text) for text in evidence]
    in_documents = contains_answer(evidence, [answer], normalized=True) if answer_checkable else None

    lenient = sorted(set(lenient_errors(rollout.grammar, steps, answer)) | set(rollout.errors))
    implicit_opens = 1 if rollout.grammar.implicit_think else 0
    row = {
        "dialect": rollout.grammar.name,
        "question": rollout.question,
        "gold_answers": golds,
        "final_answer": answer,
        "answer_source": rollout.answer_source if answer is not None else None,
        "recorded_answer": rollout.recorded_answer,
        "stop_reason": rollout.stop_reason,
        "policy_model": rollout.policy_model,
        "simulated_search": rollout.simulated,
        "judge": rollout.judge,
        "judge_output": rollout.judge_output,
        "judge_verdict": _judge_verdict(rollout.judge_output) if rollout.judge else None,
        "turns": len(segments),
        "steps": len(steps),
        "searches": len(queries),
        "unique_queries": len(set(queries)),
        "repeated_queries": len(queries) - len(set(queries)),
        "documents": len(documents),
        "unique_documents": len({d.id for d in documents}),
        "repeated_documents": len(documents) - len({d.id for d in documents}),
        "top_k": max((len(step.documents or []) for step in observations), default=0),
        "reasoning_words": sum(_words(text) for text in reasoning),
        "first_segment_words": _words(segments[0]) if segments else 0,
        "longest_segment_words": max((_words(s) for s in segments), default=0),
        "answer_words": _words(answer) if answer is not None else None,
        "response_words": _words(response),
        "max_alternatively": max((s.count(FILLER_WORDS[0]) for s in segments), default=0),
        "max_hmm": max((s.count(FILLER_WORDS[1]) for s in segments), default=0),
        "max_wait": max((s.count(FILLER_WORDS[2]) for s in segments), default=0),
        "max_trigram_share": max_trigram_share(response),
        "extra_think_closes": model_text.count("</think>") - model_text.count("<think>") - implicit_opens,
        "boxed_before_think_end": response.split("</think>")[0].count("boxed{"),
        "cjk_outside_documents": len(CJK.findall(model_text)),
        "em": scores.em if scores else None,
        "f1": scores.f1 if scores else None,
        "cover_em": scores.cover_em if scores else None,
        "retrieval_hit": contains_answer(evidence, golds, normalized=True) if golds else None,
        "answer_in_documents": in_documents,
        "answer_in_reasoning": contains_answer(reasoning, [answer]) if answer_checkable else None,
        "unsupported_answer": (not in_documents) if in_documents is not None else None,
        "strict_ok": not rollout.strict.errors,
        "lenient_ok": not lenient,
        "format_errors": sorted(set(rollout.strict.errors) | set(lenient)),
        "strict_message": rollout.strict.message,
    }
    step_rows = [{
        "step": number,
        "role": step.role,
        "message_index": message_index,
        "text": step.text,
        "query": step.query,
        "documents": [{"id": d.id, "title": d.title, "url": d.url, "text": d.text} for d in step.documents]
        if step.documents is not None else None,
        "simulated": rollout.simulated if step.role == "observation" else None,
        "loss_mask": step.from_model,
        "issue": step.issue,
    } for number, (step, message_index) in enumerate(zip(steps, message_indexes), start=1)]
    return Sample(
        messages=messages, kind="trajectory", meta=rollout.meta,
        gold_answer=golds[0] if golds and len(golds) == 1 else None,
        related={"trajectories": [row], "trajectory_steps": step_rows},
    )


# -- field readers adapters share -----------------------------------------------------------------


def gold_list(value: Any, where: str) -> list[str] | None:
    """Gold answers as a list of strings, from a string or a list (numbers read as text, booleans as yes/no)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_gold(item, f"{where}[{index}]") for index, item in enumerate(value)] or None
    return [_gold(value, where)]


def _gold(value: Any, where: str) -> str:
    if isinstance(value, bool):               # R1-Searcher's judge script reads True/False as yes/no
        return "yes" if value else "no"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise FieldError(where, f"expected a string or a list of strings, got {type(value).__name__}")


def optional_str(record: dict, key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(key, f"expected a string, got {type(value).__name__}")
    return value


def policy_model(record: dict) -> str | None:
    for key in ("policy_model", "model", "model_name"):
        if isinstance(record.get(key), str) and record[key].strip():
            return record[key].strip()
    return None
