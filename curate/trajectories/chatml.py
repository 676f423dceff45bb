"""Decoded ChatML text (`<|im_start|>role\\n...<|im_end|>`), as Qwen-based search agents log rollouts."""

from __future__ import annotations

import re

ASSISTANT = re.compile(r"<\|im_start\|>assistant\s*")     # Search-R1's `is_valid_sequence` marker
_TURN = re.compile(r"<\|im_start\|>([^\n<]*)\n?(.*?)(?:<\|im_end\|>|(?=<\|im_start\|>)|\Z)", re.DOTALL)
_END_TOKENS = ("<|im_end|>", "<|endoftext|>")


def is_chatml(text: str) -> bool:
    return "<|im_start|>" in text


def strip_end_tokens(response: str) -> str:
    """Drop trailing end-of-turn tokens: chat-template tokens, not the policy's text."""
    trimmed = response.rstrip()
    while trimmed.endswith(_END_TOKENS):
        for token in _END_TOKENS:
            if trimmed.endswith(token):
                trimmed = trimmed[: -len(token)].rstrip()
    return trimmed if trimmed != response.rstrip() else response


def split_chatml(text: str) -> tuple[list[tuple[str, str]], str | None]:
    """(role, content) of the turns before the first assistant turn, and the text after that
    turn's marker (the response; None if there is no assistant marker)."""
    marker = ASSISTANT.search(text)
    head = text[: marker.start()] if marker else text
    turns = [(role.strip(), content) for role, content in _TURN.findall(head)]
    return turns, (strip_end_tokens(text[marker.end():]) if marker else None)
