"""Final answers of math problems: where they are in a reference text, and how to read them.

Shared by the gsm8k and math dialects (gold answers), the MCTS rule judge and RV-Syn's
verification, so that every stage reads a final answer the same way.
"""

from __future__ import annotations

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
    depth = 0
    for index in range(brace, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : index].strip()
    return None
