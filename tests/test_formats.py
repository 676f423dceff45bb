"""Each dialect adapter: good records map exactly, bad ones raise FieldError naming the field."""

from __future__ import annotations

import pytest

from curate import formats
from curate.errors import FieldError
from curate.formats.base import sample_id


def adapt(dialect: str, record):
    return formats.get(dialect).adapt(record)


def pairs(sample):
    return [(m["role"], m["content"]) for m in sample.messages]


# -- alpaca ---------------------------------------------------------------------------------------

def test_alpaca_joins_instruction_and_input():
    s = adapt("alpaca", {"instruction": "Translate.", "input": "Bonjour", "output": "Hello", "id": 7})
    assert pairs(s) == [("user", "Translate.\n\nBonjour"), ("assistant", "Hello")]
    assert s.meta == {"id": 7}


def test_alpaca_empty_input_and_system_and_history():
    s = adapt("alpaca", {"instruction": "Q2", "input": "  ", "output": "A2", "system": "Be brief.",
                         "history": [["Q1", "A1"]]})
    assert pairs(s) == [("system", "Be brief."), ("user", "Q1"), ("assistant", "A1"),
                        ("user", "Q2"), ("assistant", "A2")]


@pytest.mark.parametrize("record, field", [
    ({"instruction": "x"}, "output"),
    ({"instruction": "x", "output": ""}, "output"),
    ({"instruction": 3, "output": "y"}, "instruction"),
    ({"instruction": "x", "output": "y", "history": [["only one"]]}, "history[0]"),
])
def test_alpaca_errors_name_the_field(record, field):
    with pytest.raises(FieldError) as error:
        adapt("alpaca", record)
    assert error.value.field == field


# -- sharegpt -------------------------------------------------------------------------------------

