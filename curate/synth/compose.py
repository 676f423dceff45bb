"""Compose sampled functions into an executable computational graph: a program whose `solution()`
calls every function and feeds outputs into inputs.

Without an LLM, `TypedComposer` orders the functions, wires each earlier output into a
type-compatible parameter of a later function (int results may feed int or real parameters, real
results only real ones) so that the calls form one connected graph with a single final result, and
draws every other argument from the parameter's declared range. With an LLM, the model writes
`solution()` and `parse_solution` checks that it calls every function and passes results along.
"""

from __future__ import annotations

import ast
import random
import re
import string
from dataclasses import dataclass

from curate.models.llm import ChatRequest
from curate.synth import pyast
from curate.synth.library import LibraryFunction, Param

HEADER = "import math\nfrom fractions import Fraction\n"


@dataclass(frozen=True)
class Const:
    value: int | float


@dataclass(frozen=True)
class Ref:
    step: int          # index of the earlier step whose result this is


@dataclass
class Step:
    function: LibraryFunction
    alias: str                           # the function's name in the program
    inputs: dict[str, Const | Ref]       # parameter -> constant or earlier result, in parameter order


@dataclass
class Composition:
    steps: list[Step]

    def label(self, index: int) -> str:
        """The name of step `index`'s result in the problem: A, B, C, ..."""
        return string.ascii_uppercase[index]

    def solution(self) -> str:
        lines = ["def solution():"]
        for i, step in enumerate(self.steps):
            args = ", ".join(f"{name}={repr(v.value) if isinstance(v, Const) else f'step{v.step + 1}'}"
                             for name, v in step.inputs.items())
            lines.append(f"    step{i + 1} = {step.alias}({args})")
        lines.append(f"    return step{len(self.steps)}")
        return "\n".join(lines) + "\n"

    def program(self) -> str:
        return build_program([(s.function, s.alias) for s in self.steps], self.solution())

    def constants(self) -> list[int | float]:
        return [v.value for s in self.steps for v in s.inputs.values() if isinstance(v, Const)]


def aliases(functions: list[LibraryFunction]) -> list[str]:
    """Names for the functions in one program: their own, suffixed where two share a name."""
    seen: dict[str, int] = {}
    names = []
    for function in functions:
        seen[function.name] = seen.get(function.name, 0) + 1
        names.append(function.name if seen[function.name] == 1 else f"{function.name}_{seen[function.name]}")
    return names


def _renamed(function: LibraryFunction, alias: str) -> str:
    if alias == function.name:
        return function.code.strip() + "\n"
    return re.sub(rf"^def {re.escape(function.name)}\(", f"def {alias}(", function.code.strip(), count=1,
                  flags=re.MULTILINE) + "\n"


def build_program(functions: list[tuple[LibraryFunction, str]], solution: str) -> str:
    """The executable program: imports, each function under its alias, then `solution()`."""
    parts = [HEADER] + [_renamed(f, alias) for f, alias in functions] + [solution.strip() + "\n"]
    return "\n\n".join(parts)


# -- typed composition (no LLM) ---------------------------------------------------------------------


def accepts(param_kind: str, result_kind: str) -> bool:
    return param_kind == result_kind or (param_kind == "num" and result_kind == "int")


def typed(function: LibraryFunction) -> bool:
    """Whether the typed composer can use the function: every kind and range known."""
    return function.returns in ("int", "num") and all(
        p.kind in ("int", "num") and p.lo is not None and p.hi is not None for p in function.params)


def draw(param: Param, rng: random.Random) -> int | float:
    """A constant from the parameter's declared range (reals on a grid of its step)."""
    lo, hi = param.lo, param.hi
    if param.kind == "int":
        return rng.randint(int(lo), int(hi))
    step = param.step or 1.0
    value = round(lo + rng.randint(0, max(0, round((hi - lo) / step))) * step, 6)
    return int(value) if float(value).is_integer() else value


