"""Teacher-forced perplexity of a run's model on the questions' reference solutions.

The Micro-Reasoner check that 4-bit weights (or an adapter) do not degrade language
modelling: each question is prompted as the eval prompts it (the same chat template and
thinking mode) and the model is scored on the reference solution as the assistant's
turn. GSM8K's calculator annotations (`<<48/2=24>>`) are removed first: they are
bookkeeping for the dataset, not text a model is meant to write. The `#### N` line stays.

perplexity = exp(Σ NLL of the solution tokens / Σ solution tokens), over all questions
(a token-weighted corpus perplexity, not a mean of per-question perplexities). One forward
pass per question, `batch_size` questions at a time, right-padded.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from jobs.data.prompts import build_messages
from jobs.data.question import Question
from jobs.generation.rows import encode_prompt
from jobs.models.loading import LoadedModel

ANNOTATION = re.compile(r"<<[^<>]*>>")


def solution_text(question: Question) -> str:
    """The reference solution as a model would write it: without GSM8K's `<<…>>` annotations."""
    return ANNOTATION.sub("", question.solution).strip()


def perplexity(loaded: LoadedModel, questions: list[Question], *, batch_size: int) -> float:
    """The corpus perplexity of `loaded` on the questions' reference solutions."""
    rows = [_row(loaded.tokenizer, q) for q in questions]
    rows = [r for r in rows if r[1]]
    if not rows:
        raise ValueError("no question has a reference solution to score")
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]) - len(rows[i][1]))
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(order), max(1, batch_size)):
        batch = [rows[i] for i in order[start : start + batch_size]]
        nll, tokens = _batch_nll(loaded, batch)
        total_nll, total_tokens = total_nll + nll, total_tokens + tokens
    return math.exp(total_nll / total_tokens)


def _row(tokenizer: Any, question: Question) -> tuple[list[int], list[int]]:
    prompt = encode_prompt(tokenizer, build_messages(question))
    target: list[int] = tokenizer(solution_text(question), add_special_tokens=False)["input_ids"]
    return prompt, target


def _batch_nll(loaded: LoadedModel, batch: list[tuple[list[int], list[int]]]) -> tuple[float, int]:
    """Summed negative log-likelihood of the targets given their prompts, and the number of target tokens."""
    width = max(len(p) + len(t) for p, t in batch)
    pad = loaded.tokenizer.pad_token_id or 0
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (prompt, target) in enumerate(batch):
        length = len(prompt) + len(target)
        ids[row, :length] = torch.tensor(prompt + target)
        mask[row, :length] = 1
        labels[row, len(prompt) : length] = torch.tensor(target)
    device = loaded.device
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    # Position i predicts token i + 1.
    predicted, expected = logits[:, :-1].float(), labels[:, 1:].to(device)
    nll = torch.nn.functional.cross_entropy(predicted.transpose(1, 2), expected, ignore_index=-100, reduction="sum")
    return float(nll), int((expected != -100).sum())
