"""The parent side of the sandbox: a pool of hardened worker processes, and what they reply.

A worker is `python -I -S -B _worker.py` with two pipes (its stdin, stdout and stderr are
/dev/null, so a flood of output goes nowhere), started in its own session, in an empty scratch
folder. Requests are compiled code objects (marshal); replies are JSON, decoded here strictly into
numbers, fractions, strings, lists and `Opaque` markers: nothing a worker sends can run code here.

A worker acknowledges each task before running it: one that dies before that (killed while idle)
is replaced and the task goes to another, while one that dies after it is reported as the task's
crash. A task that outlives its wall-clock limit gets its worker killed (SIGKILL) and replaced; so
does a worker that dies, sends something malformed or too large, or ran out of memory. A worker is also
retired after `max_tasks` tasks, or before its lifetime CPU limit comes near.
"""

from __future__ import annotations

import functools
import json
import marshal
import math
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from curate.synth.sandbox.policy import SAFE_BUILTINS, PolicyError, Program, compile_program

WORKER_SCRIPT = str(Path(__file__).with_name("_worker.py"))
MAX_REPLY_BYTES = 16 << 20
STARTED = b"S"                 # the worker's receipt of a task (see _worker.py)
START_TIMEOUT = 60.0           # seconds a new worker may take to say hello (slow on a loaded machine)
GRACE = 0.5                    # seconds past the task's limit before the worker is killed


@dataclass(frozen=True)
class Opaque:
    """A value the sandbox returned that is not a number, string or list (or is too big to send)."""

    type: str
    detail: str = ""


@dataclass(frozen=True)
class TraceStep:
    """One call of a traced function: its arguments and result (or the exception it raised)."""

    function: str
    args: tuple[tuple[str, Any], ...]
    result: Any = None
    raised: str | None = None
    depth: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function, "args": [[k, to_json(v)] for k, v in self.args],
                "result": to_json(self.result), "raised": self.raised, "depth": self.depth}


@dataclass
class ExecResult:
    ok: bool
    value: Any = None
    error: str | None = None
    trace: list[TraceStep] = field(default_factory=list)
    kind: str | None = None        # forbidden | timeout | cpu_time | memory | recursion | exception | crashed | protocol
    exception: str | None = None   # the exception's type name, when one was raised
    line: int | None = None        # the program line it was raised (or refused) at
    output: str = ""               # what the program printed (truncated)
    seconds: float = 0.0           # wall time, parent side


class ProtocolError(Exception):
    pass


class _WorkerGone(Exception):
    """The worker was dead before the task reached it (the task is not to blame)."""


# -- JSON values ----------------------------------------------------------------------------------


def decode(obj: Any, depth: int = 0) -> Any:
    """A worker's encoded value -> a Python value; anything unexpected is a ProtocolError."""
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str) or depth > 4:
        raise ProtocolError(f"malformed value: {str(obj)[:100]}")
    kind = obj["t"]
    try:
        if kind == "none":
            return None
        if kind == "bool" and isinstance(obj["v"], bool):
            return obj["v"]
        if kind == "int":
            return int(obj["v"])
        if kind == "float":
            return float(obj["v"])
        if kind == "fraction":
            return Fraction(int(obj["n"]), int(obj["d"]))
        if kind == "complex":
            return complex(float(obj["re"]), float(obj["im"]))
        if kind == "str" and isinstance(obj["v"], str):
            return obj["v"]
        if kind == "list" and isinstance(obj["v"], list):
            return [decode(item, depth + 1) for item in obj["v"]]
        if kind == "other":
            return Opaque(str(obj.get("type", "?"))[:100], str(obj.get("detail", ""))[:200])
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
        raise ProtocolError(f"malformed {kind} value: {error}") from None
    raise ProtocolError(f"unknown value type {kind!r}")


def to_json(value: Any) -> Any:
    """A decoded value as plain JSON for the store (fractions as "a/b", floats kept exact)."""
    if isinstance(value, Fraction):
        return {"fraction": f"{value.numerator}/{value.denominator}"}
    if isinstance(value, complex):
        return {"complex": [value.real, value.imag]}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return {"int": str(value)}
    if isinstance(value, Opaque):
        return {"opaque": value.type, "detail": value.detail}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def _trace(raw: Any) -> list[TraceStep]:
    if not isinstance(raw, list):
        raise ProtocolError("malformed trace")
    steps = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("function"), str):
            raise ProtocolError("malformed trace step")
        args = item.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, list) and len(a) == 2 and isinstance(a[0], str)
                                                 for a in args):
            raise ProtocolError("malformed trace arguments")
        raised = item.get("raised")
        steps.append(TraceStep(
            function=item["function"][:200], args=tuple((name[:100], decode(v)) for name, v in args),
            result=decode(item["result"]) if "result" in item else None,
            raised=raised[:600] if isinstance(raised, str) else None,
            depth=int(item.get("depth", 0))))
    return steps


