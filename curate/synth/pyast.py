"""`ast.parse` and compiling a tree, one thread at a time.

CPython 3.11.7 keeps the AST converter's recursion counter in interpreter state, not per thread, so
two threads converting at once can fail with "SystemError: AST constructor recursion depth mismatch"
(gh-106905, fixed in 3.11.8). The sandbox pool checks and compiles programs on several threads, so
every conversion in curate.synth goes through here. Walking or editing a tree needs no lock.
"""

from __future__ import annotations

import ast
import threading
from types import CodeType

_CONVERTING = threading.Lock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    with _CONVERTING:
        return ast.parse(source, filename=filename)


def compile_tree(tree: ast.Module, filename: str) -> CodeType:
    with _CONVERTING:
        return compile(tree, filename, "exec", dont_inherit=True, optimize=0)
