"""A sandbox worker: runs compiled, policy-checked programs one at a time (stdlib only).

Started by the parent as `python -I -S -B _worker.py FD_IN FD_OUT MEMORY CPU BUILTINS`: isolated mode, no
site-packages, nothing of curate imported. It imports what it needs, hardens itself (see
_hardening.py), says hello with the layers that took effect, then serves requests until its input
closes. Requests come from the trusted parent (a marshalled code object); replies go back as JSON
only, never pickle, so a subverted worker cannot make the parent run anything.

Each task gets fresh globals, a fresh copy of the restricted builtins and fresh proxies of `math`
and `fractions` (public names only: the real `fractions` module carries `sys`), so nothing one task
does is seen by the next. Top-level functions named by the parent are wrapped to record each call's
arguments and result (the trace).
"""

from __future__ import annotations

import builtins
import fractions
import json
import marshal
import math
import os
import resource
import signal
import struct
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _hardening

del sys.path[0]

Fraction = fractions.Fraction
MAX_RESULT_BITS = 1 << 20          # ** and << refuse results with more bits than this (~315,000 digits)
MAX_TRACE = 2_000                  # calls recorded per task
MAX_OUTPUT = 10_000                # characters of print() output kept per task
MAX_ITEMS = 1_000                  # list items encoded per value
MAX_STR = 2_000                    # characters of a string value encoded
STARTED = b"S"                     # sent when a task is received: a death before it is not the task's doing


class CPUTimeLimit(BaseException):
    """Raised by the per-task CPU timer; a BaseException so `except Exception` in the task won't eat it."""


def _on_cpu_timer(signum, frame):
    raise CPUTimeLimit()


def _bits(value) -> int:
    if type(value) in (int, bool):
        return abs(int(value)).bit_length()
    if type(value) is Fraction:
        return max(abs(value.numerator).bit_length(), value.denominator.bit_length())
    return 0


def safe_pow(base, exponent, modulo=None):
    if modulo is not None:
        return pow(base, exponent, modulo)
    if type(exponent) in (int, bool) and type(base) in (int, bool, Fraction):
        bits = _bits(base)
        if bits > 1 and abs(exponent) * (bits - 1) > MAX_RESULT_BITS:
            raise OverflowError(f"power too large: about {abs(exponent) * (bits - 1):,} bits "
                                f"(limit {MAX_RESULT_BITS:,})")
    return base ** exponent


def safe_lshift(value, shift):
    if type(shift) in (int, bool) and shift > MAX_RESULT_BITS:
        raise OverflowError(f"shift too large: {shift:,} bits (limit {MAX_RESULT_BITS:,})")
    return value << shift


_MATH_PUBLIC = {name: getattr(math, name) for name in dir(math) if not name.startswith("_")}
_FRACTIONS_PUBLIC = {"Fraction": Fraction}
_SAFE_BUILTINS: dict = {}          # filled from the parent's list (policy.SAFE_BUILTINS) at start


def _module(name: str, public: dict):
    module = types.ModuleType(name)
    for key, value in public.items():
        setattr(module, key, value)
    return module


class _Output:
    """print() for the task: keeps the first MAX_OUTPUT characters, counts the rest."""

    def __init__(self):
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def print(self, *args, sep=" ", end="\n"):
        text = str(sep).join(str(a) for a in args) + str(end)
        room = MAX_OUTPUT - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))


def _builtins(output: _Output) -> dict:
    modules = {"math": _module("math", _MATH_PUBLIC), "fractions": _module("fractions", _FRACTIONS_PUBLIC)}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name not in modules:
            raise ImportError(f"import of {name!r} is not allowed")
        return modules[name]

    table = dict(_SAFE_BUILTINS)
    table.update({"__import__": guarded_import, "pow": safe_pow, "print": output.print,
                  "__sandbox_pow__": safe_pow, "__sandbox_lshift__": safe_lshift})
    return table


# -- values -> JSON (the only thing that crosses back) ---------------------------------------------


def encode(value, depth: int = 0):
    kind = type(value)
    if value is None:
        return {"t": "none"}
    if kind is bool:
        return {"t": "bool", "v": value}
    if kind is int:
        if value.bit_length() > 13_000:     # beyond int->str's 4,300-digit limit
            return {"t": "other", "type": "int", "detail": f"integer with {value.bit_length():,} bits"}
        return {"t": "int", "v": str(value)}
    if kind is float:
        return {"t": "float", "v": repr(value)}
    if kind is Fraction:
        if _bits(value) > 13_000:
            return {"t": "other", "type": "Fraction", "detail": f"fraction with {_bits(value):,} bits"}
        return {"t": "fraction", "n": str(value.numerator), "d": str(value.denominator)}
    if kind is complex:
        return {"t": "complex", "re": repr(value.real), "im": repr(value.imag)}
    if kind is str:
        return {"t": "str", "v": value[:MAX_STR], "truncated": len(value) > MAX_STR}
    if kind in (list, tuple) and depth < 3:
        items = [encode(item, depth + 1) for item in value[:MAX_ITEMS]]
        return {"t": "list", "v": items, "truncated": len(value) > MAX_ITEMS}
    return {"t": "other", "type": kind.__name__, "detail": ""}


