"""Canonical form of a library function, so that the same operation written twice is stored once.

Two functions are the same when their canonical ASTs are equal: docstring stripped, annotations
dropped, the function renamed `f`, its parameters renamed `a0, a1, ...` in order and its local
names `v0, v1, ...` in order of first appearance. Names it does not bind (`math`, `Fraction`,
builtins) keep their spelling. So `def total(price: float, n: int)` and `def cost(p, count)` with
the same body merge; `a * b` and `b * a` do not (that is what the behavioural check is for).
"""

from __future__ import annotations

import ast
import hashlib

from curate.synth import pyast


def function_def(source: str) -> ast.FunctionDef:
    """The single top-level function defined by `source`."""
    tree = pyast.parse(source)
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if len(functions) != 1:
        raise ValueError(f"expected one function definition, found {len(functions)}")
    return functions[0]


class _Renamer(ast.NodeTransformer):
    def __init__(self, params: list[str], local_names: list[str]):
        self.mapping = {name: f"a{i}" for i, name in enumerate(params)}
        for name in local_names:
            self.mapping.setdefault(name, f"v{len(self.mapping) - len(params)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.mapping.get(node.id, node.id), node.ctx)

    def visit_arg(self, node: ast.arg) -> ast.arg:
        return ast.arg(self.mapping.get(node.arg, node.arg), None)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        self.generic_visit(node)
        if node.name:
            node.name = self.mapping.get(node.name, node.name)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        self.generic_visit(node)
        if node.value is None:
            return ast.Pass()
        return ast.Assign(targets=[node.target], value=node.value)


def _bound_names(function: ast.FunctionDef) -> list[str]:
    """Names the function assigns, in order of first appearance (its locals)."""
    seen: dict[str, None] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            seen.setdefault(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            seen.setdefault(node.name)
    return list(seen)


def canonical_dump(source: str) -> str:
    function = function_def(source)
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:] or [ast.Pass()]
    args = function.args
    params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    stripped = ast.FunctionDef(name="f", args=args, body=body, decorator_list=[], returns=None, type_comment=None)
    renamed = _Renamer(params, _bound_names(stripped)).visit(stripped)
    return ast.dump(renamed, annotate_fields=False, include_attributes=False)


def canonical_hash(source: str) -> str:
    """sha256 of the canonical form (32 hex characters)."""
    return hashlib.sha256(canonical_dump(source).encode()).hexdigest()[:32]
