"""Readers: turn an input (file, folder, glob, saved or hub dataset) into bounded batches of rows.

A row is `(row_number, record, raw, error)`: the record parsed from the input, or `error` saying why
it could not be parsed, with `raw` (the original text) kept for quarantine. Readers never hold a
whole input in memory, except a `.json` file that is an object (`{"train": [...], ...}`): a top-level
array is streamed element by element (`curate.ingest.json_array`). JSON Lines and such arrays can
also be read unparsed (`raw_records`), for ingest's fast path.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from curate.errors import CurateError
from curate.hashing import sha256_of
from curate.ingest import json_array

BATCH_ROWS = 50_000          # rows per committed batch (two in memory at once: one mapped, one written)
BATCH_SAMPLE_BYTES = 128 << 20  # or fewer rows, once their samples hold this many bytes (long documents)
BATCH_BYTES = 16 << 20       # bytes of JSON Lines read at a time
FILE_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv",
                 ".txt": "text"}
# A folder's .txt files are more often notes than data: plain text is read only when named (or globbed).
FOLDER_SUFFIXES = {suffix for suffix in FILE_SUFFIXES if suffix != ".txt"}
CHATML_ROLLOUT_START = "<|im_start|>system"   # a decoded ChatML rollout begins with its system turn
HF_PREFIX = "hf://"


class Row(NamedTuple):
    row_number: int          # line number for jsonl; 1-based record index otherwise
    record: Any              # the parsed record, or None when error is set
    raw: str | None          # the original text when the reader has it (for quarantine)
    error: str | None        # why the row could not be parsed


@dataclass(frozen=True)
class Input:
    """One readable input: a file, a split of a saved dataset, or a hub dataset split."""

    uri: str                 # what the user sees and the sources table records
    format: str              # jsonl | json | parquet | csv | text | hf-disk | hf-hub
    path: str                # file or folder path; hub name for hf-hub
    split: str | None = None
    group: str = ""          # default source name: the stem of the argument it came from

    def sha256(self) -> str | None:
        """Hash of the input's bytes (all data files of a saved dataset); None for the hub."""
        if self.format == "hf-hub":
            return None
        try:
            return sha256_of(self.path)
        except OSError as error:
            raise cannot_read(self.uri, error) from error

    def size(self) -> int | None:
        return os.path.getsize(self.path) if os.path.isfile(self.path) else None


# -- expanding arguments into inputs -------------------------------------------------------------


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _saved_dataset_inputs(folder: Path, group: str) -> list[Input]:
    if (folder / "dataset_dict.json").is_file():
        splits = orjson.loads((folder / "dataset_dict.json").read_bytes())["splits"]
        return [Input(f"{folder}:{s}", "hf-disk", str(folder / s), s, group) for s in splits]
    return [Input(str(folder), "hf-disk", str(folder), None, group)]


def _file_input(path: Path, group: str) -> Input:
    fmt = FILE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise CurateError(f"{path}: unsupported file type {path.suffix!r}; "
                          f"expected one of {', '.join(sorted(FILE_SUFFIXES))}")
    return Input(str(path), fmt, str(path), None, group)


def expand(argument: str) -> list[Input]:
    """Inputs named by one command-line argument: a file, folder, glob, saved dataset or hf:// name."""
    if argument.startswith(HF_PREFIX):
        name, _, split = argument[len(HF_PREFIX):].partition(":")
        if name.count("/") != 1:
            raise CurateError(f"{argument}: expected hf://owner/name[:split]")
        return [Input(argument, "hf-hub", name, split or None, name.split("/")[1])]
    path = Path(argument)
    if path.is_dir():
        inputs = []
        for folder, subfolders, files in os.walk(path):
            folder = Path(folder)
            if _is_saved_dataset(folder):
                inputs += _saved_dataset_inputs(folder, path.name)
                subfolders.clear()     # its arrow files are read through the dataset
                continue
            subfolders.sort()
            inputs += [_file_input(folder / f, path.name) for f in sorted(files)
                       if Path(f).suffix.lower() in FOLDER_SUFFIXES]
        if not inputs:
            raise CurateError(f"{argument}: folder holds no {', '.join(sorted(FOLDER_SUFFIXES))} files "
                              "and no saved dataset")
        return inputs
    if path.is_file():
        return [_file_input(path, path.stem)]
    if glob.has_magic(argument):
        matches = sorted(Path(m) for m in glob.glob(argument, recursive=True) if os.path.isfile(m))
        if not matches:
            raise CurateError(f"{argument}: the pattern matches no files")
        group = Path(argument.split("*")[0]).name or Path(argument).parent.name
        return [_file_input(m, Path(group).stem or m.parent.name) for m in matches]
    raise CurateError(f"{argument}: no such file or folder")


