"""A reasoning model's output in two parts: the thinking block and the answer after it.

Qwen3 (and models like it, DeepSeek-R1's distills) write `<think> … </think>` before the
answer. The answer is extracted from the part after `</think>` only, never from a number
inside the thinking; an output that opens a thinking block and never closes it has no
answer (cut by the token cap, the taxonomy labels it `truncated`). An output with no
`<think>` is all answer, as for every model without a thinking mode.

Thinking and answer tokens are counted apart, on the generated ids: the thinking part runs up to and
including `</think>`. RES and the leaderboard's token columns count both (what the
question cost); `thinking_tokens` and `answer_tokens` say how it split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Parts:
    thinking: str | None  # the text between the delimiters; None: the output has no thinking block
    answer: str  # what the answer is extracted from ("" while the thinking never closed)
    closed: bool  # the thinking block ended (True when there is none)


def split_thinking(text: str) -> Parts:
    """`text` as thinking and answer on the `<think>`/`</think>` delimiters."""
    close = text.find(CLOSE)
    opened = text.find(OPEN)
    if close >= 0:
        # The prompt may have opened the block (templates that think by default end with `<think>\n`).
        start = opened + len(OPEN) if 0 <= opened < close else 0
        return Parts(thinking=text[start:close], answer=text[close + len(CLOSE) :], closed=True)
    if opened >= 0:
        return Parts(thinking=text[opened + len(OPEN) :], answer="", closed=False)
    return Parts(thinking=None, answer=text, closed=True)


def answer_text(text: str) -> str:
    """The part of an output an answer may be extracted from."""
    return split_thinking(text).answer


def thinking_count(token_ids: Sequence[int], delimiters: tuple[int, int] | None) -> int | None:
    """Generated tokens spent thinking: up to and including `</think>`, or all of them when a `<think>` never
    closed; None when the output has no thinking block or the tokenizer has no single-token delimiters."""
    if delimiters is None:
        return None
    opening, closing = delimiters
    if closing in token_ids:
        return list(token_ids).index(closing) + 1
    return len(token_ids) if opening in token_ids else None
