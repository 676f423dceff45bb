"""`synth generate`: sample functions, compose a graph, execute it, back-translate, verify, store.

Each attempt goes through the stages in order and either survives all of them (kept: a row in
`synth_problems` and a `synthetic` sample) or stops at one with a reason (rejected: a row with the
stage, the reason and the error). Attempts are processed in batches so that the sandbox runs a
batch's programs on all its workers at once and an LLM backend gets a batch's requests in one call;
a batch is one transaction. Attempt i draws from its own random stream (`seed`, i), so a run is
reproducible whatever the batch size.

Rejection reasons, by stage:
  sample        too_few_functions
  compose       untyped, uncomposable (typed); llm_error, no_code, invalid_code, no_solution,
                missing_functions, not_composed (LLM)
  execute       invalid_code (refused by the sandbox), exception, timeout, memory, crashed,
                none, complex, non_finite, huge, non_numeric
  backtranslate llm_error, empty_problem, mentions_code, not_one_question, missing_inputs, answer_leaked
  verify        llm_error, unverified
  store         duplicate (the same problem and solution already exist)
"""

from __future__ import annotations

import ast
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from curate.errors import CurateError
from curate.formats.base import Sample
from curate.ingest.writer import MappedBatch, commit
from curate.models.llm import LLMBackend
from curate.store import Store
from curate.store.runs import start_run
from curate.store.tables import insert_missing
from curate.synth import backtranslate, pyast, verify
from curate.synth.compose import (
    Composition,
    TypedComposer,
    aliases,
    build_program,
    compose_request,
    parse_solution,
)
from curate.synth.graph import load_graph
from curate.synth.library import LibraryFunction, install_starter, load_functions
from curate.synth.sampling import STRATEGIES, Sampler
from curate.synth.sandbox import ExecResult, SandboxPool, default_pool, to_json
from curate.synth.values import Answer, answer_of

EXEC_REASONS = {"forbidden": "invalid_code", "timeout": "timeout", "cpu_time": "timeout", "memory": "memory",
                "recursion": "exception", "exception": "exception", "crashed": "crashed", "protocol": "crashed"}


@dataclass
class Attempt:
    number: int
    k: int
    seed: int
    functions: list[LibraryFunction] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)
    composition: Composition | None = None
    code: str | None = None
    constants: list = field(default_factory=list)
    result: ExecResult | None = None
    answer: Answer | None = None
    problem: str | None = None
    solution: str | None = None
    verification: dict[str, Any] | None = None
    solve_rate: float | None = None
    responses: dict[str, str] = field(default_factory=dict)
    stage: str = "sample"
    reason: str | None = None
    error: str | None = None
    sample: Sample | None = None

    @property
    def alive(self) -> bool:
        return self.reason is None

    def reject(self, reason: str, error: str | None = None) -> None:
        self.reason, self.error = reason, error

    def row(self, run_id: str, strategy: str) -> dict[str, Any]:
        dumps = lambda value: orjson.dumps(value).decode() if value is not None else None
        trace = [s.to_dict() for s in self.result.trace] if self.result else None
        return {
            "problem_id": f"{run_id}:{self.number}", "run_id": run_id, "attempt": self.number,
            "status": "kept" if self.alive else "rejected", "stage": self.stage, "reason": self.reason,
            "error": self.error, "strategy": strategy, "k": self.k,
            "functions": dumps([f.function_id for f in self.functions]), "sampling": dumps(self.sampling),
            "code": self.code, "trace": dumps(trace), "answer": self.answer.text if self.answer else None,
            "problem": self.problem, "solution": self.solution, "verification": dumps(self.verification),
            "responses": dumps(self.responses or None), "solve_rate": self.solve_rate,
            "sample_id": self.sample.sample_id if self.sample and self.alive else None,
        }


@dataclass
class SynthReport:
    run_id: str
    kept: int
    attempts: int
    rejected: Counter
    seconds: float

    @property
    def problems_per_second(self) -> float:
        return self.kept / self.seconds if self.seconds else 0.0


def _solution_constants(solution_source: str) -> list:
    return [n.value for n in ast.walk(pyast.parse(solution_source))
            if isinstance(n, ast.Constant) and type(n.value) in (int, float)]


