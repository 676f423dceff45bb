"""`synth library --from-source`: grow the library from seed problems with an LLM.

For each seed (a sample with a gold answer, ingested with the gsm8k or math dialect) the LLM rewrites
the reference solution as Python: one small pure function per mathematical operation (typed
parameters, a one-line docstring, only `math`/`fractions`) and a `solution()` calling them with the
problem's numbers. The program runs in the sandbox; the seed is kept only if its result equals the
gold answer. A kept seed's functions enter the library when each is typed, documented and
self-contained; their parameter ranges come from the values the seed's trace passed them, their
topic from keywords or (`--tag-topics`) the LLM, and the seed's functions co-occur. Every seed gets a
`synth_seeds` row: kept, or dropped with the reason.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import orjson
import pyarrow as pa

from curate.answers import answers_match
from curate.errors import CurateError
from curate.models.llm import ChatRequest, LLMBackend
from curate.store import Store
from curate.store.runs import start_run
from curate.store.tables import insert_missing
from curate.synth import pyast, topics
from curate.synth.compose import code_block
from curate.synth.library import LibraryFunction, Param, add_functions, install_starter
from curate.synth.merge import merge_equivalent, merge_identical
from curate.synth.sandbox import ExecResult, PolicyError, SandboxPool, TraceStep, default_pool, parse_checked
from curate.synth.sandbox.policy import SAFE_BUILTINS
from curate.synth.values import Answer, answer_of

DECOMPOSE_PROMPT = """Rewrite the reference solution of this math problem as Python.

Problem: {problem}

Reference solution: {solution}

Write one small pure function for each mathematical operation the solution uses, with typed \
parameters, a one-line docstring, and no imports other than `math` and `fractions`. Then write \
`solution()`, with no parameters, that calls those functions with the problem's numbers and returns \
the final answer. Reply with a single ```python code block."""

EXAMPLE_PROBLEM = "A shirt costs $20 and is sold at 25% off. How much does it cost after the discount?"
EXAMPLE_SOLUTION = "The discount is 20 * 25 / 100 = 5 dollars, so the shirt costs 20 - 5 = 15 dollars.\n#### 15"
EXAMPLE_CODE = '''```python
def percent_of(percent: float, whole: float) -> float:
    """A percentage of a quantity."""
    return percent * whole / 100


def subtract(a: float, b: float) -> float:
    """Difference of two numbers."""
    return a - b


def solution():
    discount = percent_of(25, 20)
    return subtract(20, discount)
```'''

_CALCULATOR = re.compile(r"<<[^<>]*>>")
_NUM_TYPES = {"float", "Fraction", "fractions.Fraction", "Decimal", "complex"}
# Names a library function may use without binding them: the program header's imports and the builtins.
_AMBIENT = {"math", "Fraction", "print", "pow"} | set(SAFE_BUILTINS)


@dataclass
class Seed:
    sample_id: str
    problem: str
    solution: str
    gold: str


@dataclass
class SeedOutcome:
    seed: Seed
    status: str = "dropped"
    reason: str | None = None
    error: str | None = None
    response: str | None = None
    code: str | None = None
    executed: str | None = None
    functions: list[LibraryFunction] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def drop(self, reason: str, error: str | None = None) -> None:
        self.status, self.reason, self.error = "dropped", reason, error


def decompose_request(seed: Seed, *, max_tokens: int, seed_value: int = 0) -> ChatRequest:
    def turn(problem: str, solution: str) -> dict[str, str]:
        return {"role": "user", "content": DECOMPOSE_PROMPT.format(problem=problem, solution=solution)}

    return ChatRequest(messages=(turn(EXAMPLE_PROBLEM, EXAMPLE_SOLUTION), {"role": "assistant", "content": EXAMPLE_CODE},
                                 turn(seed.problem, _CALCULATOR.sub("", seed.solution))),
                       max_tokens=max_tokens, temperature=0.0, seed=seed_value)


def load_seeds(store: Store, source: str, limit: int | None) -> list[Seed]:
    with store.connect() as con:
        rows = con.execute("""
            SELECT s.sample_id, s.prompt, s.response, s.gold_answer, min(ss.row_number) AS first_row
            FROM samples s JOIN sample_sources ss USING (sample_id) JOIN sources src USING (source_id)
            WHERE src.name = ? AND s.gold_answer IS NOT NULL
            GROUP BY ALL ORDER BY first_row, s.sample_id""" + (f" LIMIT {int(limit)}" if limit else ""),
                           [source]).fetchall()
        if not rows:
            names = [r[0] for r in con.execute("SELECT DISTINCT name FROM sources ORDER BY 1").fetchall()]
            raise CurateError(f"source {source!r} has no samples with a gold answer (ingest seeds with "
                              f"--dialect gsm8k or math); sources in the store: {', '.join(names) or 'none'}")
    return [Seed(r[0], r[1], r[2], r[3]) for r in rows]


# -- from a program to library functions -------------------------------------------------------------


def _kind(annotation: ast.expr | None) -> str:
    if annotation is None:
        return "any"
    name = ast.unparse(annotation)
    return "int" if name == "int" else "num" if name in _NUM_TYPES else "any"


