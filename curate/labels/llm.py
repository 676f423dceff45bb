"""InsTag-style open tagging: an LLM names the intents of each query; tags are normalised, and
optionally mapped onto a vocabulary by embedding similarity.

The prompt is InsTag's (Lu et al., 2023: "Please identify tags of user intentions in the following
user query and provide an explanation for each tag..."), asking for a JSON list. The answer is
parsed leniently (a list of objects or of strings, objects one per line, code fences), because
small models rarely answer in clean JSON; an answer with no tag in it, or a failed call, is recorded
as a failure with the model's text, never turned into a default label.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from curate.labels import Labelled, Vocabulary
from curate.labels.graph import label_vectors
from curate.models.embed import encode_texts
from curate.models.llm import ChatRequest, LLMBackend
from curate.store import Store

if TYPE_CHECKING:
    from curate.selectors.base import Pool  # (curate.selectors imports this package)

SYSTEM = "You are a helpful assistant."
INSTRUCTION = ("Please identify tags of user intentions in the following user query and provide an explanation "
               "for each tag. Please respond in the JSON format [{\"tag\": str, \"explanation\": str}, ...].\n"
               "Query: ")
CHUNK = 256              # samples asked (and committed) together
MAX_TAG_WORDS = 6        # longer "tags" are sentences, not tags
MAX_TAG_CHARS = 60
_TAG_FIELD = re.compile(r'"tag"\s*:\s*"((?:[^"\\]|\\.)*)"')
_EDGE_PUNCTUATION = " \t\n\"'`.,;:!?*#-_()[]{}<>"


def tag_request(query: str, max_tokens: int = 256) -> ChatRequest:
    return ChatRequest(messages=({"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": INSTRUCTION + query}),
                       temperature=0.0, max_tokens=max_tokens)


def _tags_in(value) -> list[str]:
    """Tag strings in a decoded JSON value: a list of strings or of {"tag": ...}, or one such object."""
    if isinstance(value, dict):
        value = value.get("tags", [value])
    if not isinstance(value, list):
        return []
    tags = []
    for item in value:
        if isinstance(item, str):
            tags.append(item)
        elif isinstance(item, dict) and isinstance(item.get("tag"), str):
            tags.append(item["tag"])
    return tags


def parse_tags(text: str) -> list[str]:
    """The raw tags in a model's answer; raises ValueError saying why when there are none.

    Every JSON value in the text counts (a list, or InsTag's one {"tag": ...} object per line);
    failing that, `"tag": "..."` fields of JSON cut off mid-way.
    """
    decoder = json.JSONDecoder()
    tags, position = [], 0
    while position < len(text):
        if text[position] in "[{":
            try:
                value, end = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                position += 1
                continue
            tags += _tags_in(value)
            position = end
        else:
            position += 1
    tags = tags or [json.loads(f'"{match}"') for match in _TAG_FIELD.findall(text)]
    if not tags:
        raise ValueError("no tag in the answer (expected a JSON list of {\"tag\": ..., \"explanation\": ...})")
    return list(dict.fromkeys(tags))


def normalise_tag(tag: str) -> str | None:
    """Lower-case, NFKC, single spaces, no surrounding punctuation; None when it is no tag at all."""
    tag = unicodedata.normalize("NFKC", tag).lower().replace("_", " ")
    tag = " ".join(tag.split()).strip(_EDGE_PUNCTUATION)
    if not tag or len(tag) > MAX_TAG_CHARS or len(tag.split()) > MAX_TAG_WORDS:
        return None
    return tag


def query_text(messages: list[dict], max_chars: int) -> str:
    """The user turns (what InsTag tags), joined, cut to `max_chars`."""
    text = "\n\n".join(m["content"].strip() for m in messages if m["role"] == "user")
    return text[:max_chars]


class VocabularyMapper:
    """Maps a free tag onto its most similar vocabulary label, if the cosine reaches `floor`."""

    def __init__(self, vocab: Vocabulary, floor: float, model: str | None = None, store: Store | None = None):
        self.vocab = vocab
        self.floor = floor
        self.model = model
        self.exact = {label: label for label in vocab.labels}
        self.vectors = label_vectors(store, vocab.labels, model)

    def map(self, tags: list[str]) -> dict[str, tuple[str, float]]:
        """tag -> (label, cosine) for each tag that maps; exact vocabulary entries map to themselves."""
        mapped = {t: (t, 1.0) for t in tags if t in self.exact}
        others = sorted(set(tags) - set(mapped))
        if others:
            sims = encode_texts(others, self.model) @ self.vectors.T
            best = sims.argmax(axis=1)
            for tag, index, sim in zip(others, best, sims[np.arange(len(others)), best]):
                if sim >= self.floor:
                    mapped[tag] = (self.vocab.labels[index], float(sim))
        return mapped


def by_llm(pool: Pool, backend: LLMBackend, *, origin: str = "llm", mapper: VocabularyMapper | None = None,
           max_tokens: int = 256, max_chars: int = 2000) -> Iterator[Labelled]:
    """Tag every pool sample; one chunk of samples per backend call (a crash resumes from the cache)."""
    for start in range(0, len(pool), CHUNK):
        ids = pool.ids[start:start + CHUNK]
        rows = pool.fetch("SELECT p.pool_index, s.messages FROM pool p JOIN samples s USING (sample_id) "
                          "WHERE p.pool_index BETWEEN ? AND ? ORDER BY p.pool_index",
                          [start, start + len(ids) - 1])["messages"].to_pylist()
        responses = backend.generate([tag_request(query_text(m, max_chars), max_tokens) for m in rows])
        result = Labelled(origin=origin, covered=ids)
        proposed: list[tuple[str, list[tuple[str, str]]]] = []   # sample -> [(raw tag, normalised)]
        for sample_id, response in zip(ids, responses):
            if not response.ok:
                result.fail(sample_id, f"LLM call failed: {response.error}")
                continue
            try:
                raw_tags = parse_tags(response.text)
            except ValueError as error:
                result.fail(sample_id, str(error), response.text)
                continue
            tags = [(raw, norm) for raw in raw_tags if (norm := normalise_tag(raw))]
            if not tags:
                result.fail(sample_id, f"no usable tag among {raw_tags!r} (empty, or longer than "
                                       f"{MAX_TAG_WORDS} words)", response.text)
                continue
            proposed.append((sample_id, tags))
        mapped = mapper.map([norm for _, tags in proposed for _, norm in tags]) if mapper else None
        for sample_id, tags in proposed:
            kept = 0
            for raw, norm in tags:
                if mapped is None:
                    result.add(sample_id, norm, None, {"raw": raw} if raw != norm else None)
                    kept += 1
                elif norm in mapped:
                    label, sim = mapped[norm]
                    result.add(sample_id, label, sim, {"raw": raw})
                    kept += 1
            if not kept:
                result.fail(sample_id, f"no tag maps onto the vocabulary {mapper.vocab.path} at cosine >= "
                                       f"{mapper.floor}", json.dumps([norm for _, norm in tags]))
        yield result