class Synthesiser:
    """Synthesise `n` verified problems from the library in the store.

    k: (min, max) functions per problem, drawn uniformly per attempt. backend: an LLM (compose,
    back-translate, verify with it) or None (typed composer, templates, trace solutions). compose:
    `llm` or `typed` (default: llm with a backend); typed composition with an LLM backend still
    back-translates and verifies with the LLM.
    verify_samples: chains sampled per problem to verify it (LLM). max_attempts: stop after this
    many attempts even if fewer than n were kept (default 20 n + 50). max_abs: answers larger in
    magnitude are rejected as huge. source: the `sources` name the samples are credited to.
    """

    def __init__(self, n: int, *, k: tuple[int, int] = (2, 4), strategy: str = "cooccurrence",
                 backend: LLMBackend | None = None, seed: int = 0, verify_samples: int = 4, origin: str = "all",
                 max_attempts: int | None = None, batch_size: int = 64, timeout: float = 5.0,
                 max_abs: float = 1e9, source: str = "rvsyn", max_tokens: int = 512, compose: str | None = None):
        if strategy not in STRATEGIES:
            raise CurateError(f"--strategy {strategy!r}: choose from {', '.join(STRATEGIES)}")
        if not 1 <= k[0] <= k[1] <= 4:
            raise CurateError(f"--k {k[0]}..{k[1]}: k must be between 1 and 4")
        if n < 1 or verify_samples < 1:
            raise CurateError("--n and --verify-samples must be at least 1")
        compose = compose or ("llm" if backend is not None else "typed")
        if compose not in ("llm", "typed") or (compose == "llm" and backend is None):
            raise CurateError(f"--compose {compose!r}: choose typed, or llm with an LLM backend")
        self.n = n
        self.k = k
        self.strategy = strategy
        self.backend = backend
        self.seed = seed
        self.verify_samples = verify_samples
        self.origin = origin
        self.max_attempts = max_attempts or 20 * n + 50
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_abs = max_abs
        self.source = source
        self.max_tokens = max_tokens
        self.compose = compose

    def params(self) -> dict[str, Any]:
        return {"n": self.n, "k": list(self.k), "strategy": self.strategy, "seed": self.seed,
                "backend": f"{self.backend.name}:{self.backend.model}" if self.backend else None,
                "verify_samples": self.verify_samples if self.backend else None, "origin": self.origin,
                "max_attempts": self.max_attempts, "timeout": self.timeout, "max_abs": self.max_abs,
                "source": self.source, "max_tokens": self.max_tokens if self.backend else None,
                "compose": self.compose}

    # -- the run --

    def run(self, store: Store, *, pool: SandboxPool | None = None,
            log=lambda message: None) -> SynthReport:
        pool = pool or default_pool()
        if not load_functions(store, members_only=False) and self.origin in ("all", "starter"):
            log(f"the library is empty: installed {install_starter(store)} starter functions")
        graph = load_graph(store, origin=self.origin)
        if graph.number_of_nodes() < self.k[0]:
            raise CurateError(f"the library ({self.origin}) has {graph.number_of_nodes()} functions; "
                              f"--k needs at least {self.k[0]} (see `curate synth library --stats`)")
        sampler = Sampler(graph)
        started = time.perf_counter()
        rejected: Counter = Counter()
        kept = attempts = 0
        seen: set[str] = set()
        # Without an LLM, hold one connection across the batches; with one, let go of the file while
        # the model works (minutes), so `curate sql` can read the store meanwhile.
        session = store.session() if self.backend is None else contextlib.nullcontext()
        with session, start_run(store, "synth:generate", self.params()) as run:
            source_id = self._open_source(store, run.run_id)
            while kept < self.n and attempts < self.max_attempts:
                size = min(self.batch_size, self.max_attempts - attempts, max(8, 2 * (self.n - kept)))
                batch = [self._sample(attempts + i + 1, sampler) for i in range(size)]
                self._compose(batch)
                self._execute(batch, pool)
                self._backtranslate(batch)
                self._verify(batch)
                self._dedupe(batch, store, seen, run.run_id)
                batch = self._trim(batch, self.n - kept)
                self._write(store, batch, run.run_id, source_id)
                attempts += len(batch)
                kept += sum(a.alive for a in batch)
                rejected.update(a.reason for a in batch if not a.alive)
                log(f"{attempts} attempts, {kept} kept")
            final = MappedBatch()
            final.completed.append(source_id)
            with store.transaction() as con:
                commit(con, final)
            run.counts.update({"kept": kept, "attempts": attempts, "rejected": dict(rejected)})
        return SynthReport(run.run_id, kept, attempts, rejected, time.perf_counter() - started)

    def _open_source(self, store: Store, run_id: str) -> str:
        with store.transaction() as con:
            con.execute("INSERT INTO sources (source_id, name, uri, dialect, status, started_at) "
                        "VALUES (?, ?, ?, 'rvsyn', 'partial', current_timestamp)",
                        [run_id, self.source, f"rvsyn://{run_id}"])
        return run_id

    # -- stages --

    def _sample(self, number: int, sampler: Sampler) -> Attempt:
        rng = random.Random(f"{self.seed}:{number}")
        k = rng.randint(*self.k)
        attempt = Attempt(number=number, k=k, seed=rng.randrange(2**31))
        if k > len(sampler.nodes):
            attempt.reject("too_few_functions", f"the library has {len(sampler.nodes)} functions, k = {k}")
            return attempt
        sampled = sampler.sample(k, self.strategy, rng)
        attempt.functions = [sampler.graph.nodes[i]["function"] for i in sampled.ids]
        attempt.names = aliases(attempt.functions)
        attempt.sampling = sampled.details
        attempt.stage = "compose"
        return attempt

    def _compose(self, batch: list[Attempt]) -> None:
        alive = [a for a in batch if a.alive]
        if self.compose == "typed":
            for attempt in alive:
                composed = TypedComposer().compose(attempt.functions, random.Random(attempt.seed))
                if isinstance(composed, str):
                    attempt.reject(composed, "no type-compatible wiring of these functions"
                                   if composed == "uncomposable" else "a function lacks parameter kinds or ranges")
                    continue
                attempt.composition = composed
                attempt.functions = [s.function for s in composed.steps]
                attempt.names = [s.alias for s in composed.steps]
                attempt.code, attempt.constants = composed.program(), composed.constants()
            return
        requests = [compose_request(list(zip(a.functions, a.names)), max_tokens=self.max_tokens, seed=a.seed)
                    for a in alive]
        for attempt, response in self._ask(alive, requests, "compose"):
            solution, reason, error = parse_solution(response.text, attempt.names)
            if solution is None:
                attempt.reject(reason, error)
                continue
            attempt.code = build_program(list(zip(attempt.functions, attempt.names)), solution)
            attempt.constants = _solution_constants(solution)

    def _ask(self, attempts: list[Attempt], requests: list, stage: str | None = None):
        """(attempt, reply) for each request the LLM answered; an attempt whose request failed is rejected."""
        for attempt, response in zip(attempts, self.backend.generate(requests)):
            if not response.ok:
                attempt.reject("llm_error", response.error)
                continue
            if stage:
                attempt.responses[stage] = response.text
            yield attempt, response

    def _execute(self, batch: list[Attempt], pool: SandboxPool) -> None:
        alive = [a for a in batch if a.alive]
        for attempt in alive:
            attempt.stage = "execute"
        for attempt, result in zip(alive, pool.map([a.code for a in alive], timeout=self.timeout)):
            attempt.result = result
            if not result.ok:
                attempt.reject(EXEC_REASONS.get(result.kind or "", "exception"), result.error)
                continue
            answer = answer_of(result.value, max_abs=self.max_abs)
            if isinstance(answer, str):
                attempt.reject(answer, f"solution() returned {str(to_json(result.value))[:200]}")
                continue
            attempt.answer = answer
            attempt.stage = "backtranslate"

    def _backtranslate(self, batch: list[Attempt]) -> None:
        alive = [a for a in batch if a.alive]
        if self.backend is None:
            for attempt in alive:
                attempt.problem = backtranslate.template_problem(attempt.composition, attempt.answer)
                attempt.stage = "verify"
            return
        requests = [backtranslate.backtranslate_request(a.code, a.constants, a.answer.rounded,
                                                        max_tokens=self.max_tokens, seed=a.seed + 1) for a in alive]
        for attempt, response in self._ask(alive, requests, "backtranslate"):
            problem, reason, error = backtranslate.check_problem(response.text, attempt.constants, attempt.answer,
                                                                 attempt.names)
            if problem is None:
                attempt.reject(reason, error)
                continue
            attempt.problem = problem
            attempt.stage = "verify"

    def _verify(self, batch: list[Attempt]) -> None:
        alive = [a for a in batch if a.alive]
        if self.backend is None:
            for attempt in alive:
                attempt.solution = backtranslate.trace_solution(attempt.composition, attempt.result.trace,
                                                                attempt.answer)
                attempt.verification = {"method": "execution", "trace_steps": len(attempt.result.trace)}
                attempt.stage = "store"
            return
        requests = [verify.verify_request(a.problem, self.verify_samples, max_tokens=self.max_tokens,
                                          seed=a.seed + 2) for a in alive]
        for attempt, response in self._ask(alive, requests):
            verification, chain = verify.judge(response, attempt.answer.text)
            attempt.verification = verification.to_dict()
            attempt.solve_rate = verification.solve_rate
            if chain is None:
                attempt.reject("unverified", f"no sampled solution reached {attempt.answer.text} "
                               f"(answers: {verification.answers})")
                continue
            attempt.solution = chain
            attempt.stage = "store"

    def _dedupe(self, batch: list[Attempt], store: Store, seen: set[str], run_id: str) -> None:
        for attempt in (a for a in batch if a.alive):
            attempt.sample = self._sample_of(attempt, run_id)
        ids = [a.sample.sample_id for a in batch if a.alive]
        with store.connect() as con:
            con.register("candidate_ids", pa.table({"sample_id": pa.array(ids, pa.string())}))
            existing = {r[0] for r in con.execute("SELECT sample_id FROM candidate_ids "
                                                  "SEMI JOIN samples_base USING (sample_id)").fetchall()}
            con.unregister("candidate_ids")
        for attempt in (a for a in batch if a.alive):
            sid = attempt.sample.sample_id
            if sid in seen or sid in existing:
                attempt.reject("duplicate", f"sample {sid} already exists")
            seen.add(sid)

    def _sample_of(self, attempt: Attempt, run_id: str) -> Sample:
        messages = [{"role": "user", "content": attempt.problem}, {"role": "assistant", "content": attempt.solution}]
        meta = {"rvsyn": {"run_id": run_id, "attempt": attempt.number, "strategy": self.strategy, "k": attempt.k,
                          "functions": [f.name for f in attempt.functions], "rounded": attempt.answer.rounded}}
        topics = sorted({f.topic for f in attempt.functions if f.topic})
        scores = [("rvsyn_solve_rate", attempt.solve_rate, {"samples": self.verify_samples})] \
            if attempt.solve_rate is not None else []
        return Sample(messages=messages, kind="synthetic", meta=meta, gold_answer=attempt.answer.text,
                      labels=[(t, "rvsyn") for t in topics], scores=scores)

    @staticmethod
    def _trim(batch: list[Attempt], wanted: int) -> list[Attempt]:
        """The batch up to its `wanted`-th kept attempt (later ones are dropped as if never made)."""
        kept = 0
        for index, attempt in enumerate(batch):
            kept += attempt.alive
            if kept == wanted:
                return batch[:index + 1]
        return batch

    def _write(self, store: Store, batch: list[Attempt], run_id: str, source_id: str) -> None:
        mapped = MappedBatch()
        for attempt in batch:
            if attempt.alive:
                mapped.add_sample(attempt.sample, source_id, attempt.number)
        mapped.last_rows[source_id] = batch[-1].number
        rows = [a.row(run_id, self.strategy) for a in batch]
        with store.transaction() as con:
            con.register("new_problems", pa.Table.from_pylist(rows))
            con.execute("CREATE OR REPLACE TEMP VIEW new_problem_rows AS "
                        "SELECT *, current_timestamp AS created_at FROM new_problems")
            insert_missing(con, "synth_problems", "new_problem_rows", ["problem_id"])
            con.unregister("new_problems")
            commit(con, mapped)