class _Trace:
    def __init__(self):
        self.steps: list[dict] = []
        self.depth = 0
        self.truncated = False

    def wrap(self, name: str, function):
        code = function.__code__
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        trace = self

        def traced(*args, **kwargs):
            record = None
            if len(trace.steps) < MAX_TRACE:
                arguments = [[names[i] if i < len(names) else f"arg{i}", encode(a)] for i, a in enumerate(args)]
                arguments += [[key, encode(a)] for key, a in kwargs.items()]
                record = {"function": name, "args": arguments, "depth": trace.depth}
                trace.steps.append(record)
            else:
                trace.truncated = True
            trace.depth += 1
            try:
                result = function(*args, **kwargs)
            except BaseException as error:
                if record is not None:
                    record["raised"] = _describe(error)
                raise
            finally:
                trace.depth -= 1
            if record is not None:
                record["result"] = encode(result)
            return result

        return traced


def _describe(error: BaseException) -> str:
    try:
        message = str(error)
    except Exception:  # noqa: BLE001  (a message that cannot be rendered is left out)
        message = ""
    return f"{type(error).__name__}: {message[:500]}" if message else type(error).__name__


def _line_of(error: BaseException):
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<sandbox>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_KINDS = {MemoryError: "memory", RecursionError: "recursion", CPUTimeLimit: "cpu_time"}


def run(code, entry, traced_names, cpu_seconds) -> dict:
    output = _Output()
    trace = _Trace()
    namespace = {"__builtins__": _builtins(output), "__name__": "sandbox"}
    reply = {"ok": False}
    started = resource.getrusage(resource.RUSAGE_SELF)
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    try:
        try:
            exec(code, namespace)  # noqa: S102  (policy-checked code, restricted builtins, hardened process)
            for name in traced_names:
                function = namespace.get(name)
                if type(function) is types.FunctionType:
                    namespace[name] = trace.wrap(name, function)
            if entry is not None:
                function = namespace.get(entry)
                if type(function) is not types.FunctionType:
                    raise NameError(f"{entry} is not a function")
                value = function()
            else:
                value = None
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        reply = {"ok": True, "value": encode(value)}
    except BaseException as error:  # noqa: BLE001  (the task's failure is the reply, never the worker's end)
        signal.setitimer(signal.ITIMER_PROF, 0)
        kind = next((k for cls, k in _KINDS.items() if isinstance(error, cls)), "exception")
        message = f"CPU time limit of {cpu_seconds}s exceeded" if kind == "cpu_time" else _describe(error)
        reply = {"ok": False, "error": message, "kind": kind, "exception": type(error).__name__,
                 "line": _line_of(error)}
    ended = resource.getrusage(resource.RUSAGE_SELF)
    reply.update({"trace": trace.steps, "trace_truncated": trace.truncated, "output": "".join(output.parts),
                  "output_dropped": output.dropped,
                  "cpu": (ended.ru_utime + ended.ru_stime) - (started.ru_utime + started.ru_stime),
                  "cpu_total": ended.ru_utime + ended.ru_stime, "max_rss_kb": ended.ru_maxrss})
    return reply


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _send(fd: int, message: dict) -> None:
    try:
        payload = json.dumps(message, ensure_ascii=True, allow_nan=True).encode()
    except (ValueError, TypeError, RecursionError, MemoryError) as error:
        payload = json.dumps({"ok": False, "error": f"cannot encode the result: {type(error).__name__}",
                              "kind": "exception", "exception": type(error).__name__}).encode()
    data = struct.pack(">I", len(payload)) + payload
    while data:
        written = os.write(fd, data)
        data = data[written:]


def main() -> None:
    fd_in, fd_out, memory_bytes, cpu_seconds = (int(x) for x in sys.argv[1:5])
    _SAFE_BUILTINS.update({name: getattr(builtins, name) for name in sys.argv[5].split(",") if hasattr(builtins, name)})
    signal.signal(signal.SIGPROF, _on_cpu_timer)
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent's Ctrl-C is the parent's
    layers = _hardening.harden(memory_bytes, cpu_seconds, max_fds=max(fd_in, fd_out) + 4)
    _send(fd_out, {"hello": True, "pid": os.getpid(), "layers": layers})
    while True:
        header = _read_exact(fd_in, 4)
        if header is None:
            return
        request = _read_exact(fd_in, struct.unpack(">I", header)[0])
        if request is None:
            return
        code, entry, traced_names, cpu_limit = marshal.loads(request)
        os.write(fd_out, STARTED)
        _send(fd_out, run(code, entry, traced_names, cpu_limit))


if __name__ == "__main__":
    main()
