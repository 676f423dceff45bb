"""The function library in the store (`synth_functions`, `synth_function_uses`): read, add, install.

A `LibraryFunction` is one typed pure function: its source, parameters (kind and range of realistic
inputs), return kind, sentence template, topic and where it came from. Functions are keyed by a hash
of their source, so adding the same function twice is a no-op; `merged_into` points a function at the
library member it duplicates (see merge.py).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from curate.store import Store
from curate.store.tables import insert_missing
from curate.synth import pyast, starter
from curate.synth.canonical import canonical_hash

KINDS = ("int", "num", "any")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str = "any"           # int | num | any
    lo: float | None = None     # range of realistic inputs (None: unknown)
    hi: float | None = None
    step: float | None = None


@dataclass
class LibraryFunction:
    name: str
    code: str
    params: list[Param]
    returns: str = "any"
    doc: str | None = None
    template: str | None = None
    topic: str | None = None
    topic_origin: str | None = None
    origin: str = "llm"
    model: str | None = None
    merged_into: str | None = None
    function_id: str = field(default="")
    canonical_hash: str = field(default="")

    def __post_init__(self):
        self.function_id = self.function_id or function_id(self.code)
        self.canonical_hash = self.canonical_hash or canonical_hash(self.code)

    def row(self, run_id: str | None) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "params"}
        data["params"] = orjson.dumps([asdict(p) for p in self.params]).decode()
        data["run_id"] = run_id
        return data

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LibraryFunction:
        params = row["params"]
        params = orjson.loads(params) if isinstance(params, str) else params
        fields = {k: row[k] for k in ("name", "code", "returns", "doc", "template", "topic", "topic_origin",
                                      "origin", "model", "merged_into", "function_id", "canonical_hash")}
        return cls(params=[Param(**p) for p in params], **fields)


def function_id(code: str) -> str:
    return "fn-" + hashlib.sha256(code.strip().encode()).hexdigest()[:16]


# -- the starter library --------------------------------------------------------------------------


def _source_without_decorators(function) -> str:
    source = textwrap.dedent(inspect.getsource(function))
    node = next(n for n in pyast.parse(source).body if isinstance(n, ast.FunctionDef))
    return "\n".join(source.splitlines()[node.lineno - 1:node.end_lineno]) + "\n"


def starter_functions() -> list[LibraryFunction]:
    found = []
    for name, spec in starter.STARTER.items():
        params = [Param(p, s.kind, s.lo, s.hi, s.step) for p, s in spec.params.items()]
        found.append(LibraryFunction(
            name=name, code=_source_without_decorators(spec.function), params=params, returns=spec.returns,
            doc=inspect.getdoc(spec.function), template=spec.template, topic=spec.topic, topic_origin="starter",
            origin="starter"))
    return found


def starter_uses() -> list[tuple[str, str]]:
    """(function name, 'starter:<example>') for every function each worked example calls."""
    uses = []
    for example, code in starter.EXAMPLES.items():
        called = {node.func.id for node in ast.walk(pyast.parse(code))
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        uses += [(name, f"starter:{example}") for name in sorted(called & starter.STARTER.keys())]
    return uses


# -- store I/O ------------------------------------------------------------------------------------


def add_functions(store: Store, functions: list[LibraryFunction], uses: list[tuple[str, str]],
                  run_id: str | None) -> int:
    """Insert functions not yet in the library and their uses (function_id, seed); returns how many were new."""
    added = 0
    with store.transaction() as con:
        if functions:
            con.register("new_functions", pa.Table.from_pylist([f.row(run_id) for f in functions]))
            con.execute("CREATE OR REPLACE TEMP VIEW new_function_rows AS "
                        "SELECT *, current_timestamp AS created_at FROM new_functions")
            added = insert_missing(con, "synth_functions", "new_function_rows", ["function_id"])
            con.unregister("new_functions")
        if uses:
            con.register("new_uses", pa.table({"function_id": [u[0] for u in uses], "seed": [u[1] for u in uses],
                                               "run_id": [run_id] * len(uses)}))
            insert_missing(con, "synth_function_uses", "new_uses", ["function_id", "seed"])
            con.unregister("new_uses")
    return added


def install_starter(store: Store, run_id: str | None = None) -> int:
    """Add the starter library and its examples' co-occurrences; returns how many functions were new."""
    functions = starter_functions()
    ids = {f.name: f.function_id for f in functions}
    uses = [(ids[name], seed) for name, seed in starter_uses()]
    return add_functions(store, functions, uses, run_id)


def load_functions(store: Store, *, origin: str | None = None, members_only: bool = True) -> list[LibraryFunction]:
    """Library functions, starter ones first, then in insertion order; `members_only` leaves out merged ones."""
    where = ["TRUE"]
    params: list[Any] = []
    if members_only:
        where.append("merged_into IS NULL")
    if origin and origin != "all":
        where.append("origin = ?")
        params.append(origin)
    with store.connect() as con:
        cursor = con.execute(f"SELECT * FROM synth_functions WHERE {' AND '.join(where)} "
                             "ORDER BY origin <> 'starter', created_at, function_id", params)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    return [LibraryFunction.from_row(dict(zip(columns, row))) for row in rows]


def load_uses(store: Store) -> dict[str, set[str]]:
    """seed -> the library members it used (merged functions counted as their member)."""
    with store.connect() as con:
        rows = con.execute("""
            SELECT u.seed, coalesce(f.merged_into, f.function_id) AS member
            FROM synth_function_uses u JOIN synth_functions f USING (function_id)""").fetchall()
    seeds: dict[str, set[str]] = {}
    for seed, member in rows:
        seeds.setdefault(seed, set()).add(member)
    return seeds
