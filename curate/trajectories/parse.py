"""Split a search agent's response into steps, by the tags of its dialect.

A step is one of:
- `think`: reasoning the policy wrote inside a think block (R1-Searcher and SimpleDeepSearcher
  prompts open `<think>` themselves, so their responses start inside one);
- `search`: a search call, with its query;
- `observation`: what the search engine returned, with the documents parsed out of it;
- `answer`: the final answer block (`<answer>...</answer>`, or SimpleDeepSearcher's text after
  `</think>` holding `\\boxed{}`);
- `invalid`: text the policy wrote outside any block its dialect allows (e.g. reasoning outside
  `<think>` in Search-R1), or search results it wrote itself;
- `system`: a message the environment wrote into the response (Search-R1's "My previous action is
  invalid", SimpleDeepSearcher's "The maximum search limit is exceeded").

Steps cover the response exactly: joining their `text` gives the response back (whitespace between
two blocks goes with the block before it), so nothing a trajectory holds is lost by parsing it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

ROLES = ("think", "search", "observation", "answer", "invalid", "system")
ENVIRONMENT_ROLES = ("observation", "system")     # written by the environment: masked out of the loss


@dataclass(frozen=True)
class Document:
    id: str                  # what makes two retrieved documents the same one
    title: str | None
    text: str
    url: str | None = None


@dataclass
class Step:
    role: str
    text: str                            # the verbatim span of the response
    query: str | None = None             # search steps
    documents: list[Document] | None = None   # observation steps
    issue: str | None = None             # 'unclosed' block, or 'fabricated' search results

    @property
    def from_model(self) -> bool:
        return self.role not in ENVIRONMENT_ROLES


@dataclass(frozen=True)
class Observation:
    """A response piece the environment wrote, given apart from the policy's text (SimpleDeepSearcher)."""

    text: str
    documents: list[Document] = field(default_factory=list)


# -- documents ------------------------------------------------------------------------------------


def _doc_id(title: str | None, text: str) -> str:
    return hashlib.sha1(f"{title or ''}\n{' '.join(text.split())}".encode()).hexdigest()[:16]


def _unquote(text: str) -> str:
    """Undo the CSV-style quoting of some corpus titles and passages: outer quotes, doubled inner ones."""
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('""', '"')
    return text


_SEARCH_R1_DOC = re.compile(r'Doc \d+\(Title: ("(?:[^"]|"")*"|.*?)\) ?(.*)', re.DOTALL)
_ZEROSEARCH_DOC = re.compile(r"Doc \d+: ?(.*)", re.DOTALL)
_R1_SEARCHER_DOC = re.compile(r'\(\d+\)("?)Title: (.*?) Text: ?(.*)', re.DOTALL)


def _chunks(block: str, start: str) -> list[str]:
    """The entries of a results block, each starting at a line that begins with `start` (a regex)."""
    return [c.strip() for c in re.split(rf"(?:^|\n)(?={start})", block.strip()) if re.match(start, c.strip())]


def search_r1_documents(block: str) -> list[Document]:
    """`Doc i(Title: "T") text` entries (Search-R1's `_passages2string`)."""
    documents = []
    for chunk in _chunks(block, r"Doc \d+\(Title: "):
        title, text = _SEARCH_R1_DOC.match(chunk).groups()
        title, text = _unquote(title.strip()), text.strip()
        documents.append(Document(_doc_id(title, text), title, text))
    return documents


def zerosearch_documents(block: str) -> list[Document]:
    """`Doc i: text` entries (ZeroSearch's simulated and Google results)."""
    documents = []
    for chunk in _chunks(block, r"Doc \d+: "):
        text = _ZEROSEARCH_DOC.match(chunk).group(1).strip()
        documents.append(Document(_doc_id(None, text), None, text))
    return documents