def _observed_kind(values: list) -> str:
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if values and all(isinstance(v, (int, float, Fraction)) and not isinstance(v, bool) for v in values):
        return "num"
    return "any"


def _range(kind: str, values: list) -> tuple[float | None, float | None, float | None]:
    """A range of realistic inputs around the values the seed used: half the smallest to twice the largest."""
    numbers = [float(v) for v in values if isinstance(v, (int, float, Fraction)) and not isinstance(v, bool)]
    if kind not in ("int", "num") or not numbers or not all(math.isfinite(v) for v in numbers):
        return None, None, None
    lo, hi = min(numbers), max(numbers)
    lo = lo / 2 if lo > 0 else lo * 2
    hi = hi * 2 if hi > 0 else hi / 2
    if lo == hi == 0:
        hi = 10
    if kind == "int":
        return math.floor(lo), math.ceil(hi), 1
    smallest = min((abs(v) for v in numbers if v), default=1.0)
    step = min(1.0, 10 ** math.floor(math.log10(smallest)))
    return round(lo, 6), round(hi, 6), step


def _free_names(function: ast.FunctionDef) -> set[str]:
    """Names the function reads but neither receives nor binds (itself excluded)."""
    bound = {a.arg for a in ast.walk(function) if isinstance(a, ast.arg)} | {function.name}
    bound |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {h.name for h in ast.walk(function) if isinstance(h, ast.ExceptHandler) and h.name}
    return {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound


def library_functions(code: str, trace: list[TraceStep], origin_model: str) -> tuple[list[LibraryFunction], dict]:
    """The program's admissible functions (typed, documented, self-contained) and a note per function."""
    tree = pyast.parse(code)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    calls: dict[str, list[TraceStep]] = {}
    for step in trace:
        calls.setdefault(step.function, []).append(step)
    kept, notes = [], {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name == "solution":
            continue
        params = node.args.posonlyargs + node.args.args
        doc = ast.get_docstring(node)
        called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        free = _free_names(node) - _AMBIENT
        if node.args.vararg or node.args.kwarg or node.args.kwonlyargs:
            notes[node.name] = "variadic or keyword-only parameters"
        elif not params or any(p.annotation is None for p in params):
            notes[node.name] = "untyped parameters" if params else "no parameters"
        elif not doc:
            notes[node.name] = "no docstring"
        elif called & (defined - {node.name}):
            notes[node.name] = f"calls {', '.join(sorted(called & defined))}: not self-contained"
        elif free - defined:
            notes[node.name] = f"uses {', '.join(sorted(free - defined))} from outside: not self-contained"
        else:
            uses = calls.get(node.name, [])
            typed_params = []
            for i, p in enumerate(params):
                observed = [dict(step.args).get(p.arg) for step in uses]
                observed = [v for v in observed if v is not None]
                kind = _kind(p.annotation)
                kind = kind if kind != "any" else _observed_kind(observed)
                lo, hi, step = _range(kind, observed)
                typed_params.append(Param(p.arg, kind, lo, hi, step))
            returns = _kind(node.returns)
            if returns == "any":
                returns = _observed_kind([s.result for s in uses if s.raised is None])
            source = ast.get_source_segment(code, node) + "\n"
            kept.append(LibraryFunction(
                name=node.name, code=source, params=typed_params, returns=returns, doc=doc.strip().splitlines()[0],
                topic=topics.keyword_topic(node.name, doc), topic_origin="keywords", origin="llm",
                model=origin_model))
            notes[node.name] = "kept" if uses else "kept (not called: no input ranges)"
    return kept, notes


def matches_gold(answer: Answer, gold: str) -> bool:
    """The answer's text (a gold like "33.33") or, for a float, its full value (a gold like "1/3")."""
    return answers_match(answer.text, gold) or (isinstance(answer.value, float) and answers_match(repr(answer.value), gold))


# -- the builder ----------------------------------------------------------------------------------


@dataclass
class LibraryReport:
    run_id: str
    seeds: int
    kept: int
    dropped: Counter
    functions_added: int
    merges: int


class LibraryBuilder:
    """Build library functions from the seeds of one source with `backend`.

    limit: seeds to use (first rows of the source). tag_topics: ask the LLM for each new function's
    topic (else keywords). behavioural: also merge functions that behave alike on random inputs.
    """

    def __init__(self, backend: LLMBackend, *, limit: int | None = None, max_tokens: int = 768,
                 timeout: float = 5.0, tag_topics: bool = False, behavioural: bool = False, seed: int = 0):
        self.backend = backend
        self.limit = limit
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.tag_topics = tag_topics
        self.behavioural = behavioural
        self.seed = seed

    def params(self, source: str) -> dict[str, Any]:
        return {"source": source, "backend": f"{self.backend.name}:{self.backend.model}", "limit": self.limit,
                "max_tokens": self.max_tokens, "timeout": self.timeout, "tag_topics": self.tag_topics,
                "behavioural": self.behavioural, "seed": self.seed}

    def run(self, store: Store, source: str, *, pool: SandboxPool | None = None) -> LibraryReport:
        pool = pool or default_pool()
        seeds = load_seeds(store, source, self.limit)
        with start_run(store, "synth:library", self.params(source)) as run:
            install_starter(store, run.run_id)
            outcomes = self._decompose(seeds)
            self._execute(outcomes, pool)
            if self.tag_topics:
                self._tag([f for o in outcomes if o.status == "kept" for f in o.functions])
            functions = [f for o in outcomes if o.status == "kept" for f in o.functions]
            uses = [(f.function_id, o.seed.sample_id) for o in outcomes if o.status == "kept" for f in o.functions]
            added = add_functions(store, functions, uses, run.run_id)
            self._record(store, outcomes, run.run_id)
            merges = merge_identical(store, run.run_id)
            if self.behavioural:
                merges += merge_equivalent(store, run.run_id, pool=pool, seed=self.seed)
            dropped = Counter(o.reason for o in outcomes if o.status == "dropped")
            kept = sum(o.status == "kept" for o in outcomes)
            run.counts.update({"seeds": len(seeds), "kept": kept, "dropped": dict(dropped),
                               "functions_added": added, "merges": len(merges)})
        return LibraryReport(run.run_id, len(seeds), kept, dropped, added, len(merges))

    def _decompose(self, seeds: list[Seed]) -> list[SeedOutcome]:
        requests = [decompose_request(s, max_tokens=self.max_tokens, seed_value=self.seed) for s in seeds]
        outcomes = []
        for seed, response in zip(seeds, self.backend.generate(requests)):
            outcome = SeedOutcome(seed)
            outcomes.append(outcome)
            if not response.ok:
                outcome.drop("llm_error", response.error)
                continue
            outcome.response = response.text
            outcome.code = code_block(response.text)
            if outcome.code is None:
                outcome.drop("no_code", "the reply has no code block")
                continue
            try:
                tree = parse_checked(outcome.code)
            except PolicyError as error:
                outcome.drop("forbidden" if "syntax" not in error.reason else "invalid_code", str(error))
                continue
            names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
            if "solution" not in names:
                outcome.drop("no_solution", "no solution() defined")
            elif len(names) < 2:
                outcome.drop("no_functions", "no function besides solution()")
        return outcomes

    def _execute(self, outcomes: list[SeedOutcome], pool: SandboxPool) -> None:
        todo = [o for o in outcomes if o.reason is None]
        results: list[ExecResult] = pool.map([o.code for o in todo], timeout=self.timeout)
        model = f"{self.backend.name}:{self.backend.model}"
        for outcome, result in zip(todo, results):
            outcome.details["trace"] = [s.to_dict() for s in result.trace]
            if not result.ok:
                outcome.drop("timeout" if result.kind in ("timeout", "cpu_time") else
                             "forbidden" if result.kind == "forbidden" else "exception", result.error)
                continue
            answer = answer_of(result.value)
            if isinstance(answer, str):
                outcome.drop(answer, f"solution() returned {result.value!r}"[:300])
                continue
            outcome.executed = answer.text
            if not matches_gold(answer, outcome.seed.gold):
                outcome.drop("answer_mismatch", f"executed {answer.text}, gold {outcome.seed.gold}")
                continue
            functions, notes = library_functions(outcome.code, result.trace, model)
            outcome.details["functions"] = notes
            if not functions:
                outcome.drop("no_functions", "no function is typed, documented and self-contained: "
                             + "; ".join(f"{k}: {v}" for k, v in notes.items()))
                continue
            outcome.status, outcome.functions = "kept", functions

    def _tag(self, functions: list[LibraryFunction]) -> None:
        label = f"llm:{self.backend.name}:{self.backend.model}"
        responses = self.backend.generate([topics.topic_request(f.code, seed=self.seed) for f in functions])
        for function, response in zip(functions, responses):
            topic = topics.parse_topic(response.text) if response.ok else None
            function.topic = topic
            function.topic_origin = label if topic else (
                f"failed: {response.error}" if not response.ok else f"failed: no topic in reply {response.text[:80]!r}")

    @staticmethod
    def _record(store: Store, outcomes: list[SeedOutcome], run_id: str) -> None:
        rows = [{"run_id": run_id, "sample_id": o.seed.sample_id, "status": o.status, "reason": o.reason,
                 "error": o.error, "gold_answer": o.seed.gold, "executed_answer": o.executed,
                 "response": o.response, "code": o.code,
                 "functions": orjson.dumps([f.function_id for f in o.functions]).decode(),
                 "details": orjson.dumps(o.details).decode()} for o in outcomes]
        if not rows:
            return
        with store.transaction() as con:
            con.register("new_seeds", pa.Table.from_pylist(rows))
            con.execute("CREATE OR REPLACE TEMP VIEW new_seed_rows AS "
                        "SELECT *, current_timestamp AS created_at FROM new_seeds")
            insert_missing(con, "synth_seeds", "new_seed_rows", ["run_id", "sample_id"])
            con.unregister("new_seeds")
