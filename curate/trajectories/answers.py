"""Final answers, extracted from the response only, each dialect the way its reference code does.

The response only: Search-R1's prompt holds an example `<answer> Beijing </answer>`, which is why
its `extract_solution` (run on prompt + response) wants two matches and takes the last; on the
response alone that is the last match.
"""

from __future__ import annotations

import re

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{(.*)\}")
_TEXT = re.compile(r"\\text\{(.*)\}")


def last_answer_tag(response: str) -> str | None:
    """Search-R1 / ZeroSearch: the last `<answer>...</answer>`, stripped."""
    matches = _ANSWER_TAG.findall(response)
    return matches[-1].strip() if matches else None


def r1_searcher_answer(response: str) -> str | None:
    """R1-Searcher: the text between the last `<answer>` and the `</answer>` after it, stripped
    (its eval script's `pred_ans`, which it writes only when the generation stopped at `</answer>`)."""
    if "<answer>" not in response or "</answer>" not in response:
        return None
    return response.split("<answer>")[-1].split("</answer>")[0].strip()


def boxed_answer(response: str) -> str | None:
    r"""SimpleDeepSearcher (`extract_answer`, mode 'qa'): the last `\boxed{...}` of a line (greedy to
    the line's last brace), the inside of a `\text{...}` in it, parentheses stripped; '' is none."""
    matches = _BOXED.findall(response)
    if not matches:
        return None
    answer = matches[-1]
    inner = _TEXT.findall(answer)
    if inner:
        answer = inner[-1]
    answer = answer.strip("()")
    return answer or None
