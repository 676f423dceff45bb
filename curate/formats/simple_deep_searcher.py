"""SimpleDeepSearcher SFT items: `{question, answer: [...], input, output: [...], search_count, metric, ...}`.

`output` is the trajectory in pieces, each an object with one key (process_data/repsonse_curation/
format_key.py): `gen` (the policy's text: reasoning, `<|begin_search_query|> q <|end_search_query|>`,
and at the end `</think>` and the `\\boxed{}` answer), `search_query` (the query again), `doc` (the web
pages the search returned, `**Web Page i:**\\n{json}`) and `doc_gen` (what the policy was shown: the
page analysis in `<|begin_search_result|>...<|end_search_result|>`, masked out of SFT's loss). The
prompt (`input`) opens the think block. The answer is the last `\\boxed{}`, as its evaluation reads it.
"""

from __future__ import annotations

from collections.abc import Mapping

from curate.errors import FieldError
from curate.formats.base import Sample, get_list, get_str, require_object, unmapped
from curate.trajectories.answers import boxed_answer
from curate.trajectories.checks import sds_format
from curate.trajectories.parse import SIMPLE_DEEP_SEARCHER, Observation, web_page_documents
from curate.trajectories.record import Rollout, gold_list, optional_str, policy_model, trajectory_sample

KEYS = {"question", "answer", "input", "output", "policy_model", "model", "model_name"}
PIECES = ("gen", "search_query", "doc", "doc_gen")


def matches(record: Mapping) -> bool:
    """Keys: `question` and an `output` list of one-key pieces named as SimpleDeepSearcher names them."""
    output = record.get("output")
    return ("question" in record and isinstance(output, list) and bool(output)
            and all(isinstance(piece, Mapping) and piece and set(piece) <= set(PIECES) for piece in output))


def adapt(record) -> Sample:
    record = require_object(record)
    question = get_str(record, "question").strip()
    pieces: list[str | Observation] = []
    history: list[str] = []                 # the gen/doc_gen texts, as SimpleDeepSearcher's checks see them
    pages = []
    for index, piece in enumerate(get_list(record, "output")):
        if not isinstance(piece, Mapping) or len(piece) != 1 or next(iter(piece)) not in PIECES:
            raise FieldError(f"output[{index}]", f"expected an object with one key of {', '.join(PIECES)}")
        (key, value), = piece.items()
        if value is None:                   # sft.py skips these
            continue
        if not isinstance(value, str):
            raise FieldError(f"output[{index}].{key}", f"expected a string, got {type(value).__name__}")
        if key == "gen":
            pieces.append(value)
            history.append(value)
        elif key == "doc":
            pages = web_page_documents(value)
        elif key == "doc_gen":
            pieces.append(Observation(value, pages))
            history.append(value)
            pages = []
    user = optional_str(record, "input") or question
    answer = boxed_answer("".join(history))
    return trajectory_sample(Rollout(
        grammar=SIMPLE_DEEP_SEARCHER, question=question, gold_answers=gold_list(record.get("answer"), "answer"),
        prompt=[{"role": "user", "content": user}], response=pieces, response_field="output",
        final_answer=answer, answer_source="boxed",
        strict=sds_format(history, SIMPLE_DEEP_SEARCHER.marker_words), policy_model=policy_model(record),
        meta=unmapped(record, KEYS),
    ))
