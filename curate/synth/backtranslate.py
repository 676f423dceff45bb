"""Back-translate an executed graph into a word problem, and render its worked solution.

Without an LLM the problem is assembled from the functions' sentence templates ("Let A be 15% of 240.
What is the number of ways to choose 3 people from a group of A?") and the solution is the trace,
step by step, with each intermediate value. With an LLM, the model writes the problem from the
program, and `check_problem` refuses one that mentions code, leaves out an input, asks for more or
less than one thing, or gives the answer away.
"""

from __future__ import annotations

import re
from fractions import Fraction

from curate.answers import as_number
from curate.models.llm import ChatRequest
from curate.synth.compose import Composition, Const
from curate.synth.library import LibraryFunction
from curate.synth.sandbox import TraceStep
from curate.synth.values import Answer, format_number

ROUNDING = "Round your answer to two decimal places."


def describe(function: LibraryFunction, values: dict[str, str]) -> str:
    """What one call computes, as a noun phrase with the given argument texts."""
    if function.template:
        return function.template.format(**values)
    doc = (function.doc or function.name.replace("_", " ")).strip().rstrip(".")
    doc = doc[:1].lower() + doc[1:]
    arguments = ", ".join(f"{name.replace('_', ' ')} = {value}" for name, value in values.items())
    return f'the result of "{doc}" for {arguments}'


def template_problem(composition: Composition, answer: Answer) -> str:
    steps = composition.steps
    phrases = []
    for step in steps:
        values = {name: format_number(v.value) if isinstance(v, Const) else composition.label(v.step)
                  for name, v in step.inputs.items()}
        phrases.append(describe(step.function, values))
    lines = [f"Let {composition.label(i)} be {phrase}." for i, phrase in enumerate(phrases[:-1])]
    lines.append(f"What is {phrases[-1]}?")
    if answer.rounded:
        lines.append(ROUNDING)
    return " ".join(lines)


def trace_solution(composition: Composition, trace: list[TraceStep], answer: Answer) -> str:
    """The worked solution: each step with the values it was computed from, then the boxed answer."""
    calls = [s for s in trace if s.depth == 0]
    if [c.function for c in calls] != [s.alias for s in composition.steps]:
        raise ValueError(f"the trace ({[c.function for c in calls]}) does not follow the graph "
                         f"({[s.alias for s in composition.steps]})")
    lines = []
    last = len(calls) - 1
    for i, (step, call) in enumerate(zip(composition.steps, calls)):
        phrase = describe(step.function, {name: format_number(value) for name, value in call.args})
        subject = phrase[:1].upper() + phrase[1:] if i == last else f"{composition.label(i)} is {phrase}, which"
        lines.append(f"Step {i + 1}: {subject} is {format_number(call.result)}.")
    if answer.rounded:
        lines.append(f"Rounded to two decimal places, that is {answer.text}.")
    lines.append(f"The answer is \\boxed{{{answer.text}}}.")
    return "\n".join(lines)


# -- with an LLM ------------------------------------------------------------------------------------

BACKTRANSLATE_PROMPT = """Here is a Python program:

```python
{code}
```

Write a math word problem whose answer is exactly the number that `solution()` returns. The problem must:
- be self-contained and state every number the calculation starts from: {numbers};
- ask for exactly one quantity, in a single question;
- never mention code, Python, programs, functions or variable names.
{rounding}Reply with the problem only."""


def backtranslate_request(code: str, constants: list, rounded: bool, *, max_tokens: int, seed: int) -> ChatRequest:
    numbers = ", ".join(format_number(c) for c in constants) or "(none)"
    rounding = "Ask for the answer rounded to two decimal places.\n" if rounded else ""
    prompt = BACKTRANSLATE_PROMPT.format(code=code.strip(), numbers=numbers, rounding=rounding)
    return ChatRequest(messages=({"role": "user", "content": prompt},), max_tokens=max_tokens, temperature=0.7,
                       top_p=0.95, seed=seed)


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "half": Fraction(1, 2),
          "quarter": Fraction(1, 4), "twice": 2, "double": 2, "triple": 3, "dozen": 12, "hundred": 100}
_CODE_WORDS = re.compile(r"```|\bdef\b|\bpython\b|\bprogram\b|\bfunctions?\b|\breturns?\b|\bvariables?\b|"
                         r"solution\(\)|\w+_\w+\s*\(|\bcode\b", re.IGNORECASE)
_PREFIX = re.compile(r"^\s*(\*\*)?\s*(word\s+)?problem\s*(\d+)?\s*:?\s*(\*\*)?\s*:?\s*", re.IGNORECASE)
_TAIL = re.compile(r"\n\s*(\*\*)?\s*(solution|answer|step\s*1)\b.*$", re.IGNORECASE | re.DOTALL)


def numbers_in(text: str) -> set[Fraction]:
    found = set()
    for match in _NUMBER.finditer(text):
        value = as_number(match.group())
        if value is not None:
            found.add(value)
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in _WORDS:
            found.add(Fraction(_WORDS[word]))
    return found


def _stated(constant, numbers: set[Fraction]) -> bool:
    value = Fraction(str(constant)) if isinstance(constant, float) else Fraction(constant)
    return value in numbers or value * 100 in numbers or abs(value) in numbers


def _names_identifier(name: str, text: str) -> bool:
    """A function's name in the text: as written (snake_case names) or called (plain words like `handshakes`)."""
    pattern = rf"\b{re.escape(name)}\b" if "_" in name else rf"\b{re.escape(name)}\s*\("
    return re.search(pattern, text) is not None


def check_problem(text: str, constants: list, answer: Answer, names: list[str]) -> tuple[str | None, str | None, str | None]:
    """(problem, None, None), or (None, reason, error) when the LLM's problem breaks a rule."""
    problem = _TAIL.sub("", _PREFIX.sub("", text.strip())).strip().strip('"').strip()
    if not problem:
        return None, "empty_problem", "the reply is empty"
    code = _CODE_WORDS.search(problem) or next((n for n in names if _names_identifier(n, problem)), None)
    if code:
        return None, "mentions_code", f"mentions {code.group() if hasattr(code, 'group') else code!r}"
    if problem.count("?") != 1:
        return None, "not_one_question", f"{problem.count('?')} question marks"
    numbers = numbers_in(problem)
    missing = [format_number(c) for c in constants if not _stated(c, numbers)]
    if missing:
        return None, "missing_inputs", f"does not state {', '.join(missing)}"
    value = as_number(answer.text)
    if value is not None and value in numbers and not any(_stated(c, {value}) for c in constants):
        return None, "answer_leaked", f"states the answer {answer.text}"
    return problem, None, None
