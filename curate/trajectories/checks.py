"""Format checks of a trajectory: each dialect's own (strict) check, and a lenient one for all.

Strict: the check the dialect's reference code applies, reproduced exactly, each failed condition
an error code (and, for Search-R1, the reference's own message):
- Search-R1 and ZeroSearch: Search-R1's `is_valid_sequence` (verl/utils/reward_score/qa_em_format.py;
  ZeroSearch trains on the same tags and ships no format check of its own). It stops at the first
  problem, so it yields one code.
- R1-Searcher: the format penalty of its reward server (train/reward_server_qwen_zero.py).
- SimpleDeepSearcher: `detect_variant_markers` and `is_valid_history` (response_curation.py) and
  `find_boxed` (format_filter.py).

Lenient: what any trajectory needs to be read and scored at all: a final answer, closed search and
result blocks, results that follow a search, non-empty queries, well-formed `<|...|>` markers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from curate.trajectories.parse import Grammar, Step


class StrictCheck(NamedTuple):
    errors: list[str]
    message: str | None        # the reference's own words, where it has them


# -- Search-R1 ------------------------------------------------------------------------------------

_SEARCH_R1_TAGS = ("think", "search", "information", "answer")
_SEARCH_R1_SPLIT = re.compile(r"(</?(?:think|search|information|answer)>)")
_SEARCH_R1_TAG = re.compile(r"</?(?:think|search|information|answer)>")
_SEARCH_R1_TRANSITIONS = {
    ("<think>", "start"): "in_think", ("<think>", "information"): "in_think",
    ("</think>", "in_think"): "after_think",
    ("<search>", "after_think"): "in_search", ("</search>", "in_search"): "after_search",
    ("<information>", "after_search"): "in_information", ("</information>", "in_information"): "information",
    ("<answer>", "after_think"): "in_answer", ("</answer>", "in_answer"): "end",
}


def search_r1_sequence(response: str) -> StrictCheck:
    """Search-R1's `is_valid_sequence`, on the text after `<|im_start|>assistant`."""
    for tag in _SEARCH_R1_TAGS:
        opening, closing = response.count(f"<{tag}>"), response.count(f"</{tag}>")
        if opening != closing:
            code = f"extra_close_{tag}" if closing > opening else f"unclosed_{tag}"
            return StrictCheck([code], f"Mismatch in {tag} tags: {opening} opening vs {closing} closing tags")
    state = "start"
    for part in _SEARCH_R1_SPLIT.split(response):
        if not part.strip():
            continue
        if _SEARCH_R1_TAG.match(part):
            if (part, state) not in _SEARCH_R1_TRANSITIONS:
                return StrictCheck(["unexpected_tag"], f"Unexpected tag {part} in state {state}")
            state = _SEARCH_R1_TRANSITIONS[(part, state)]
        elif state in ("start", "after_think", "after_search", "information"):
            return StrictCheck(["text_outside_think"],
                               f"Unexpected content '{part.strip()}' between tags (state: {state})")
        elif state not in ("in_think", "in_search", "in_information", "in_answer"):
            return StrictCheck(["text_after_answer"], f"Unexpected content in state {state}")
    if state != "end":
        return StrictCheck(["incomplete_sequence"], f"Incomplete sequence, ended in state {state}")
    return StrictCheck([], None)


# -- R1-Searcher ----------------------------------------------------------------------------------

_R1_DOCUMENTS = re.compile(r"<\|begin_of_documents\|>.*?<\|end_of_documents\|>", re.DOTALL)


CJK = re.compile("[\u4e00-\u9fff]")      # the CJK range both R1-Searcher and SimpleDeepSearcher check


def r1_searcher_format(solution: str) -> StrictCheck:
    """The conditions of R1-Searcher's format penalty (each failed one is a code)."""
    errors, notes = [], []
    counts = [solution.count(marker) for marker in (
        "<|begin_of_documents|>\n", "<|end_of_documents|>\n\n", "<|begin_of_query|>", "<|end_of_query|>",
        "<|begin_of_documents|>", "<|end_of_documents|>", "<|begin_of_documents|>\n(1)")]
    if len(set(counts)) != 1:
        errors.append("unbalanced_search_markers")
        notes.append(f"query/documents marker counts differ: {counts}")
    if "Assistant" in solution or "assistant" in solution:
        errors.append("role_word_in_response")
        notes.append("the response says 'assistant'")
    opens, closes = solution.count("<think>"), solution.count("</think>")
    if not (opens == 0 and closes == 1):
        errors.append("think_tags")
        notes.append(f"{opens} <think> and {closes} </think> (expected 0 and 1)")
    if not (solution.count("<answer>") == solution.count("</answer>") == 1):
        errors.append("answer_tags")
        notes.append(f"{solution.count('<answer>')} <answer> and {solution.count('</answer>')} </answer> (expected 1)")
    answer_text = solution.split("<answer>")[-1].split("</answer>")[0].strip()
    if "begin_of_query" in answer_text or "begin_of_documents" in answer_text:
        errors.append("markers_in_answer")
        notes.append("search markers inside the answer")
    if len(answer_text.split()) > 10:
        errors.append("answer_over_10_words")
        notes.append(f"answer of {len(answer_text.split())} words")
    if CJK.search(_R1_DOCUMENTS.sub("", solution)):
        errors.append("cjk_outside_documents")
        notes.append("Chinese characters outside the documents")
    return StrictCheck(errors, "; ".join(notes) or None)


