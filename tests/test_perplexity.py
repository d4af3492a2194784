"""Perplexity on the reference solutions: the batched, padded computation against a plain one-question-at-a-time
one, and the whole path from a sweep's `eval.perplexity` to the leaderboard JSON and `show` (embedded mode,
a tiny random model)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from jobs.data.prompts import build_messages
from jobs.data.synthetic import generate
from jobs.generation.rows import encode_prompt
from jobs.models.loading import LoadedModel, load_model
from jobs.scoring.perplexity import perplexity, solution_text
from jobs.specs import ModelSpec
from tests.model_fixtures import TinyModel

REPO = Path(__file__).resolve().parents[1]


def plain_perplexity(loaded: LoadedModel, questions: list) -> float:  # type: ignore[type-arg]
    """One unpadded forward pass per question, log-softmax by hand."""
    nll, count = 0.0, 0
    for q in questions:
        prompt = encode_prompt(loaded.tokenizer, build_messages(q))
        target = loaded.tokenizer(solution_text(q), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = loaded.model(torch.tensor([prompt + target])).logits[0].float()
        logprobs = logits.log_softmax(-1)
        for offset, token in enumerate(target):
            nll -= float(logprobs[len(prompt) + offset - 1, token])
        count += len(target)
    return math.exp(nll / count)


def test_batched_perplexity_equals_one_question_at_a_time(tiny_model: TinyModel) -> None:
    loaded = load_model(ModelSpec(id=str(tiny_model.path)), device="cpu", use_cache=False)
    questions = generate(7, complexity=(1, 4), seed=3)
    expected = plain_perplexity(loaded, questions)
    for batch_size in (1, 3, 8):
        assert perplexity(loaded, questions, batch_size=batch_size) == pytest.approx(expected, rel=1e-4)
    # A random model over a ~400-token vocabulary: near-uniform, so near the vocabulary size.
    assert 50 < expected < 5 * len(loaded.tokenizer)


def test_gsm8k_annotations_are_not_scored() -> None:
    question = generate(1, complexity=(2, 2), seed=0)[0]
    question = type(question)(**{**question.__dict__, "solution": "48/2 = <<48/2=24>>24\n#### 24"})
    assert solution_text(question) == "48/2 = 24\n#### 24"


def submit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_perplexity_and_what_ran_reach_the_leaderboard_and_show(tiny_model: TinyModel, tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(f"""
        name: ppl
        model: {{id: "{tiny_model.path}", name: Tiny}}
        dataset: {{name: synthetic, n: 4, complexity: [1, 2]}}
        eval: {{strategies: [greedy], max_new_tokens: 8, batch_size: 4, perplexity: true}}
    """))
    ran = submit(tmp_path, "submit", "sweep.yaml")
    assert ran.returncode == 0, ran.stderr
    board = submit(tmp_path, "leaderboard", "--format", "json")
    row = json.loads(board.stdout)[0]
    assert row["perplexity"] > 1 and math.isfinite(row["perplexity"])
    assert row["run_info"]["quantization"] == "none" and row["run_info"]["thinking"]["mode"] == "auto"
    shown = submit(tmp_path, "show", row["job_id"])
    assert shown.returncode == 0, shown.stderr
    assert f"perplexity on the reference solutions: {row['perplexity']:.3f}" in shown.stdout
    assert "ran: weights none (compute float32) on cpu" in shown.stdout
