"""Tag a library function with one topic of the fixed taxonomy (`starter.TOPICS`).

`keyword_topic` reads the function's name and docstring (deterministic, no model); `topic_request`
and `parse_topic` ask an LLM (`synth library --tag-topics`). An LLM reply that names no topic of the
taxonomy is a failure, recorded as such, never a guess.
"""

from __future__ import annotations

import re

from curate.models.llm import ChatRequest
from curate.synth.starter import TOPICS

_KEYWORDS = {
    "percentages": ("percent", "discount", "interest", "tax", "markup", "tip", "commission", "profit"),
    "ratios_rates": ("ratio", "rate", "speed", "per", "wage", "hourly", "distance", "travel", "proportion"),
    "unit_conversion": ("convert", "minutes", "hours_to", "to_hours", "meters", "metres", "km", "grams", "kg",
                        "inches", "feet", "dozen", "liters", "litres", "celsius", "fahrenheit", "cents"),
    "geometry": ("area", "perimeter", "volume", "circle", "triangle", "rectangle", "square_area", "angle",
                 "radius", "diameter", "hypotenuse", "cube", "cylinder", "sphere", "polygon"),
    "combinatorics": ("choose", "combination", "permutation", "arrange", "ways", "factorial", "outfits"),
    "number_theory": ("gcd", "lcm", "divisor", "prime", "remainder", "digit", "multiple", "modulo", "parity"),
    "algebra": ("solve", "equation", "linear", "sequence", "term", "quadratic", "root", "power", "exponent"),
    "statistics": ("mean", "average", "median", "mode", "probability", "range", "variance", "deviation"),
}


def keyword_topic(name: str, doc: str | None) -> str:
    """The topic whose keywords occur most in the name and docstring; `arithmetic` when none does."""
    text = f"{name} {doc or ''}".lower()
    words = set(re.findall(r"[a-z]+", text.replace("_", " ")))
    best, hits = "arithmetic", 0
    for topic, keywords in _KEYWORDS.items():
        found = sum(1 for k in keywords if (k in words if "_" not in k else k in text))
        if found > hits:
            best, hits = topic, found
    return best


TOPIC_PROMPT = """Which topic does this Python function belong to?

```python
{code}
```

Topics: {topics}.
Answer with exactly one topic name from the list."""


def topic_request(code: str, *, seed: int = 0) -> ChatRequest:
    return ChatRequest(messages=({"role": "user", "content": TOPIC_PROMPT.format(code=code.strip(),
                                                                               topics=", ".join(TOPICS))},),
                       max_tokens=16, temperature=0.0, seed=seed)


def parse_topic(text: str) -> str | None:
    """The first taxonomy topic named in the reply (spaces, hyphens and 'and' tolerated), or None."""
    lowered = re.sub(r"[\s\-]+", "_", text.lower()).replace("_and_", "_")
    positions = [(lowered.find(topic), topic) for topic in TOPICS if topic in lowered]
    return min(positions)[1] if positions else None
