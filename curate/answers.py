"""Final answers of math problems: where they are in a reference text, and how to read them.

Shared by the gsm8k and math dialects (gold answers), the MCTS rule judge and RV-Syn's
verification, so that every stage reads a final answer the same way.
"""

from __future__ import annotations

import re
from fractions import Fraction

GSM8K_MARKER = "####"


def gsm8k_gold(answer_text: str) -> str | None:
    """The text after the last `####` of a GSM8K solution, commas in numbers removed."""
    if GSM8K_MARKER not in answer_text:
        return None
    gold = answer_text.rsplit(GSM8K_MARKER, 1)[1].strip()
    return gold.replace(",", "") or None


def last_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}` (or `\fbox{...}`), braces balanced; None if there is none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        # `\boxed 5` form: the token after the space
        rest = text[start:].split(None, 1)
        return rest[1].split("$")[0].strip() if len(rest) == 2 else None
    return _braced(text, brace)


def _braced(text: str, brace: int) -> str | None:
    """The content of the `{...}` opening at `text[brace]`, braces balanced; None if unclosed."""
    depth = 0
    for index in range(brace, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : index].strip()
    return None


_ANSWER_IS = re.compile(r"(?:the (?:final )?answer is|final answer)\s*:?", re.IGNORECASE)


def final_answer(text: str) -> str | None:
    r"""The final answer a worked solution states, or None.

    In order: the last `\boxed{}`; the last bare `boxed{}` (ThinkLite-VL's few-shot examples write
    `$boxed{217}$`, so a policy imitating them drops the backslash); GSM8K's `#### X`; the rest of the
    line after the last "The answer is" / "Final Answer:" (a trailing `<end>` or full stop removed).
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    bare = text.rfind("boxed{")
    if bare >= 0 and (found := _braced(text, bare + len("boxed"))) is not None:
        return found
    if GSM8K_MARKER in text:
        return gsm8k_gold(text)
    said = None
    for said in _ANSWER_IS.finditer(text):
        pass
    if said is None:
        return None
    line = text[said.end():].strip().split("\n", 1)[0].replace("<end>", "").strip()
    return line.rstrip(".").strip() or None


# -- equivalence ----------------------------------------------------------------------------------
#
# Two final answers are equivalent when their MATH-style normal forms are equal (the normalisation of
# Hendrycks et al.'s MATH grader: spacing, \left/\right, \dfrac, degrees, units in \text{}, "x = 2"),
# or when both read as the same number (integers, decimals, fractions a/b or \frac{a}{b},
# thousands separators, a trailing percent sign or dollar sign): integers exactly, others within a
# relative tolerance (0.333333 for 1/3).

_UNIT_TEXT = re.compile(r"\\(?:text|mbox|mathrm)\{\s*[a-zA-Z ]*\}")
_FRAC = re.compile(r"^(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}$")
_NUMBER = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)(e-?\d+)?$")


def _fix_fracs(text: str) -> str:
    r"""\frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}."""
    head, *parts = text.split("\\frac")
    out = head
    for part in parts:
        out += "\\frac"
        if part.startswith("{") or len(part) < 2:
            out += part
            continue
        a, b, rest = part[0], part[1], part[2:]
        out += "{" + a + "}" + (b + rest if b == "{" else "{" + b + "}" + rest)
    return out


def _fix_sqrt(text: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", text)


def normalise_answer(answer: str) -> str:
    """The MATH grader's normal form of a final answer."""
    text = str(answer).strip()
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""),
                     ("$", ""), ("\\%", ""), ("%", ""), ("\\displaystyle", "")):
        text = text.replace(old, new)
    text = _UNIT_TEXT.sub("", text).strip()
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if text.startswith("."):
        text = "0" + text
    left, sep, right = text.partition("=")
    if sep and "=" not in right and len(left.strip()) <= 2:   # "x = 2" -> "2"
        text = right
    text = _fix_sqrt(text).replace(" ", "")
    text = _fix_fracs(text)
    if re.fullmatch(r"-?\d+/\d+", text):                     # 3/4 -> \frac{3}{4}
        sign = "-" if text.startswith("-") else ""
        a, b = text.lstrip("-").split("/")
        text = f"{sign}\\frac{{{a}}}{{{b}}}"
    if text.endswith(".") and _NUMBER.match(text[:-1] or "x"):
        text = text[:-1]
    return text


def as_number(answer: str) -> Fraction | None:
    """The exact value of an answer that is a plain number, or None."""
    text = normalise_answer(answer)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    match = _FRAC.match(text)
    try:
        if match:
            sign, a, b = match.groups()
            value = Fraction(a) / Fraction(b)
            return -value if sign else value
        if _NUMBER.match(text):
            return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def answers_match(predicted: str | None, gold: str | None, *, rel_tol: float = 1e-6) -> bool:
    """Whether a predicted final answer equals the gold one (normal form, or the same number)."""
    if predicted is None or gold is None:
        return False
    if normalise_answer(predicted) == normalise_answer(gold):
        return True
    a, b = as_number(predicted), as_number(gold)
    if a is None or b is None:
        return False
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False     # two integers: exact (a relative tolerance would take 1450001 for 1450000)
    return abs(float(a) - float(b)) <= rel_tol * max(1.0, abs(float(b)))
