"""A `.json` file that is one top-level array, read element by element in bounded memory.

DuckDB's JSON reader splits the array and hands over each element's text as written (orjson parses
it next, as it would in a whole-file parse). DuckDB parses a buffer of elements at a time and fails
the whole buffer at a fault, so an array that is not valid JSON (a truncated download, one broken
element) is read again from the element after those already handed over, by the standard library's
decoder, one element at a time: every element before the fault is handed over, then a CurateError
says where the fault is. A re-run resumes after the elements committed and stops at the same place.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

import duckdb

from curate.errors import CurateError

MAX_ELEMENT_BYTES = 64 << 20   # DuckDB sizes its buffer by this; the fallback's window is bounded by it
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")


def elements(path: str, skip_through: int, batch_rows: int) -> Iterator[list[tuple[int, bytes]]]:
    """The array's elements after the first `skip_through`, `batch_rows` at a time, as
    `(element number, text)`; numbers count from 1."""
    # one thread (the store's writer has the other core) and a bounded buffer
    connection = duckdb.connect(config={"threads": 1, "memory_limit": "1GB"})
    row_number, fault = skip_through, None
    try:
        reader = connection.sql(
            "SELECT json FROM read_json_objects($path, format = 'array', maximum_object_size = $most) OFFSET $skip",
            params={"path": path, "skip": skip_through, "most": MAX_ELEMENT_BYTES}).to_arrow_reader(batch_rows)
        for batch in reader:
            texts = batch.column(0).to_pylist()
            yield [(row_number + i, text.encode()) for i, text in enumerate(texts, 1)]
            row_number += len(texts)
    except (duckdb.Error, OSError) as error:   # a fault met while streaming surfaces as Arrow's OSError
        detail = str(error).splitlines()[0]
        if "JSON" not in detail:
            raise CurateError(f"{path}: cannot read after element {row_number} ({detail})") from error
        fault = detail
    finally:
        connection.close()
    if fault is not None:
        yield from _elements_up_to_fault(path, row_number, batch_rows, fault)


def _elements_up_to_fault(path: str, skip_through: int, batch_rows: int, fault: str
                          ) -> Iterator[list[tuple[int, bytes]]]:
    """The elements after the first `skip_through` up to the first that does not parse, then the
    CurateError that says where it is (`fault`: what DuckDB said)."""
    chunk: list[tuple[int, bytes]] = []
    try:
        for number, text in _each_element(path, fault):
            if number > skip_through:
                chunk.append((number, text))
                if len(chunk) >= batch_rows:
                    yield chunk
                    chunk = []
    except CurateError:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


class _Window:
    """A file's text read MAX_ELEMENT_BYTES at a time, with a cursor `at`; reading on drops the text
    before the cursor, so the window stays within a few elements' size."""

    def __init__(self, handle) -> None:
        self.handle, self.utf8 = handle, codecs.getincrementaldecoder("utf-8")()
        self.text, self.at, self.dropped, self.at_end = "", 0, 0, False

    def more(self) -> bool:
        """Read on; False once the file is exhausted."""
        if self.at_end:
            return False
        data = self.handle.read(MAX_ELEMENT_BYTES)
        self.at_end = not data
        self.dropped += self.at
        self.text, self.at = self.text[self.at:] + self.utf8.decode(data, final=self.at_end), 0
        return True

    def next_char(self) -> str:
        """Move past whitespace; the character there, or "" at the end of the file."""
        while True:
            self.at = _JSON_WHITESPACE.match(self.text, self.at).end()
            if self.at < len(self.text) or not self.more():
                return self.text[self.at:self.at + 1]


def _each_element(path: str, fault: str) -> Iterator[tuple[int, bytes]]:
    """`(number, text)` of each element, by `json.JSONDecoder.raw_decode` over a window of the file."""
    decoder, number = json.JSONDecoder(), 0
    with open(path, "rb") as handle:
        window = _Window(handle)

        def stop(reason: str) -> CurateError:
            return CurateError(f"{path}: not valid JSON in element {number + 1} ({reason}); the elements "
                               f"before it ({number}) were read (DuckDB: {fault})")

        try:
            window.more()
            window.at = int(window.text.startswith("\ufeff"))   # a byte-order mark
            if window.next_char() != "[":
                raise stop("expected [ at the start")
            window.at += 1
            if window.next_char() == "]":
                return
            while True:
                reason = "an element over 64 MB"
                try:
                    _, end = decoder.raw_decode(window.text, window.at)
                    cut = end == len(window.text) and not window.at_end   # a number at the window's edge may go on
                except json.JSONDecodeError as error:
                    cut, reason = True, f"{error.msg} character {window.dropped + error.pos}"
                except RecursionError:
                    raise stop("nested too deeply for Python's decoder") from None
                if cut:   # read on and try again, while the element may still fit
                    if len(window.text) - window.at < 2 * MAX_ELEMENT_BYTES and window.more():
                        continue
                    raise stop(reason)
                number += 1
                yield number, window.text[window.at:end].encode()
                window.at = end
                separator = window.next_char()
                if separator == "]":
                    return
                if separator != ",":
                    raise stop("expected , or ] after an element")
                window.at += 1
                window.next_char()
        except UnicodeDecodeError as error:
            raise stop(f"not UTF-8: {error.reason}") from error
