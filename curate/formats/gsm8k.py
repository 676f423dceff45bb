"""GSM8K: {question, answer} with the gold final answer after `####`."""

from __future__ import annotations

from curate.answers import gsm8k_gold
from curate.errors import FieldError
from curate.formats.base import Sample, check_conversation, get_str, require_object, unmapped

KEYS = {"question", "answer"}


def adapt(record) -> Sample:
    record = require_object(record)
    question = get_str(record, "question")
    answer = get_str(record, "answer")
    gold = gsm8k_gold(answer)
    if gold is None:
        raise FieldError("answer", "no final answer after '####'")
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return Sample(messages=check_conversation(messages, "question/answer"), gold_answer=gold,
                  meta=unmapped(record, KEYS))