def test_sharegpt_from_value_multi_turn_and_system():
    s = adapt("sharegpt", {"id": "a", "system": "sys", "conversations": [
        {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
        {"from": "human", "value": "¿qué tal?"}, {"from": "gpt", "value": "bien 😊"}]})
    assert pairs(s) == [("system", "sys"), ("user", "hi"), ("assistant", "hello"),
                        ("user", "¿qué tal?"), ("assistant", "bien 😊")]
    assert s.meta == {"id": "a"}


def test_sharegpt_role_content_variant():
    s = adapt("sharegpt", {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    assert pairs(s) == [("user", "q"), ("assistant", "a")]


@pytest.mark.parametrize("record, field", [
    ({"conversations": []}, "conversations"),
    ({"conversations": "hi"}, "conversations"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "alien", "value": "a"}]}, "conversations[1].from"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": None}]}, "conversations[1].value"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}]}, "conversations[1].content"),
    ({"conversations": [{"from": "human", "value": "q"}]}, "conversations"),
    ({"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}, "conversations"),
    ({"conversations": [["human", "q"]]}, "conversations[0]"),
])
def test_sharegpt_errors_name_the_field(record, field):
    with pytest.raises(FieldError) as error:
        adapt("sharegpt", record)
    assert error.value.field == field


# -- messages -------------------------------------------------------------------------------------

def test_messages_with_text_parts_and_empty_system_dropped():
    s = adapt("messages", {"messages": [
        {"role": "system", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"}]})
    assert pairs(s) == [("user", "ab"), ("assistant", "c")]


def test_messages_rejects_image_parts_and_missing_role():
    with pytest.raises(FieldError) as error:
        adapt("messages", {"messages": [{"role": "user", "content": [{"type": "image_url"}]},
                                        {"role": "assistant", "content": "x"}]})
    assert error.value.field == "messages[0].content[0]"
    with pytest.raises(FieldError) as error:
        adapt("messages", {"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]})
    assert error.value.field == "messages[0].role"


def test_record_that_is_a_list_is_an_error_for_every_dialect():
    for name in formats.DIALECTS:
        with pytest.raises(FieldError) as error:
            adapt(name, [{"instruction": "x", "output": "y"}])
        assert "expected a JSON object" in str(error.value)


# -- prompt-completion, lima ------------------------------------------------------------------------

def test_prompt_completion_strips_end_of_text():
    s = adapt("prompt-completion", {"prompt": "Q?\n", "completion": " yes<|endoftext|>\n"})
    assert pairs(s) == [("user", "Q?\n"), ("assistant", " yes")]


def test_prompt_completion_only_end_of_text_is_empty():
    with pytest.raises(FieldError) as error:
        adapt("prompt-completion", {"prompt": "Q?", "completion": "<|endoftext|>"})
    assert error.value.field == "completion"


def test_lima_alternates_and_keeps_source_as_meta():
    s = adapt("lima", {"conversations": ["q1", "a1", "q2", "a2"], "source": "stackexchange"})
    assert pairs(s) == [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]
    assert s.meta == {"source": "stackexchange"}
    with pytest.raises(FieldError) as error:
        adapt("lima", {"conversations": ["q1", 2]})
    assert error.value.field == "conversations[1]"


# -- mig-pool -------------------------------------------------------------------------------------

def test_mig_pool_labels_and_deita_scores():
    s = adapt("mig-pool", {
        "dialogs": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}],
        "_id": "x", "annotation": {"instag": {"content": ["math", "math", " logic "]},
                                   "deita": {"quality_scores": [2.0, 4.0], "complexity_scores": [3.0, 1.0]},
                                   "dialog_round": 2}})
    assert s.labels == [("math", "instag"), ("logic", "instag")]
    scores = {name: value for name, value, _ in s.scores}
    assert scores == {"deita_quality": 3.0, "deita_complexity": 2.0, "deita": (6.0 + 4.0) / 2}
    assert s.meta["annotation"] == {"dialog_round": 2}


def test_mig_pool_mismatched_rounds_is_an_error():
    with pytest.raises(FieldError) as error:
        adapt("mig-pool", {"dialogs": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                           "annotation": {"deita": {"quality_scores": [1.0], "complexity_scores": []}}})
    assert error.value.field == "annotation.deita.complexity_scores"


# -- gsm8k, math ----------------------------------------------------------------------------------

def test_gsm8k_gold_after_marker():
    s = adapt("gsm8k", {"question": "2+2?", "answer": "2+2=<<2+2=4>>4\n#### 1,004"})
    assert s.gold_answer == "1004"
    with pytest.raises(FieldError) as error:
        adapt("gsm8k", {"question": "2+2?", "answer": "4"})
    assert error.value.field == "answer"


def test_math_gold_from_nested_boxed_or_answer_field():
    s = adapt("math", {"problem": "p", "solution": r"so $\boxed{\frac{1}{2}}$ and done", "level": "Level 1"})
    assert s.gold_answer == r"\frac{1}{2}"
    assert s.meta == {"level": "Level 1"}
    assert adapt("math", {"problem": "p", "solution": r"\boxed{3}", "answer": "4"}).gold_answer == "4"
    with pytest.raises(FieldError) as error:
        adapt("math", {"problem": "p", "solution": "no box"})
    assert error.value.field == "solution"


# -- detection and ids ----------------------------------------------------------------------------

@pytest.mark.parametrize("record, dialect", [
    ({"dialogs": []}, "mig-pool"),
    ({"messages": []}, "messages"),
    ({"conversations": [{"from": "human", "value": "x"}]}, "sharegpt"),
    ({"conversations": ["x", "y"]}, "lima"),
    ({"instruction": "x", "input": "", "output": "y"}, "alpaca"),
    ({"prompt": "x", "completion": "y"}, "prompt-completion"),
    ({"question": "x", "answer": "y #### 3"}, "gsm8k"),
    ({"problem": "x", "solution": "y"}, "math"),
])
def test_detect(record, dialect):
    assert formats.detect(record).name == dialect


def test_detect_unknown():
    assert formats.detect({"text": "x"}) is None
    assert formats.detect(["x"]) is None


def test_sample_id_ignores_surrounding_whitespace_and_unicode_composition():
    a = [{"role": "user", "content": "  caf\u00e9\n"}, {"role": "assistant", "content": "ok"}]
    b = [{"role": "user", "content": "cafe\u0301"}, {"role": "assistant", "content": "ok "}]
    assert sample_id(a) == sample_id(b)
    assert sample_id(a) != sample_id([{"role": "assistant", "content": "café"}, {"role": "user", "content": "ok"}])
    # length prefixes: moving text across a turn boundary changes the id
    assert sample_id([{"role": "user", "content": "ab"}, {"role": "assistant", "content": "c"}]) != \
        sample_id([{"role": "user", "content": "a"}, {"role": "assistant", "content": "bc"}])


@pytest.mark.parametrize("first, second", [
    ("What is 2+2?", "4"), ("  padded\n", "\tanswer \r\n"), ("caf\u00e9", "cafe\u0301"), ("\u3000wide space\u3000", "x"),
    ("\x1cfile separator\x1f", "y"), ("", ""), ("日本語", " ascii "), ("ab", "c"),
])
def test_pair_id_is_sample_id(first, second):
    from curate.formats.base import pair_id

    messages = [{"role": "user", "content": first}, {"role": "assistant", "content": second}]
    assert pair_id("user", "assistant")(first, second) == sample_id(messages)
    assert pair_id("assistant", "user")(first, second) != sample_id(messages)