def r1_searcher_documents(block: str) -> list[Document]:
    """`(i)` entries of R1-Searcher's retrievers: `(i)Title: T Text: x` (its abstracts index) or
    `(i)T   x` (its KILT passages, written `f"{title}   {paragraph}"`); a block of `None` has none."""
    documents = []
    for chunk in _chunks(block, r"\(\d+\)"):
        match = _R1_SEARCHER_DOC.match(chunk)
        if match:
            quoted, title, text = match.groups()
            text = text.strip()
            if quoted and text.endswith('"'):
                text = text[:-1].replace('""', '"')
            title = title.strip()
        else:
            entry = re.sub(r"^\(\d+\)", "", chunk)
            title, separator, text = entry.partition("   ")
            title, text = (title.strip(), text.strip()) if separator else (None, entry.strip())
        documents.append(Document(_doc_id(title, text), title, text))
    return documents


def web_page_documents(pages: str) -> list[Document]:
    """SimpleDeepSearcher's `**Web Page i:**\\n{json}` pages, read as its `parse_web_pages` does:
    a page whose JSON does not parse is skipped, and a page is identified by its title (that
    function keeps only title and context, so its unique-URL count is a unique-title count)."""
    documents = []
    for segment in pages.split("**Web Page ")[1:]:
        try:
            page = json.loads(segment.split("\n", 1)[1].strip())
            title, context = page["title"], page["context"]
        except (IndexError, KeyError, TypeError, json.JSONDecodeError):
            continue
        documents.append(Document(str(title), str(title), str(context), page.get("url")))
    return documents


# -- grammars -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grammar:
    """The tags of one dialect."""

    name: str
    query: tuple[str, str]
    documents: tuple[str, str]
    answer_tags: tuple[str, str] | None      # None: a `\boxed{}` answer after `</think>`
    implicit_think: bool                     # the prompt ends with an open `<think>`
    parse_documents: Callable[[str], list[Document]]
    documents_in_text: bool = True           # False: results in the policy's text are fabricated
    notices: tuple[str, ...] = ()            # environment messages written into the response
    marker_words: tuple[str, ...] = ()       # bare words of `<|...|>` markers, to spot malformed ones

    @functools.cached_property
    def pattern(self) -> re.Pattern:
        parts = [f"(?P<notice>{'|'.join(map(re.escape, self.notices))})"] if self.notices else []
        parts += [
            rf"(?P<query>{re.escape(self.query[0])}(?P<query_text>.*?)(?P<query_end>{re.escape(self.query[1])}|\Z))",
            (rf"(?P<documents>{re.escape(self.documents[0])}(?P<documents_text>.*?)"
             rf"(?P<documents_end>{re.escape(self.documents[1])}|\Z))"),
        ]
        if self.answer_tags:
            parts.append(rf"(?P<answer>{re.escape(self.answer_tags[0])}.*?{re.escape(self.answer_tags[1])})")
        parts += [r"(?P<think_open><think>)", r"(?P<think_close></think>)"]
        return re.compile("|".join(parts), re.DOTALL)


_SEARCH_R1_INVALID_ACTION = (
    "My previous action is invalid. If I want to search, I should put the query between <search> and "
    "</search>. If I want to give the final answer, I should put the answer between <answer> and </answer>. "
    "Let me try again.")

SEARCH_R1 = Grammar("search-r1", ("<search>", "</search>"), ("<information>", "</information>"),
                    ("<answer>", "</answer>"), False, search_r1_documents, notices=(_SEARCH_R1_INVALID_ACTION,))
ZEROSEARCH = Grammar("zerosearch", ("<search>", "</search>"), ("<information>", "</information>"),
                     ("<answer>", "</answer>"), False, zerosearch_documents, notices=(_SEARCH_R1_INVALID_ACTION,))
R1_SEARCHER = Grammar("r1-searcher", ("<|begin_of_query|>", "<|end_of_query|>"),
                      ("<|begin_of_documents|>", "<|end_of_documents|>"), ("<answer>", "</answer>"), True,
                      r1_searcher_documents,
                      marker_words=("begin_of_query", "end_of_query", "begin_of_documents", "end_of_documents"))
