"""Trajectory metrics, answer extraction, format checks and step parsing, on worked examples."""

from __future__ import annotations

import pytest

from curate.trajectories.answers import boxed_answer, last_answer_tag, r1_searcher_answer
from curate.trajectories.chatml import split_chatml, strip_end_tokens
from curate.trajectories.checks import (
    incorrect_markers,
    lenient_errors,
    r1_searcher_format,
    sds_format,
    sds_valid_history,
    search_r1_sequence,
)
from curate.trajectories.metrics import (
    contains_answer,
    cover_exact_match,
    exact_match,
    f1,
    normalize_answer,
    score_answer,
)
from curate.trajectories.parse import (
    R1_SEARCHER,
    SEARCH_R1,
    SIMPLE_DEEP_SEARCHER,
    ZEROSEARCH,
    Observation,
    parse_steps,
    r1_searcher_documents,
    search_r1_documents,
    web_page_documents,
    zerosearch_documents,
)

# -- normalisation and scores ---------------------------------------------------------------------


@pytest.mark.parametrize("text, normal", [
    ("U.S.", "us"),                                  # punctuation removed, not spaced: "u s" would be R1-Searcher's
    ("the U.S. Army", "us army"),
    ("The Beatles", "beatles"),
    ("A Tale of Two Cities", "tale of two cities"),
    ("an apple, a day", "apple day"),
    ("Theatre", "theatre"),                          # articles only as whole words
    ("  Paris,\n France!!  ", "paris france"),
    ("Sinoatrial (SA) node", "sinoatrial sa node"),
    ("O'Brien-Smith", "obriensmith"),
    ("1,000", "1000"),
    ("Café", "café"),                                # non-ASCII letters kept
    ("“Quoted”", "“quoted”"),                        # only ASCII punctuation is stripped (SQuAD)
    ("YES.", "yes"),
    ("", ""),
])
def test_squad_normalisation(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_is_max_over_golds_and_ignores_case_articles_punctuation():
    assert exact_match("the United States", ["USA", "United States"]) == 1.0
    assert exact_match("U.S.", ["US"]) == 1.0
    assert exact_match("U.S.", ["United States"]) == 0.0
    assert exact_match("Paris, France", ["Paris"]) == 0.0
    assert exact_match(None, ["Paris"]) == 0.0


def test_cover_em_is_gold_substring_of_prediction():
    assert cover_exact_match("Paris, France", ["Paris"]) == 1.0
    assert cover_exact_match("Paris", ["Paris, France"]) == 0.0
    assert cover_exact_match("The answer is Kauffman Stadium.", ["kauffman stadium"]) == 1.0
    # substring, not token: "art" is inside "party" once normalised
    assert cover_exact_match("party", ["art"]) == 1.0
    assert cover_exact_match(None, ["x"]) == 0.0


def test_f1_worked_examples():
    # pred tokens [new, york, city], gold [new, york]: p = 2/3, r = 1, f1 = 0.8
    assert f1("New York City", ["New York"]) == pytest.approx(0.8)
    # max over golds
    assert f1("New York City", ["Boston", "York City"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    # repeated tokens count by multiplicity: pred [a?] -> "b b c" vs gold "b c c": common b1 c1 = 2; p = r = 2/3
    assert f1("b b c", ["b c c"]) == pytest.approx(2 / 3)
    assert f1("Lyon", ["Paris"]) == 0.0
    assert f1(None, ["Paris"]) == 0.0


@pytest.mark.parametrize("prediction, gold, expected", [
    ("yes", "yes", 1.0),
    ("Yes.", "yes", 1.0),
    ("yes", "no", 0.0),
    ("no", "no way", 0.0),           # a yes/no prediction that differs from the gold scores 0
    ("no way", "no", 0.0),           # a yes/no gold that differs from the prediction scores 0
    ("noanswer", "no answer", 0.0),
    ("yes it is", "yes", 0.0),       # although "yes" overlaps: the gold is yes/no and differs
])
def test_f1_yes_no_mismatch_scores_zero(prediction, gold, expected):
    assert f1(prediction, [gold]) == expected


def test_score_answer_bundles_the_three():
    assert score_answer("Kauffman Stadium", ["Kauffman Stadium"]) == (1.0, 1.0, 1.0)
    scores = score_answer("It is Kauffman Stadium", ["Kauffman Stadium"])
    assert (scores.em, scores.cover_em) == (0.0, 1.0) and scores.f1 == pytest.approx(2 * 0.5 / 1.5)


def test_contains_answer_is_search_r1_retrieval_check():
    assert contains_answer(['Doc 1(Title: "X") ... the Sinoatrial node (SA node) is ...'], ["sinoatrial node"])
    assert not contains_answer(["nothing here"], ["Paris"])
    assert contains_answer(["anything"], ["The"])      # like the reference: "" is in every text


# -- answer extraction ----------------------------------------------------------------------------


def test_search_r1_answer_is_the_last_tag_of_the_response():
    assert last_answer_tag("<think>x</think><answer> A </answer> <answer>\nB\n</answer>") == "B"
    assert last_answer_tag("<answer>unclosed") is None
    assert last_answer_tag("no tags") is None


def test_r1_searcher_answer_follows_its_split():
    assert r1_searcher_answer(" ... </think>\n\n <answer> Yes </answer>") == "Yes"
    assert r1_searcher_answer("<answer> a </answer> then <answer> b </answer>") == "b"
    assert r1_searcher_answer("<answer> a") is None


def test_boxed_answer_follows_simple_deep_searcher_qa_mode():
    assert boxed_answer("</think>\n\n**Final Answer**\n\\boxed{Kauffman Stadium}") == "Kauffman Stadium"
    assert boxed_answer("\\boxed{\\text{Paris}}") == "Paris"
    assert boxed_answer("\\boxed{(B)}") == "B"
    # greedy to the line's last brace, last line wins
    assert boxed_answer("\\boxed{1}\n\\boxed{2} and {3}") == "2} and {3"
    assert boxed_answer("\\boxed{}") is None
    assert boxed_answer("no box") is None


# -- Search-R1's strict check ---------------------------------------------------------------------

GOOD_R1 = ("<think> a </think>\n<search> q </search>\n\n<information>Doc 1(Title: \"T\") x\n</information>\n\n"
           "<think> b </think>\n<answer> c </answer>")


@pytest.mark.parametrize("response, code, message", [
    (GOOD_R1, None, None),
    ("<think> a </think><answer> c </answer>", None, None),
    ("<think> a </think> b </think><answer> c </answer>", "extra_close_think",
     "Mismatch in think tags: 1 opening vs 2 closing tags"),
    ("<think> a <answer> c </answer>", "unclosed_think", "Mismatch in think tags: 1 opening vs 0 closing tags"),
    ("<think> a </think>\n<search> q </search>\n\n<information>d</information>\n\nreasoning\n<answer> c </answer>",
     "text_outside_think", "Unexpected content 'reasoning' between tags (state: information)"),
    ("<answer> c </answer>", "unexpected_tag", "Unexpected tag <answer> in state start"),
    ("<think> a </think><answer> c </answer> more", "text_after_answer", "Unexpected content in state end"),
    ("<think> a </think>", "incomplete_sequence", "Incomplete sequence, ended in state after_think"),
])
def test_search_r1_is_valid_sequence(response, code, message):
    check = search_r1_sequence(response)
    assert check.errors == ([code] if code else [])
    assert check.message == message


# -- R1-Searcher's format penalty -----------------------------------------------------------------

GOOD_R1S = ("Step 1 <|begin_of_query|> x<|end_of_query|>\n\n<|begin_of_documents|>\n(1)Title: T Text: t\n"
            "<|end_of_documents|>\n\nso </think>\n\n<answer> A </answer>")


def test_r1_searcher_format_conditions():
    assert r1_searcher_format(GOOD_R1S).errors == []
    none_docs = GOOD_R1S.replace("(1)Title: T Text: t\n", "None")
    assert r1_searcher_format(none_docs).errors == ["unbalanced_search_markers"]
    assert r1_searcher_format(GOOD_R1S.replace("so", "the assistant says")).errors == ["role_word_in_response"]
    assert r1_searcher_format("<think>" + GOOD_R1S).errors == ["think_tags"]
    assert r1_searcher_format(GOOD_R1S + "</think>").errors == ["think_tags"]
    long = GOOD_R1S.replace(" A ", " one two three four five six seven eight nine ten eleven ")
    assert r1_searcher_format(long).errors == ["answer_over_10_words"]
    assert r1_searcher_format(GOOD_R1S.replace(" A ", " 答案 ")).errors == ["cjk_outside_documents"]
    assert r1_searcher_format(GOOD_R1S.replace("Text: t", "Text: 中文")).errors == []      # inside documents
    no_answer = r1_searcher_format(GOOD_R1S.split("<answer>")[0])
    assert "answer_tags" in no_answer.errors


# -- SimpleDeepSearcher's checks ------------------------------------------------------------------

SDS_HISTORY = [
    "Let me search. <|begin_search_query|>who built it<|end_search_query|>",
    "\n\n<|begin_search_result|>Built by X.<|end_search_result|>\n\n",
    "So X. </think>\n\n\\boxed{X}",
]


def test_sds_history_and_markers():
    assert sds_valid_history(SDS_HISTORY)
    assert sds_format(SDS_HISTORY, SIMPLE_DEEP_SEARCHER.marker_words).errors == []
    assert sds_valid_history(SDS_HISTORY[:2])      # like the reference: no piece must hold the </think>
    assert not sds_valid_history([SDS_HISTORY[0].replace("<|end_search_query|>", ""), *SDS_HISTORY[1:]])
    assert not sds_valid_history([SDS_HISTORY[0], SDS_HISTORY[1].replace("X.", "X. <|begin_search_query|>"),
                                  SDS_HISTORY[2]])
    assert not sds_valid_history([*SDS_HISTORY[:2], "a </think> b </think> \\boxed{X}"])
    boxed = sds_format(["\\boxed{Y} " + SDS_HISTORY[0], *SDS_HISTORY[1:]], SIMPLE_DEEP_SEARCHER.marker_words)
    assert boxed.errors == ["boxed_before_think_end"]
    malformed = ["Let me search. <begin_search_query|>q<|end_search_query|>", *SDS_HISTORY[1:]]
    assert "malformed_marker" in sds_format(malformed, SIMPLE_DEEP_SEARCHER.marker_words).errors
    assert incorrect_markers("<|begin_search_query|>a<|end_search_query|>", SIMPLE_DEEP_SEARCHER.marker_words) == []
    assert incorrect_markers("begin_search_query|>", SIMPLE_DEEP_SEARCHER.marker_words) == ["begin_search_query|>"]
    three = ["a </think>", "b </think>", "c </think>"]
    assert "think_close_over_2" in sds_format(three, SIMPLE_DEEP_SEARCHER.marker_words).errors


# -- documents ------------------------------------------------------------------------------------


def test_documents_of_each_format():
    docs = search_r1_documents('Doc 1(Title: "Paul Walker (actor)") text one\nDoc 2(Title: """Q"" Show") two\n')
    assert [(d.title, d.text) for d in docs] == [("Paul Walker (actor)", "text one"), ('"Q" Show', "two")]
    assert search_r1_documents("") == []
    docs = zerosearch_documents("Doc 1: first one.\nDoc 2: second\nline two\n")
    assert [d.text for d in docs] == ["first one.", "second\nline two"]
    assert zerosearch_documents("No information available") == []
    docs = r1_searcher_documents('\n(1)Title: A Text:  alpha\n(2)"Title: B Text:  often called ""The K"".\"\n')
    assert [(d.title, d.text) for d in docs] == [("A", "alpha"), ("B", 'often called "The K".')]
    assert r1_searcher_documents("\nNone") == []
    kilt = r1_searcher_documents("\n(1)Filippo Strozzi the Elder   - Lorenzo (1482–1549), who founded\n(2)untitled\n")
    assert [(d.title, d.text) for d in kilt] == [("Filippo Strozzi the Elder", "- Lorenzo (1482–1549), who founded"),
                                                 (None, "untitled")]
    pages = ('**Web Page 1:**\n{"title": "T1", "url": "u1", "context": "c1"}\n'
             '**Web Page 2:**\n{broken json\n**Web Page 3:**\n{"title": "T1", "context": "c3"}\n')
    docs = web_page_documents(pages)
    assert [(d.id, d.url, d.text) for d in docs] == [("T1", "u1", "c1"), ("T1", None, "c3")]
    same = search_r1_documents('Doc 1(Title: "T") a  b\n')[0]
    assert same.id == search_r1_documents('Doc 3(Title: "T") a b')[0].id


# -- steps ----------------------------------------------------------------------------------------


def roles(steps):
    return [s.role for s in steps]


def test_search_r1_steps_cover_the_response_and_classify_text():
    steps = parse_steps(SEARCH_R1, GOOD_R1)
    assert "".join(s.text for s in steps) == GOOD_R1
    assert roles(steps) == ["think", "search", "observation", "think", "answer"]
    assert steps[1].query == "q" and [d.title for d in steps[2].documents] == ["T"]
    outside = GOOD_R1.replace("<think> b </think>", "b")
    assert roles(parse_steps(SEARCH_R1, outside)) == ["think", "search", "observation", "invalid", "answer"]
    notice = ("<think>a</think> nonsense\nMy previous action is invalid. If I want to search, I should put the query "
              "between <search> and </search>. If I want to give the final answer, I should put the answer between "
              "<answer> and </answer>. Let me try again.\n<think>b</think><answer>c</answer>")
    steps = parse_steps(SEARCH_R1, notice)
    assert roles(steps) == ["think", "invalid", "system", "think", "answer"]
    assert [s.from_model for s in steps] == [True, True, False, True, True]


def test_r1_searcher_steps_start_inside_think():
    steps = parse_steps(R1_SEARCHER, GOOD_R1S)
    assert "".join(s.text for s in steps) == GOOD_R1S
    assert roles(steps) == ["think", "search", "observation", "think", "answer"]
    assert steps[1].query == "x" and steps[2].documents[0].title == "T"
    unclosed = parse_steps(R1_SEARCHER, "a <|begin_of_query|> q")
    assert roles(unclosed) == ["think", "search"] and unclosed[1].issue == "unclosed"
    assert lenient_errors(R1_SEARCHER, unclosed, None) == ["no_answer", "unclosed_query"]


def test_zerosearch_steps_read_doc_colon_results():
    text = "<think>a</think><search> q </search><information>Doc 1: one\nDoc 2: two</information><answer>x</answer>"
    steps = parse_steps(ZEROSEARCH, text)
    assert [d.text for d in steps[2].documents] == ["one", "two"]


def test_simple_deep_searcher_pieces():
    pieces = [SDS_HISTORY[0], Observation(SDS_HISTORY[1], web_page_documents(
        '**Web Page 1:**\n{"title": "T", "context": "c"}')), SDS_HISTORY[2]]
    steps = parse_steps(SIMPLE_DEEP_SEARCHER, pieces)
    assert roles(steps) == ["think", "search", "observation", "think", "answer"]
    assert steps[2].documents[0].title == "T"
    fabricated = parse_steps(SIMPLE_DEEP_SEARCHER, ["a <|begin_search_result|>made up<|end_search_result|> b"])
    assert roles(fabricated) == ["think", "invalid", "think"] and fabricated[1].issue == "fabricated"
    limited = parse_steps(SIMPLE_DEEP_SEARCHER, [SDS_HISTORY[0], Observation(
        "\n<|begin_search_result|>\nYou have searched this query. Please refer to previous results.\n"
        "<|end_search_result|>\n"), SDS_HISTORY[2]])
    assert roles(limited) == ["think", "search", "system", "think", "answer"]


def test_lenient_errors():
    steps = parse_steps(SEARCH_R1, "<think>a</think><information>Doc 1(Title: T) x</information>"
                                   "<search>  </search><answer>b</answer>")
    assert lenient_errors(SEARCH_R1, steps, "b") == ["documents_without_query", "empty_query"]
    assert lenient_errors(SEARCH_R1, parse_steps(SEARCH_R1, GOOD_R1), "c") == []


def test_chatml_split():
    text = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU\n<|im_end|>\n<|im_start|>assistant\n<think>"
    turns, response = split_chatml(text + "x</think><|im_end|>")
    assert turns == [("system", "S"), ("user", "U\n")] and response == "<think>x</think>"
    assert split_chatml("<|im_start|>user\nU")[1] is None
    assert strip_end_tokens("a </answer>\n") == "a </answer>\n"
    assert strip_end_tokens("a</answer><|im_end|>\n<|endoftext|>") == "a</answer>"
