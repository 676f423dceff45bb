"""Final-answer extraction and equivalence; the keyed score writer."""

from __future__ import annotations

import pytest

from curate.answers import answers_match, as_number, gsm8k_gold, last_boxed, normalise_answer
from curate.scoring import ScoreRow, scored_ids, write_scores
from tests.conftest import count


@pytest.mark.parametrize("predicted, gold", [
    ("\\frac{1}{2}", "0.5"), ("1/2", "\\dfrac12"), ("\\frac12", "\\frac{1}{2}"), ("18", "18.0"),
    ("$18", "18"), ("1,000", "1000"), ("50\\%", "50"), ("x = 5", "5"), ("90^\\circ", "90"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"), ("10 \\text{ inches}", "10"),
    ("-\\frac{3}{4}", "-0.75"), ("\\sqrt2", "\\sqrt{2}"), ("5.", "5"),
])
def test_equivalent_answers(predicted, gold):
    assert answers_match(predicted, gold)


@pytest.mark.parametrize("predicted, gold", [
    ("\\frac{1}{3}", "0.33"), ("19", "18"), ("(3, \\pi)", "(3,\\frac{\\pi}{2})"), (None, "1"), ("", "0"),
    ("1/0", "1"),
])
def test_different_answers(predicted, gold):
    assert not answers_match(predicted, gold)


def test_extraction():
    assert last_boxed(r"a \boxed{1} then \boxed{\frac{2}{3}} end") == r"\frac{2}{3}"
    assert last_boxed(r"\boxed{\left\{ 1, 2 \right\}}") == r"\left\{ 1, 2 \right\}"
    assert last_boxed("no box") is None and last_boxed(r"\boxed{unclosed") is None
    assert gsm8k_gold("so 3+4=7\n#### 7") == "7" and gsm8k_gold("7") is None
    assert as_number("\\frac{6}{4}") == as_number("1.5") and as_number("\\pi") is None
    assert normalise_answer("\\dfrac{1}{2}") == "\\frac{1}{2}"


def test_write_scores_upserts_and_records_failures(store):
    store.schema_version()
    write_scores(store, "judge", [ScoreRow("a", None, error="unparseable"), ScoreRow("b", 2.0)], run_id="r1")
    assert scored_ids(store, "judge") == {"b"}
    assert scored_ids(store, "judge", include_failed=True) == {"a", "b"}
    write_scores(store, "judge", [ScoreRow("a", 3.5, {"why": "retry"})], run_id="r2")
    with store.connect() as con:
        assert con.execute("SELECT value, status, error, run_id FROM scores WHERE sample_id = 'a'").fetchall() == \
            [(3.5, "ok", None, "r2")]
    assert count(store, "SELECT count(*) FROM scores") == 2
    with pytest.raises(ValueError, match="no finite value"):
        write_scores(store, "judge", [ScoreRow("c", float("nan"))])