# -- SimpleDeepSearcher ---------------------------------------------------------------------------

_SDS_QUERY = ("<|begin_search_query|>", "<|end_search_query|>")
_SDS_RESULT = ("<|begin_search_result|>", "<|end_search_result|>")
_SDS_SPECIAL = (*_SDS_QUERY, *_SDS_RESULT, "</think>")


def incorrect_markers(text: str, words: Sequence[str]) -> list[str]:
    """Marker words not written as `<|word|>` (SimpleDeepSearcher's `extract_incorrect_markers`)."""
    found = []
    for match in re.finditer("(" + "|".join(map(re.escape, words)) + ")", text):
        start, end = match.span()
        if not (start >= 2 and text[start - 2:start] == "<|" and text[end:end + 2] == "|>"):
            found.append(text[max(start - 2, 0):end + 2])
    return found


def sds_valid_history(history: Sequence[str]) -> bool:
    """SimpleDeepSearcher's `is_valid_history`: every piece is a search call, a result block, or
    the last piece, which holds the one `</think>`."""
    for index, piece in enumerate(history):
        text = piece.strip()
        if "</think>" in piece:
            if index != len(history) - 1 or piece.count("</think>") != 1:
                return False
            if any(token != "</think>" and token in text for token in _SDS_SPECIAL):
                return False
        elif text.startswith(_SDS_RESULT[0]) and text.endswith(_SDS_RESULT[1]):
            middle = text[len(_SDS_RESULT[0]):-len(_SDS_RESULT[1])].strip()
            if any(token in middle for token in _SDS_SPECIAL):
                return False
        elif text.endswith(_SDS_QUERY[1]):
            middle = text[:-len(_SDS_QUERY[1])].strip()
            if middle.count(_SDS_QUERY[0]) != 1:
                return False
            if any(token in middle.replace(_SDS_QUERY[0], "").strip() for token in _SDS_SPECIAL):
                return False
        else:
            return False
    return True


def sds_format(history: Sequence[str], marker_words: Sequence[str]) -> StrictCheck:
    """SimpleDeepSearcher's format conditions over its `gen`/`doc_gen` pieces, in order."""
    output = "".join(history)
    errors, notes = [], []
    if bad := incorrect_markers(output, marker_words):
        errors.append("malformed_marker")
        notes.append(f"malformed markers {bad[:3]}")
    if output.count("</think>") > 2:
        errors.append("think_close_over_2")
        notes.append(f"{output.count('</think>')} </think>")
    if not sds_valid_history(history):
        errors.append("invalid_history")
        notes.append("a piece is neither a search call, a result block, nor the final piece with the one </think>")
    if output.split("</think>")[0].count("boxed{"):
        errors.append("boxed_before_think_end")
        notes.append("\\boxed{ before the first </think>")
    return StrictCheck(errors, "; ".join(notes) or None)


# -- lenient, for every dialect -------------------------------------------------------------------


def lenient_errors(grammar: Grammar, steps: Sequence[Step], final_answer: str | None) -> list[str]:
    errors = set()
    if final_answer is None:
        errors.add("no_answer")
    for index, step in enumerate(steps):
        if step.issue == "unclosed":
            errors.add("unclosed_query" if step.role == "search" else "unclosed_documents")
        elif step.issue == "fabricated":
            errors.add("fabricated_documents")
        if step.role == "search" and not step.query:
            errors.add("empty_query")
        if step.role == "observation" and (index == 0 or steps[index - 1].role != "search"):
            errors.add("documents_without_query")
    if grammar.marker_words:
        model_text = "".join(step.text for step in steps if step.from_model)
        if incorrect_markers(model_text, grammar.marker_words):
            errors.add("malformed_marker")
    return sorted(errors)
