"""What untrusted code may say: the AST allow-list, checked in the parent before any worker sees it.

`compile_program(source)` parses the code, refuses anything outside the allow-list with a
`PolicyError` naming the construct and its line, rewrites `**` and `<<` into size-guarded calls (so
`10**10**10` fails at once instead of eating the worker's memory for minutes), and compiles it. The
worker receives only the compiled code object.

The allow-list is the first of the sandbox's layers (see `curate/synth/sandbox/__init__.py`): plain
functions, arithmetic, loops, comprehensions and the two importable modules `math` and `fractions`.
No classes, no `with`, no `global`, no decorators, no identifier or attribute starting with `__`, no
attribute that reaches frames, code objects or the class hierarchy, no attribute assignment, no
`str.format` (format strings reach attributes), and none of the builtins that open a way out.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from types import CodeType
from typing import ClassVar

from curate.synth import pyast

MAX_SOURCE_CHARS = 64_000
FILENAME = "<sandbox>"
IMPORTABLE = frozenset({"math", "fractions"})
POW_GUARD = "__sandbox_pow__"        # provided by the worker's builtins; user code cannot name it
LSHIFT_GUARD = "__sandbox_lshift__"

# Statement and expression nodes a program may contain (operators and contexts are allowed separately).
ALLOWED_NODES: frozenset[type] = frozenset({
    ast.Module, ast.FunctionDef, ast.arguments, ast.arg, ast.Return, ast.Assign, ast.AugAssign,
    ast.AnnAssign, ast.For, ast.While, ast.If, ast.Break, ast.Continue, ast.Pass, ast.Expr,
    ast.Import, ast.ImportFrom, ast.alias, ast.Try, ast.ExceptHandler, ast.Raise, ast.Assert,
    ast.Delete, ast.Nonlocal,
    ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict, ast.Set, ast.ListComp,
    ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension, ast.Compare, ast.Call,
    ast.keyword, ast.Constant, ast.Attribute, ast.Subscript, ast.Slice, ast.Starred, ast.Name,
    ast.List, ast.Tuple, ast.JoinedStr, ast.FormattedValue, ast.NamedExpr,
    ast.Load, ast.Store, ast.Del,
})
ALLOWED_BASES = (ast.operator, ast.unaryop, ast.boolop, ast.cmpop)

# The builtins a program gets (the worker builds its restricted builtins from this list), besides
# print (captured), pow (size-guarded) and __import__ (math and fractions only).
SAFE_BUILTINS = (
    "abs", "all", "any", "ascii", "bin", "bool", "callable", "chr", "complex", "dict", "divmod",
    "enumerate", "filter", "float", "frozenset", "hash", "hex", "int", "isinstance", "issubclass",
    "iter", "len", "list", "map", "max", "min", "next", "oct", "ord", "range", "repr", "reversed",
    "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "AssertionError", "Exception", "IndexError", "KeyError", "LookupError",
    "OverflowError", "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
    "NotImplementedError", "RecursionError", "MemoryError",
)

# Names refused wherever they appear: the builtins that reach files, code, frames or attributes by name.
FORBIDDEN_NAMES = frozenset({
    "open", "exec", "eval", "compile", "globals", "locals", "vars", "dir", "getattr", "setattr",
    "delattr", "hasattr", "breakpoint", "input", "help", "exit", "quit", "memoryview", "type",
    "object", "super", "classmethod", "staticmethod", "property", "id", "format",
})

# Attributes refused on any object: frames, code objects, generator/coroutine internals, the class
# hierarchy, and string formatting (which resolves `{0.attr}` fields).
_FORBIDDEN_ATTRIBUTE = re.compile(r"^(_|(gi|cr|ag|f|tb|co|func)_|mro$|format$|format_map$)")


class PolicyError(ValueError):
    """The program uses something the sandbox does not allow."""

    def __init__(self, reason: str, line: int | None = None):
        self.reason = reason
        self.line = line
        super().__init__(f"{reason} (line {line})" if line else reason)


@dataclass(frozen=True)
class Program:
    code: CodeType                  # compiled, guards inserted
    functions: tuple[str, ...]      # top-level function names other than the entry (these are traced)
    entry: str | None               # the function called after the module body runs, if any


def _identifier_ok(name: str) -> bool:
    return not name.startswith("__")


class _Checker(ast.NodeVisitor):
    def generic_visit(self, node: ast.AST) -> None:
        if type(node) not in ALLOWED_NODES and not isinstance(node, ALLOWED_BASES):
            raise PolicyError(f"{type(node).__name__} is not allowed", getattr(node, "lineno", None))
        super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if not _identifier_ok(node.id):
            raise PolicyError(f"name {node.id!r} is not allowed (no dunder names)", node.lineno)
        if node.id in FORBIDDEN_NAMES:
            raise PolicyError(f"name {node.id!r} is not allowed", node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _FORBIDDEN_ATTRIBUTE.match(node.attr):
            raise PolicyError(f"attribute {node.attr!r} is not allowed", node.lineno)
        if not isinstance(node.ctx, ast.Load):
            raise PolicyError(f"assigning or deleting attribute {node.attr!r} is not allowed", node.lineno)
        self.visit(node.value)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            raise PolicyError("decorators are not allowed", node.lineno)
        if not _identifier_ok(node.name) or node.name in FORBIDDEN_NAMES:
            raise PolicyError(f"function name {node.name!r} is not allowed", node.lineno)
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        if not _identifier_ok(node.arg):
            raise PolicyError(f"parameter {node.arg!r} is not allowed (no dunder names)", node.lineno)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None and not _identifier_ok(node.arg):
            raise PolicyError(f"keyword {node.arg!r} is not allowed", node.value.lineno)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name is not None and not _identifier_ok(node.name):
            raise PolicyError(f"name {node.name!r} is not allowed", node.lineno)
        self.generic_visit(node)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        for name in node.names:
            if not _identifier_ok(name):
                raise PolicyError(f"name {name!r} is not allowed", node.lineno)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in IMPORTABLE:
                raise PolicyError(f"import of {alias.name!r} is not allowed (only math, fractions)", node.lineno)
            if alias.asname is not None and not _identifier_ok(alias.asname):
                raise PolicyError(f"name {alias.asname!r} is not allowed", node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or node.module not in IMPORTABLE:
            raise PolicyError(f"import from {node.module!r} is not allowed (only math, fractions)", node.lineno)
        for alias in node.names:
            if alias.name == "*":
                raise PolicyError("import * is not allowed", node.lineno)
            for name in (alias.name, alias.asname):
                if name is not None and (name.startswith("_") or name in FORBIDDEN_NAMES):
                    raise PolicyError(f"importing {name!r} is not allowed", node.lineno)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if not isinstance(target, (ast.Name, ast.Subscript)):
                raise PolicyError("only names and items may be deleted", node.lineno)
        self.generic_visit(node)


class _Guards(ast.NodeTransformer):
    """`a ** b` -> `__sandbox_pow__(a, b)`, `a << b` -> `__sandbox_lshift__(a, b)` (augmented too)."""

    GUARDS: ClassVar[dict[type, str]] = {ast.Pow: POW_GUARD, ast.LShift: LSHIFT_GUARD}

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        guard = self.GUARDS.get(type(node.op))
        if guard is None:
            return node
        call = ast.Call(func=ast.Name(guard, ast.Load()), args=[node.left, node.right], keywords=[])
        return ast.copy_location(call, node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        guard = self.GUARDS.get(type(node.op))
        if guard is None:
            return node
        if not isinstance(node.target, ast.Name):
            raise PolicyError("augmented ** or << is only allowed on a plain name", node.lineno)
        value = ast.Call(func=ast.Name(guard, ast.Load()),
                         args=[ast.Name(node.target.id, ast.Load()), node.value], keywords=[])
        return ast.copy_location(ast.Assign(targets=[node.target], value=value), node)


def parse_checked(source: str) -> ast.Module:
    """Parse `source` and check it against the allow-list; raises PolicyError."""
    if not isinstance(source, str):
        raise PolicyError(f"code must be a string, got {type(source).__name__}")
    if len(source) > MAX_SOURCE_CHARS:
        raise PolicyError(f"code is {len(source):,} characters; the limit is {MAX_SOURCE_CHARS:,}")
    try:
        tree = pyast.parse(source, FILENAME)
    except SyntaxError as error:
        raise PolicyError(f"syntax error: {error.msg}", error.lineno) from None
    except (RecursionError, MemoryError, ValueError) as error:
        raise PolicyError(f"cannot parse: {type(error).__name__}: {error}") from None
    try:
        _Checker().visit(tree)
    except RecursionError:
        raise PolicyError("code is nested too deeply") from None
    return tree


def compile_program(source: str, entry: str | None = "solution") -> Program:
    """Check, guard and compile `source`. `entry` names the function to call after the module body."""
    tree = parse_checked(source)
    functions = tuple(node.name for node in tree.body
                      if isinstance(node, ast.FunctionDef) and node.name != entry)
    if entry is not None and not any(isinstance(node, ast.FunctionDef) and node.name == entry for node in tree.body):
        raise PolicyError(f"no top-level function {entry}() defined")
    try:
        guarded = ast.fix_missing_locations(_Guards().visit(tree))
        code = pyast.compile_tree(guarded, FILENAME)
    except (SyntaxError, RecursionError, MemoryError, ValueError) as error:
        raise PolicyError(f"cannot compile: {type(error).__name__}: {error}") from None
    return Program(code=code, functions=functions, entry=entry)