class TypedComposer:
    """Wire k functions into one graph by types; `tries` orderings before giving up."""

    def __init__(self, tries: int = 20):
        self.tries = tries

    def compose(self, functions: list[LibraryFunction], rng: random.Random) -> Composition | str:
        """A composition, or the reason there is none (untyped | uncomposable)."""
        if not all(typed(f) for f in functions):
            return "untyped"
        names = dict(zip((id(f) for f in functions), aliases(functions)))
        for _ in range(self.tries):
            order = rng.sample(functions, len(functions))
            steps = self._wire(order, names, rng)
            if steps is not None:
                return Composition(steps)
        return "uncomposable"

    @staticmethod
    def _wire(order: list[LibraryFunction], names: dict[int, str], rng: random.Random) -> list[Step] | None:
        steps: list[Step] = []
        dangling: list[int] = []        # steps whose result nothing uses yet
        for index, function in enumerate(order):
            wired: dict[str, Ref] = {}
            for earlier in rng.sample(dangling, len(dangling)):
                free = [p for p in function.params
                        if p.name not in wired and accepts(p.kind, order[earlier].returns)]
                if free:
                    wired[rng.choice(free).name] = Ref(earlier)
                    dangling.remove(earlier)
            if index and not wired:
                return None              # this function cannot take any earlier result
            inputs = {p.name: wired.get(p.name) or Const(draw(p, rng)) for p in function.params}
            steps.append(Step(function, names[id(function)], inputs))
            dangling.append(index)
        return steps if len(dangling) == 1 else None


# -- LLM composition --------------------------------------------------------------------------------

COMPOSE_PROMPT = """Here are some Python functions:

```python
{functions}
```

Write one Python function `solution()` with no parameters that calls EVERY function above at least \
once. Pass the result of one call as an argument of another call, so that all the calls form a single \
calculation, and return its final result. Choose realistic numbers for the other arguments. Use only \
these functions, `math` and `Fraction`. Do not redefine the functions. Reply with a single ```python \
code block containing only `def solution():`."""


def compose_request(functions: list[tuple[LibraryFunction, str]], *, max_tokens: int, seed: int) -> ChatRequest:
    listing = "\n\n".join(_renamed(f, alias).strip() for f, alias in functions)
    return ChatRequest(messages=({"role": "user", "content": COMPOSE_PROMPT.format(functions=listing)},),
                       max_tokens=max_tokens, temperature=0.7, top_p=0.95, seed=seed)


_CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def code_block(text: str) -> str | None:
    """The first fenced code block of a reply (an unterminated one counts), or the reply if it is code."""
    match = _CODE_BLOCK.search(text)
    if match:
        return match.group(1).strip() or None
    stripped = text.strip()
    return stripped if stripped.startswith(("def ", "import ", "from ")) else None


def _called_names(node: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _passes_results(solution: ast.FunctionDef, names: set[str]) -> bool:
    """Whether some call of a library function takes another call's result (nested or via a variable)."""
    from_calls: set[str] = set()
    for node in ast.walk(solution):
        if isinstance(node, ast.Assign) and _called_names(node.value) & names:
            from_calls |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(solution):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            for arg in list(node.args) + [k.value for k in node.keywords]:
                if _called_names(arg) & names or any(isinstance(n, ast.Name) and n.id in from_calls
                                                     for n in ast.walk(arg)):
                    return True
    return False


def parse_solution(text: str, names: list[str]) -> tuple[str | None, str | None, str | None]:
    """(solution source, None, None) or (None, reason, error) for an LLM's composition reply."""
    code = code_block(text)
    if code is None:
        return None, "no_code", "the reply has no code block"
    try:
        tree = pyast.parse(code)
    except SyntaxError as error:
        return None, "invalid_code", f"syntax error: {error.msg} (line {error.lineno})"
    solution = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "solution"), None)
    if solution is None:
        return None, "no_solution", "no solution() in the reply"
    if solution.args.args or solution.args.posonlyargs or solution.args.kwonlyargs:
        return None, "no_solution", "solution() takes parameters"
    missing = [n for n in names if n not in _called_names(solution)]
    if missing:
        return None, "missing_functions", f"solution() does not call {', '.join(missing)}"
    if len(names) > 1 and not _passes_results(solution, set(names)):
        return None, "not_composed", "no call takes the result of another call"
    return ast.get_source_segment(code, solution) + "\n", None, None
