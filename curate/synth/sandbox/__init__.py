"""Run untrusted Python (LLM-written math functions) and get its value and a trace of its calls.

    from curate.synth.sandbox import execute
    result = execute("def double(x: int) -> int:\n    return 2 * x\n\ndef solution():\n    return double(21)\n")
    result.ok, result.value, [(s.function, s.args, s.result) for s in result.trace]

The code is a module that defines `solution()`; the sandbox runs the module body, then `solution()`,
recording every call of the module's other top-level functions. `execute` never raises because of
the code: a refused construct, an exception, a timeout or a crash comes back as `ok=False` with
`error` (a sentence), `kind` (forbidden | timeout | cpu_time | memory | recursion | exception |
crashed | protocol) and, where known, the line.

Layers, outermost first (each holds on its own; see policy.py, _worker.py, _hardening.py):
1. AST allow-list in the parent: imports of `math` and `fractions` only; no dunder names or
   attributes, no frame/code/class-hierarchy attributes, no attribute assignment, no `str.format`,
   no classes, `with`, decorators or `global`; `open`, `exec`, `eval`, `compile`, `__import__`,
   `globals`, `getattr`, `type`, ... refused by name. `**` and `<<` are rewritten into size guards.
2. Restricted builtins in the worker, fresh per task, with proxies of `math` and `fractions` that
   carry their public names only.
3. Worker processes (`python -I -S`, nothing of curate loaded, stdin/stdout/stderr on /dev/null)
   with resource limits (address space, CPU, file size 0, no core dumps, no new processes), an
   empty network namespace, and a seccomp filter refusing file opens, sockets, process creation,
   signals to other processes and file-system changes (Linux).
4. A wall-clock timeout in the parent that kills the worker and starts another; a worker that
   crashes, misbehaves on the pipe or exhausts its memory is replaced too.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence

from curate.synth.sandbox.policy import PolicyError, Program, compile_program, parse_checked
from curate.synth.sandbox.pool import ExecResult, Opaque, SandboxPool, TraceStep, to_json

__all__ = ["ExecResult", "Opaque", "PolicyError", "Program", "SandboxPool", "TraceStep", "compile_program",
           "default_pool", "execute", "execute_many", "parse_checked", "to_json"]

_default: SandboxPool | None = None
_default_lock = threading.Lock()


def default_pool() -> SandboxPool:
    """The process-wide pool `execute` uses (started on first use, closed at exit)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = SandboxPool()
            atexit.register(_default.close)
        return _default


def execute(code: str, *, timeout: float = 5.0) -> ExecResult:
    """Run `code` (a module defining `solution()`) in the sandbox; see the module docstring."""
    return default_pool().execute(code, timeout=timeout)


def execute_many(codes: Sequence[str], *, timeout: float = 5.0) -> list[ExecResult]:
    """`execute` over many programs on all of the pool's workers at once; results in order."""
    return default_pool().map(codes, timeout=timeout)
