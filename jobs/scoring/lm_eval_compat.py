"""lm-evaluation-harness's GSM8K scores, computed as its tasks compute them, beside our pass@1.

Published GSM8K numbers are lm-eval's `exact_match` under one of two filters. Semantics copied from
EleutherAI/lm-evaluation-harness (MIT; read at commit 4e7e0d47f, the 0.4.x line):
- lm_eval/tasks/gsm8k/gsm8k.yaml (task `gsm8k`): `until` ["Question:", "</s>", "<|im_end|>"];
  strict-match regex `#### (\\-?[0-9\\.\\,]+)`; the reference is the whole `answer` field.
- lm_eval/tasks/gsm8k/gsm8k-cot.yaml (task `gsm8k_cot`): `until` ["Q:", "</s>", "<|im_end|>"];
  strict-match regex `The answer is (\\-?[0-9\\.\\,]+).` (its unescaped final `.` needs one more
  character after the number: "The answer is 42" at the end extracts "4", a known quirk); the
  reference is `answer.split('####')[-1].strip()`.
- both: flexible-extract regex `(-?[$0-9.,]{2,})|(-?[0-9]+)` with group_select -1; then take_first;
  metric exact_match with ignore_case true, ignore_punctuation false and regexes_to_ignore
  `,` `\\$` `(?s).*#### ` `\\.$`, applied in that order to prediction and reference alike.
- lm_eval/filters/extraction.py RegexFilter: `findall`; the match at `group_select` (0: the first,
  -1: the last); of a tuple of groups the first non-empty one, else the fallback `[invalid]`; stripped.
- lm_eval/filters/selection.py: take_first keeps the first response; majority_vote (the
  self-consistency tasks) keeps `Counter(filtered).most_common(1)`, `[invalid]` included as a vote,
  ties to the first seen.
- lm_eval/api/metrics.py exact_match_hf_evaluate: re.sub of each ignored regex, lower(), `==`
  (numpy string arrays, which drop trailing NULs).
- a generate_until response is cut before the first occurrence of each `until` string; our engines
  stop at EOS only, so the same cut is applied to the text here (a greedy output cut there is what
  lm-eval's stop would have returned).

Which task's rules a run follows depends on its prompt preset (`TASK_OF_PROMPT`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

FALLBACK = "[invalid]"
FLEXIBLE_REGEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORED = tuple(re.compile(pattern) for pattern in (r",", r"\$", r"(?s).*#### ", r"\.$"))


@dataclass(frozen=True)
class LmEvalTask:
    name: str
    strict_regex: re.Pattern[str]
    until: tuple[str, ...]
    target_is_whole_answer: bool  # gsm8k: the full answer field; gsm8k_cot: the text after the last ####


TASKS: dict[str, LmEvalTask] = {
    "gsm8k": LmEvalTask("gsm8k", re.compile(r"#### (\-?[0-9\.\,]+)"), ("Question:", "</s>", "<|im_end|>"), True),
    "gsm8k_cot": LmEvalTask(
        "gsm8k_cot", re.compile(r"The answer is (\-?[0-9\.\,]+)."), ("Q:", "</s>", "<|im_end|>"), False
    ),
}
# Our zero-shot prompt asks for `#### N`, as gsm8k's exemplars end; the CoT exemplars end "The answer is N.".
TASK_OF_PROMPT: dict[str, str] = {"zero_shot": "gsm8k", "gsm8k_5shot": "gsm8k", "gsm8k_cot_8shot": "gsm8k_cot"}


@dataclass(frozen=True)
class LmEvalScore:
    """One question's two lm-eval scores: each filter's answer and whether it exactly matches."""

    task: str
    strict_answer: str
    strict_match: bool
    flexible_answer: str
    flexible_extract: bool

    def as_json(self) -> dict[str, str | bool]:
        return {
            "task": self.task,
            "strict_answer": self.strict_answer,
            "strict_match": self.strict_match,
            "flexible_answer": self.flexible_answer,
            "flexible_extract": self.flexible_extract,
        }


def cut_at_until(text: str, until: Sequence[str]) -> str:
    """The response as lm-eval's generate_until returns it: cut before each stop string, in turn."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


def regex_filter(text: str, pattern: re.Pattern[str], group_select: int) -> str:
    """lm-eval's RegexFilter on one response."""
    found = pattern.findall(text)
    if not found:
        return FALLBACK
    match = found[group_select]
    if isinstance(match, tuple):
        groups = [group for group in match if group]
        match = groups[0] if groups else FALLBACK
    return str(match).strip()


def majority(filtered: Sequence[str]) -> str:
    """lm-eval's majority_vote then take_first: the most common string, ties to the first seen."""
    return Counter(filtered).most_common(1)[0][0]


def normalised(text: str) -> str:
    """What exact_match compares: the ignored regexes removed in order, lower case."""
    for pattern in IGNORED:
        text = pattern.sub("", text)
    return text.lower().rstrip("\x00")


def exact_match(prediction: str, reference: str) -> bool:
    return normalised(prediction) == normalised(reference)


def reference_target(task: LmEvalTask, solution: str) -> str:
    """The task's doc_to_target for a GSM8K `answer` field (a solution ending `#### N`)."""
    return solution if task.target_is_whole_answer else solution.split("####")[-1].strip()


def score(responses: Sequence[str], solution: str, *, task: str) -> LmEvalScore:
    """lm-eval's strict-match and flexible-extract of a question's responses (one, or the samples of a
    self-consistency run, which are majority-voted as lm-eval's maj@k filters do)."""
    if not responses:
        raise ValueError("score needs at least one response")
    rules = TASKS[task]
    cut = [cut_at_until(response, rules.until) for response in responses]
    strict = majority([regex_filter(text, rules.strict_regex, 0) for text in cut])
    flexible = majority([regex_filter(text, FLEXIBLE_REGEX, -1) for text in cut])
    target = reference_target(rules, solution)
    return LmEvalScore(task, strict, exact_match(strict, target), flexible, exact_match(flexible, target))