# -- reading --------------------------------------------------------------------------------------


def _json_error(error: Exception) -> str:
    return f"invalid JSON: {str(error).splitlines()[0]}"


def parse_lines(lines) -> list[Row]:
    rows = []
    for line_number, line in lines:
        try:
            rows.append(Row(line_number, orjson.loads(line), None, None))
        except orjson.JSONDecodeError as error:
            rows.append(Row(line_number, None, line.decode("utf-8", "replace").rstrip("\r\n"), _json_error(error)))
    return rows


def _jsonl_blocks(path: str, skip_through: int) -> Iterator[tuple[int, list[bytes]]]:
    """The input's lines after line `skip_through`, in blocks of about BATCH_BYTES, each with the
    number of its first line."""
    line_number = skip_through
    with open(path, "rb") as handle:
        handle.seek(line_start(path, skip_through))
        while block := handle.read(BATCH_BYTES):
            lines = block_lines(block + handle.readline())   # end on a line boundary
            yield line_number + 1, lines
            line_number += len(lines)


def line_start(path: str, lines_before: int) -> int:
    """Byte offset at which the line after the first `lines_before` lines begins (the file's size
    if it has no more): where reading resumes after a watermark."""
    offset = 0
    with open(path, "rb") as handle:
        while lines_before and (block := handle.read(BATCH_BYTES)):
            newlines = block.count(b"\n")
            if newlines < lines_before:
                offset, lines_before = offset + len(block), lines_before - newlines
                continue
            end = -1
            for _ in range(lines_before):
                end = block.index(b"\n", end + 1)
            return offset + end + 1
    return offset


def cannot_read(uri: str, error: Exception) -> CurateError:
    """The error for an input that cannot be read at all."""
    return CurateError(f"{uri}: cannot read ({type(error).__name__}: {error})")


def block_lines(block: bytes) -> list[bytes]:
    """The lines of a block of whole lines (the last may lack its newline), blank ones included: its
    one pass, which also counts them."""
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    return lines


def numbered_lines(first: int, lines: list[bytes]) -> Iterator[tuple[int, bytes]]:
    """The non-blank `lines` of a block of JSON Lines, with their line numbers (the first is `first`)."""
    return ((n, line) for n, line in enumerate(lines, start=first) if line and not line.isspace())


def _read_jsonl(path: str, skip_through: int) -> Iterator[list[Row]]:
    for first, lines in _jsonl_blocks(path, skip_through):
        yield parse_lines(numbered_lines(first, lines))


def _records_of_document(document: Any, path: str) -> list:
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and document and all(isinstance(v, list) for v in document.values()):
        return [record for values in document.values() for record in values]   # {"train": [...], ...}
    if isinstance(document, dict):
        return [document]
    raise CurateError(f"{path}: expected a JSON array or object, got {type(document).__name__}")


def _is_json_array(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4096).lstrip()[:1] == b"["


def _read_json(path: str, skip_through: int, batch_rows: int) -> Iterator[list[Row]]:
    if _is_json_array(path):
        for elements in json_array.elements(path, skip_through, batch_rows):
            yield parse_lines(elements)
        return
    data = Path(path).read_bytes()
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        # Many `.json` files are JSON Lines in disguise.
        first = data.lstrip()[:1]
        if first == b"{" and b"\n" in data.strip():
            yield from _read_jsonl(path, skip_through)
            return
        raise CurateError(f"{path}: not valid JSON ({_json_error(error)})") from error
    records = _records_of_document(document, path)
    for start in range(skip_through, len(records), batch_rows):
        chunk = records[start:start + batch_rows]
        yield [Row(start + i + 1, record, None, None) for i, record in enumerate(chunk)]


def _read_arrow_batches(batches, skip_through: int) -> Iterator[list[Row]]:
    row_number = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if row_number + batch.num_rows <= skip_through:
            row_number += batch.num_rows
            continue
        records = batch.to_pylist()
        rows = [Row(row_number + i + 1, r, None, None) for i, r in enumerate(records)]
        row_number += batch.num_rows
        yield [row for row in rows if row.row_number > skip_through]


def _read_parquet(path: str, skip_through: int, batch_rows: int) -> Iterator[list[Row]]:
    import pyarrow.parquet as pq

    yield from _read_arrow_batches(pq.ParquetFile(path).iter_batches(batch_size=batch_rows), skip_through)


def _read_text(path: str, skip_through: int, batch_rows: int) -> Iterator[list[Row]]:
    """Decoded ChatML rollouts, one record `{"text": ...}` per block that starts at a line beginning
    with `<|im_start|>system` (text before the first such line, if any, is a record too; a file
    without one is one record). The row number is the line the block starts on."""
    rows: list[Row] = []
    start, block = 1, []

    def flush() -> None:
        text = "".join(block)
        if start > skip_through and text.strip():
            rows.append(Row(start, {"text": text}, None, None))

    with open(path, encoding="utf-8", newline="") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.startswith(CHATML_ROLLOUT_START) and block:
                flush()
                start, block = line_number, []
                if len(rows) >= batch_rows:
                    yield rows
                    rows = []
            block.append(line)
    flush()
    if rows:
        yield rows