# -- one worker -----------------------------------------------------------------------------------


class _Worker:
    def __init__(self, memory_bytes: int, cpu_lifetime: int, cwd: str):
        to_child, self._to_worker = os.pipe()
        self._from_worker, from_child = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", WORKER_SCRIPT, str(to_child), str(from_child),
                 str(memory_bytes), str(cpu_lifetime), ",".join(SAFE_BUILTINS)],
                pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=cwd, env={}, start_new_session=True)
        finally:
            os.close(to_child)
            os.close(from_child)
        self.cpu_lifetime = cpu_lifetime
        self.tasks = 0
        self.cpu_total = 0.0
        self.layers: dict[str, str] | None = None
        self.dead = False
        self._poll = select.poll()
        self._poll.register(self._from_worker, select.POLLIN | select.POLLHUP | select.POLLERR)

    def _read(self, size: int, deadline: float) -> bytes:
        """Exactly `size` bytes from the worker; raises TimeoutError or EOFError."""
        buffer = bytearray()
        while len(buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(remaining * 1000):   # poll, not select: fds may be > 1024
                raise TimeoutError
            chunk = os.read(self._from_worker, min(size - len(buffer), 1 << 20))
            if not chunk:
                raise EOFError
            buffer += chunk
        return bytes(buffer)

    def _read_message(self, deadline: float) -> dict:
        """One length-prefixed JSON message; raises TimeoutError, EOFError or ProtocolError."""
        length = struct.unpack(">I", self._read(4, deadline))[0]
        if length > MAX_REPLY_BYTES:
            raise ProtocolError(f"reply of {length:,} bytes is over the {MAX_REPLY_BYTES:,}-byte limit")
        try:
            message = json.loads(self._read(length, deadline))
        except (ValueError, RecursionError) as error:
            raise ProtocolError(f"reply is not JSON: {error}") from None
        if not isinstance(message, dict):
            raise ProtocolError("reply is not an object")
        return message

    def ready(self) -> dict[str, str]:
        if self.layers is None:
            hello = self._read_message(time.monotonic() + START_TIMEOUT)
            if not hello.get("hello") or not isinstance(hello.get("layers"), dict):
                raise ProtocolError("worker did not say hello")
            self.layers = {str(k): str(v) for k, v in hello["layers"].items()}
        return self.layers

    def run(self, program: Program, timeout: float) -> dict:
        payload = marshal.dumps((program.code, program.entry, program.functions, float(timeout)))
        try:
            os.write(self._to_worker, struct.pack(">I", len(payload)))
        except BrokenPipeError:
            raise _WorkerGone from None
        view = memoryview(payload)
        while view:
            view = view[os.write(self._to_worker, view):]
        deadline = time.monotonic() + timeout + GRACE
        try:
            receipt = self._read(1, deadline)
        except EOFError:
            raise _WorkerGone from None
        if receipt != STARTED:
            raise ProtocolError(f"expected the task's receipt, got {receipt!r}")
        reply = self._read_message(deadline)
        self.tasks += 1
        cpu_total = reply.get("cpu_total")
        self.cpu_total = float(cpu_total) if isinstance(cpu_total, (int, float)) else self.cpu_total
        return reply

    def exit_description(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    def kill(self) -> None:
        if self.dead:
            return
        self.dead = True
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
        self.process.wait()
        for fd in (self._to_worker, self._from_worker):
            try:
                os.close(fd)
            except OSError:
                pass


# -- the pool -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _compiled(source: str, entry: str | None) -> Program:
    return compile_program(source, entry)


class SandboxPool:
    """`workers` hardened processes serving `execute` calls, reused across calls, replaced when needed.

    memory_mb: address-space limit of each worker. cpu_lifetime_s: a worker's total CPU budget (the
    per-task CPU limit is the task's timeout). max_tasks: tasks before a worker is retired.
    """

    def __init__(self, workers: int | None = None, *, memory_mb: int = 512, cpu_lifetime_s: int = 600,
                 max_tasks: int = 5_000):
        self.workers = workers or max(1, min(2, os.cpu_count() or 1))
        self.memory_mb = memory_mb
        self.cpu_lifetime_s = cpu_lifetime_s
        self.max_tasks = max_tasks
        self.scratch = tempfile.mkdtemp(prefix="curate-sandbox-")
        self.replaced = 0          # workers killed or retired and replaced
        self._slots: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(self.workers):
            self._slots.put(None)
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        self._layers: dict[str, str] | None = None
        self._closed = False

    # -- workers --

    def _spawn(self) -> _Worker:
        worker = _Worker(self.memory_mb << 20, self.cpu_lifetime_s, self.scratch)
        with self._lock:
            self._live.add(worker)
        try:
            layers = worker.ready()
        except (TimeoutError, EOFError, ProtocolError, OSError) as error:
            self._retire(worker)
            raise RuntimeError(f"a sandbox worker failed to start ({type(error).__name__}: {error}; "
                               f"{worker.exit_description()})") from None
        self._layers = layers
        return worker

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._live.discard(worker)

    def _acquire(self) -> _Worker:
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        worker = self._slots.get()
        if worker is None or worker.dead or worker.process.poll() is not None:
            if worker is not None:
                self._retire(worker)
            try:
                worker = self._spawn()
            except BaseException:
                self._slots.put(None)
                raise
        return worker

    def _release(self, worker: _Worker | None) -> None:
        self._slots.put(worker)

    @property
    def layers(self) -> dict[str, str]:
        """What each hardening layer reported in the workers ('on', or why not)."""
        if self._layers is None:
            self._release(self._acquire())
        return dict(self._layers or {})

    # -- running --

    def execute(self, code: str, *, timeout: float = 5.0, entry: str | None = "solution") -> ExecResult:
        """Run `code` (module body, then `entry()` if given) in a worker; never raises for the code's sake."""
        started = time.perf_counter()
        try:
            program = _compiled(code, entry)
        except PolicyError as error:
            return ExecResult(ok=False, error=f"forbidden: {error}", kind="forbidden", line=error.line,
                              seconds=time.perf_counter() - started)
        result = self._run(program, timeout)
        result.seconds = time.perf_counter() - started
        return result

    def map(self, codes: Sequence[str], *, timeout: float = 5.0, entry: str | None = "solution") -> list[ExecResult]:
        """`execute` over many programs, as many at a time as there are workers; results in order."""
        if len(codes) <= 1 or self.workers == 1:
            return [self.execute(code, timeout=timeout, entry=entry) for code in codes]
        with ThreadPoolExecutor(max_workers=self.workers) as threads:
            return list(threads.map(lambda code: self.execute(code, timeout=timeout, entry=entry), codes))

    def _run(self, program: Program, timeout: float, retries: int | None = None) -> ExecResult:
        # Each slot may hold a worker that died while idle, so a task may meet every one of them once
        # before it reaches a freshly spawned worker.
        retries = self.workers + 1 if retries is None else retries
        worker = self._acquire()
        keep: _Worker | None = worker
        try:
            try:
                reply = worker.run(program, timeout)
            except _WorkerGone:
                keep = None
                if retries > 0:
                    self._retire(worker)
                    self._release(None)
                    keep = worker = None
                    return self._run(program, timeout, retries - 1)
                return ExecResult(ok=False, kind="crashed", error="crashed: no worker would take the task")
            except TimeoutError:
                keep = None
                return ExecResult(ok=False, kind="timeout", error=f"timeout: no result within {timeout:g}s "
                                  "(wall clock); the worker was killed and replaced")
            except (EOFError, BrokenPipeError):
                keep = None
                try:            # it closed its pipe: let it finish dying, so its exit status is its own
                    worker.process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                worker.kill()
                return ExecResult(ok=False, kind="crashed",
                                  error=f"crashed: the worker died ({worker.exit_description()}) and was replaced")
            except ProtocolError as error:
                keep = None
                return ExecResult(ok=False, kind="protocol", error=f"protocol: {error}; the worker was replaced")
            try:
                result = self._result(reply)
            except ProtocolError as error:
                keep = None
                return ExecResult(ok=False, kind="protocol", error=f"protocol: {error}; the worker was replaced")
            if (result.kind == "memory" or worker.tasks >= self.max_tasks
                    or worker.cpu_total > self.cpu_lifetime_s - 2 * timeout - 1):
                keep = None       # a worker that hit its memory limit may be fragmented: start afresh
            return result
        finally:
            if worker is not None:
                if keep is None:
                    self._retire(worker)
                    self.replaced += 1
                self._release(keep)

    @staticmethod
    def _result(reply: dict) -> ExecResult:
        trace = _trace(reply.get("trace", []))
        output = reply.get("output", "")
        output = output if isinstance(output, str) else ""
        if reply.get("ok") is True:
            return ExecResult(ok=True, value=decode(reply.get("value")), trace=trace, output=output)
        error = reply.get("error")
        line = reply.get("line")
        kind = reply.get("kind")
        exception = reply.get("exception")
        return ExecResult(
            ok=False, error=str(error)[:1000] if error is not None else "unknown error",
            kind=kind if isinstance(kind, str) else "exception", trace=trace, output=output,
            exception=exception if isinstance(exception, str) else None,
            line=line if isinstance(line, int) else None)

    # -- lifetime --

    def close(self) -> None:
        self._closed = True
        with self._lock:
            live = list(self._live)
        for worker in live:
            self._retire(worker)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> SandboxPool:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()