SIMPLE_DEEP_SEARCHER = Grammar(
    "simple-deep-searcher", ("<|begin_search_query|>", "<|end_search_query|>"),
    ("<|begin_search_result|>", "<|end_search_result|>"), None, True, web_page_documents,
    documents_in_text=False,
    notices=("The maximum search limit is exceeded. You are not allowed to search.",
             "You have searched this query. Please refer to previous results."),
    marker_words=("begin_search_query", "end_search_query", "begin_search_result", "end_search_result"))


# -- steps ----------------------------------------------------------------------------------------


class _Steps:
    """The state of a left-to-right pass: whether the policy is inside a think block, and the think
    step being written (a block inside a think block ends that step, not the think block)."""

    def __init__(self, grammar: Grammar):
        self.grammar = grammar
        self.steps: list[Step] = []
        self.in_think = grammar.implicit_think
        self.thinking: Step | None = None
        self.leading = ""            # whitespace before the first step

    def add(self, step: Step) -> None:
        step.text, self.leading = self.leading + step.text, ""
        self.steps.append(step)
        self.thinking = None

    def whitespace(self, text: str) -> None:
        if self.steps:
            self.steps[-1].text += text
        else:
            self.leading += text

    def free_text(self, text: str) -> None:
        if self.in_think and self.thinking is not None:
            self.thinking.text += text
            return
        body = text.lstrip()
        self.whitespace(text[:len(text) - len(body)])     # whitespace goes with the step before it
        if not body:
            return
        if self.in_think:
            self.add(Step("think", body))
            self.thinking = self.steps[-1]
        elif self.grammar.answer_tags is None and "boxed{" in body:
            self.add(Step("answer", body))
        else:
            self.add(Step("invalid", body))

    def think_open(self, tag: str) -> None:
        if self.thinking is not None:
            self.thinking.text += tag
        else:
            self.add(Step("think", tag))
            self.thinking = self.steps[-1]
        self.in_think = True

    def think_close(self, tag: str) -> None:
        if self.thinking is not None:
            self.thinking.text += tag
        elif self.steps and self.steps[-1].from_model:
            self.steps[-1].text += tag            # a stray or late `</think>` stays with the policy's text
        else:
            self.add(Step("think" if self.in_think else "invalid", tag))
        self.thinking = None
        self.in_think = False

    def text(self, text: str) -> None:
        position = 0
        for match in self.grammar.pattern.finditer(text):
            self.free_text(text[position:match.start()])
            position = match.end()
            span = match.group()
            if match.group("think_open"):
                self.think_open(span)
            elif match.group("think_close"):
                self.think_close(span)
            elif match.group("query"):
                self.add(Step("search", span, query=match.group("query_text").strip(),
                              issue=None if match.group("query_end") else "unclosed"))
            elif match.group("documents"):
                issue = None if match.group("documents_end") else "unclosed"
                if self.grammar.documents_in_text:
                    self.add(Step("observation", span, documents=self.grammar.parse_documents(
                        match.group("documents_text")), issue=issue))
                else:
                    self.add(Step("invalid", span, issue="fabricated"))
            elif self.grammar.answer_tags and match.group("answer"):
                self.add(Step("answer", span))
            else:
                self.add(Step("system", span))     # an environment notice
        self.free_text(text[position:])

    def observation(self, piece: Observation) -> None:
        is_notice = any(notice in piece.text for notice in self.grammar.notices)
        self.add(Step("system" if is_notice else "observation", piece.text,
                      documents=None if is_notice else list(piece.documents)))


def parse_steps(grammar: Grammar, pieces: str | Sequence[str | Observation]) -> list[Step]:
    """The steps of a response: one text (flat dialects), or the policy's texts and the
    environment's observations in order (SimpleDeepSearcher's `output` items)."""
    state = _Steps(grammar)
    for piece in [pieces] if isinstance(pieces, str) else pieces:
        if isinstance(piece, Observation):
            state.observation(piece)
        else:
            state.text(piece)
    return state.steps