def _read_csv(path: str, skip_through: int, batch_rows: int) -> Iterator[list[Row]]:
    import csv

    import pyarrow as pa
    import pyarrow.csv as pcsv

    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise CurateError(f"{path}: empty CSV file (no header row)")
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=1 << 24),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=False),
    )
    yield from _read_arrow_batches(_rebatch(reader, batch_rows), skip_through)


def _rebatch(batches, batch_rows: int):
    for batch in batches:
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


def _read_hf_disk(source: Input, skip_through: int, batch_rows: int) -> Iterator[list[Row]]:
    import datasets

    dataset = datasets.load_from_disk(source.path)
    yield from _read_arrow_batches(dataset.data.to_batches(max_chunksize=batch_rows), skip_through)


def _hub_unreachable_reason() -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None if it can (a 3 s probe)."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as error:
        return f"cannot connect to {host}: {error}"
    return None


def _read_hf_hub(source: Input, skip_through: int, batch_rows: int) -> Iterator[list[Row]]:
    import datasets

    advice = "Save it with `save_to_disk` where the hub is reachable and ingest that folder."
    if reason := _hub_unreachable_reason():
        raise CurateError(f"hf://{source.path}: the Hugging Face hub is not reachable ({reason}). {advice}")
    try:
        dataset = datasets.load_dataset(source.path, split=source.split or "train")
    except Exception as error:   # the hub client raises many types; all mean "could not load"
        detail = str(error).splitlines()[0] if str(error) else "no detail"
        raise CurateError(f"hf://{source.path}: could not load the dataset ({type(error).__name__}: {detail}). "
                          f"{advice}") from error
    yield from _read_arrow_batches(dataset.data.to_batches(max_chunksize=batch_rows), skip_through)


def peek(source: Input, rows: int = 100) -> Iterator[Row]:
    """The first rows of an input (up to `rows`), read lazily: detecting a dialect usually needs one."""
    if source.format == "jsonl":
        try:
            with open(source.path, "rb") as handle:
                numbered = ((n, line) for n, line in enumerate(handle, start=1) if line.strip())
                for pair in itertools.islice(numbered, rows):
                    yield from parse_lines([pair])
        except OSError as error:
            raise cannot_read(source.uri, error) from error
        return
    yield from next(read(source, batch_rows=rows), [])[:rows]


def raw_records_of(source: Input) -> bool:
    """Whether `raw_records` can read the input: JSON Lines, or a `.json` file that is one array."""
    try:
        return source.format == "jsonl" or source.format == "json" and _is_json_array(source.path)
    except OSError:
        return False   # `read` reports it


def raw_records(source: Input, skip_through: int = 0) -> Iterator[tuple[Iterable[tuple[int, bytes]], int]]:
    """The input's records unparsed, for the fast path (`curate.ingest.flat`), starting after row
    `skip_through`: chunks of `(row number, JSON text)`, each with the last row number it covers
    (a blank line has a number but no record)."""
    try:
        if source.format == "jsonl":
            for first, lines in _jsonl_blocks(source.path, skip_through):
                yield numbered_lines(first, lines), first + len(lines) - 1
        else:
            for elements in json_array.elements(source.path, skip_through, BATCH_ROWS):
                if elements:
                    yield elements, elements[-1][0]
    except OSError as error:
        raise cannot_read(source.uri, error) from error


def read(source: Input, skip_through: int = 0, batch_rows: int = BATCH_ROWS) -> Iterator[list[Row]]:
    """Batches of rows of an input, starting after row `skip_through` (for resuming)."""
    try:
        if source.format == "jsonl":
            yield from _read_jsonl(source.path, skip_through)
        elif source.format == "json":
            yield from _read_json(source.path, skip_through, batch_rows)
        elif source.format == "parquet":
            yield from _read_parquet(source.path, skip_through, batch_rows)
        elif source.format == "csv":
            yield from _read_csv(source.path, skip_through, batch_rows)
        elif source.format == "text":
            yield from _read_text(source.path, skip_through, batch_rows)
        elif source.format == "hf-disk":
            yield from _read_hf_disk(source, skip_through, batch_rows)
        elif source.format == "hf-hub":
            yield from _read_hf_hub(source, skip_through, batch_rows)
        else:
            raise CurateError(f"{source.uri}: unknown input format {source.format}")
    except CurateError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise cannot_read(source.uri, error) from error
