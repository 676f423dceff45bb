"""Labels already in the data: a field of the record, or the source a sample came from.

- `from_meta(pool, path)`: the value at a JSON path of `meta` (the record's unmapped fields): a
  string is one label, a list of strings is several. Any other type is a failure naming the field.
- `from_source(pool, part)`: one label per input the sample came from: the file's stem (for T0,
  whose files are named after their task template) or the `--source` name given at ingest.

(The mig-pool dialect stores InsTag tags as labels at ingest, origin `instag`: nothing to do here.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from curate.errors import CurateError
from curate.labels import Labelled

if TYPE_CHECKING:
    from curate.selectors.base import Pool  # (curate.selectors imports this package)


JSON_TYPES = {"OBJECT": "an object", "BOOLEAN": "a boolean", "BIGINT": "a number", "UBIGINT": "a number",
              "DOUBLE": "a number"}


def json_path(path: str) -> str:
    """`a.b` or `a.b[0]` or a JSONPath `$.a.b` -> the JSONPath DuckDB reads."""
    path = path.strip()
    if not path:
        raise CurateError("--path: empty; give a field of the record, e.g. category or annotation.source")
    return path if path.startswith("$") else f"$.{path}"


def from_meta(pool: Pool, path: str, origin: str = "field") -> Iterator[Labelled]:
    """Labels from the JSON value at `path` in each pool sample's `meta`; SQL does the work."""
    typed = ("WITH v AS (SELECT p.sample_id, json_extract(s.meta, ?) AS value FROM pool p JOIN samples s "
             "USING (sample_id)), t AS (SELECT sample_id, value, json_type(value) AS type, "
             "list_bool_and(list_transform(json_type(value, '$[*]'), lambda e: e = 'VARCHAR')) AS all_strings FROM v) ")
    labels = pool.fetch(
        typed + "SELECT sample_id, trim(label) AS label FROM ("
        " SELECT sample_id, unnest(CASE WHEN type = 'VARCHAR' THEN [json_extract_string(value, '$')]"
        "                              ELSE json_extract_string(value, '$[*]') END) AS label"
        " FROM t WHERE type = 'VARCHAR' OR (type = 'ARRAY' AND all_strings IS NOT FALSE))"
        " WHERE trim(label) <> '' ORDER BY sample_id, label", [json_path(path)])
    failures = pool.fetch(
        typed + "SELECT sample_id, type, CAST(value AS VARCHAR) AS raw FROM t "
        "WHERE type NOT IN ('VARCHAR', 'ARRAY', 'NULL') OR (type = 'ARRAY' AND all_strings = FALSE) "
        "ORDER BY sample_id", [json_path(path)])
    result = Labelled(origin=origin, covered=pool.ids,
                      sample_ids=labels["sample_id"].to_pylist(), labels=labels["label"].to_pylist(),
                      scores=[None] * labels.num_rows, details=[None] * labels.num_rows)
    for sample_id, kind, raw in zip(*(failures[c].to_pylist() for c in ("sample_id", "type", "raw"))):
        what = "a list with non-string items" if kind == "ARRAY" else JSON_TYPES.get(kind, kind.lower())
        result.fail(sample_id, f"meta field {path}: expected a string or a list of strings, got {what}", raw)
    yield result


# The file's name without its extension: `.../adversarial_qa_dbert_based_on.jsonl` -> the template.
FILE_STEM = r"regexp_replace(regexp_extract(rtrim(so.uri, '/'), '[^/]+$'), '\.[^.]*$', '')"


def from_source(pool: Pool, part: str = "file", origin: str = "source") -> Iterator[Labelled]:
    """One label per input each pool sample came from: the file stem (`file`) or the source name (`name`)."""
    if part not in ("file", "name"):
        raise CurateError(f"--source-part {part!r}: choose file or name")
    label = FILE_STEM if part == "file" else "so.name"
    labels = pool.fetch(f"SELECT DISTINCT ss.sample_id, {label} AS label FROM pool p JOIN sample_sources ss "
                        "USING (sample_id) JOIN sources so USING (source_id) ORDER BY 1, 2")
    n = labels.num_rows
    yield Labelled(origin=origin, covered=pool.ids, sample_ids=labels["sample_id"].to_pylist(),
                    labels=labels["label"].to_pylist(), scores=[None] * n, details=[None] * n)
