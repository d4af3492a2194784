"""Decoding strategies: voting, reflection bookkeeping, budget forcing on token ids, seeded sampling,
OOM back-off and run metrics on a tiny random model; every strategy on the real SmolLM2;
an embedded end-to-end run through the CLI to the leaderboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from jobs import eval as eval_job
from jobs.data.question import Question
from jobs.errors import FatalJobError
from jobs.generation.engine import generate_batch, generate_samples
from jobs.generation.rows import Generation, Sampling, encode_prompt, eos_token_ids
from jobs.models.loading import LoadedModel, load_model
from jobs.resources import backoff
from jobs.scoring.metrics import reasoning_efficiency, run_metrics
from jobs.scoring.records import PredictionRecord
from jobs.scoring.repetition import has_repetition_loop
from jobs.scoring.voting import majority_vote
from jobs.specs import (
    BudgetForcingParams,
    DatasetSpec,
    EvalJobSpec,
    ModelSpec,
    StrategySpec,
)
from jobs.strategies import budget_forcing
from jobs.strategies.reflection import revision_details
from tests.model_fixtures import SMOLLM2_PACKAGE, TinyModel

REPO = Path(__file__).resolve().parents[1]
CONVERSATIONS = [
    [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many?"}],
    [{"role": "user", "content": "A train goes 40 km per hour for 3 hours. How far does it go?"}],
    [{"role": "user", "content": "Why?"}],
]


@pytest.fixture(scope="module")
def tiny(tiny_model: TinyModel) -> LoadedModel:
    return load_model(ModelSpec(id=str(tiny_model.path)), use_cache=False)


def question(answer: str = "7", complexity: int = 2) -> Question:
    return Question(id="q", question="?", answer=answer, solution=f"#### {answer}", complexity=complexity)


def generation(text: str, tokens: int = 10, truncated: bool = False) -> Generation:
    return Generation(text=text, output_tokens=tokens, truncated=truncated, latency_s=0.5, token_ids=tuple(range(tokens)))


def record(correct: bool, tokens: int, complexity: int = 2, **details: object) -> PredictionRecord:
    return PredictionRecord(
        question_id="q", question="?", reference_answer="7", raw_output="", extracted_answer="7" if correct else "1",
        correct=correct, output_tokens=tokens, latency_s=1.0, complexity=complexity, details=dict(details),
    )


# ----------------------------------------------------------------------------- voting, loops, metrics


def test_majority_vote_counts_answers_and_breaks_ties_by_first_appearance() -> None:
    vote = majority_vote(["3", "5", "5", None, "3"])
    assert vote.counts == {"3": 2, "5": 2}
    assert vote.winner == "3" and vote.winner_index == 0  # tie: "3" was voted for first
    assert vote.agreement == pytest.approx(2 / 5)  # samples without an answer count in the denominator
    assert majority_vote(["5", "3", "3"]).winner == "3"
    assert majority_vote(["8", "8", "8", "8", "8"]).agreement == 1.0
    empty = majority_vote([None, None])
    assert (empty.winner, empty.agreement, empty.winner_index, empty.counts) == (None, 0.0, None, {})
    assert majority_vote([None, "4"]).winner_index == 1


def test_repetition_loop_detector() -> None:
    assert has_repetition_loop([7] * 33) and not has_repetition_loop([7] * 32)
    assert has_repetition_loop([1, 2, 3] * 12)  # a 3-token block back to back
    assert has_repetition_loop(list(range(11)) * 4) and not has_repetition_loop(list(range(11)) * 3)
    assert not has_repetition_loop(list(range(500)))


def test_reflection_fix_and_break_bookkeeping() -> None:
    q = question("7")
    final, fixed = revision_details(q, "5", generation("I was wrong.\n#### 7"))
    assert final == "7" and fixed["fixed"] and not fixed["broke"] and fixed["initial_correct"] is False
    final, broke = revision_details(q, "7", generation("Actually\n#### 9"))
    assert final == "9" and broke["broke"] and not broke["fixed"]
    final, kept = revision_details(q, "7", generation("Looks right to me."))  # no number: the first answer stands
    assert final == "7" and kept["revised_answer"] is None and not kept["fixed"] and not kept["broke"]
    metrics = run_metrics([record(True, 10, fixed=True, broke=False), record(False, 10, fixed=False, broke=True), record(True, 10, fixed=False, broke=False)])
    assert (metrics.fixes, metrics.breaks) == (1, 1)


def test_run_metrics_res_median_and_not_applicable_fields() -> None:
    records = [record(True, 100, complexity=4), record(False, 50), record(True, 20, complexity=1, truncated_samples=2, loop_samples=1)]
    assert reasoning_efficiency(records[0]) == pytest.approx(0.04)
    metrics = run_metrics(records)
    assert metrics.res == pytest.approx((0.04 + 0 + 0.05) / 3)
    assert metrics.median_output_tokens == 50
    assert metrics.truncated == 2 and metrics.repetition_loops == 1
    assert metrics.fixes is metrics.breaks is metrics.mean_agreement is metrics.mean_thinking_tokens is None
    split = run_metrics([record(True, 10, thinking_tokens=8, answer_tokens=2, agreement=0.6), record(True, 10, thinking_tokens=4, answer_tokens=6, agreement=1.0)])
    assert (split.mean_thinking_tokens, split.mean_answer_tokens, split.mean_agreement) == (6, 4, pytest.approx(0.8))


# ----------------------------------------------------------------------------- engine, tiny model


def sample(loaded: LoadedModel, seed: int, **options: object) -> list[list[Generation]]:
    settings: dict = {"max_new_tokens": 6, "batch_size": 6, "seed": seed, "sampling": Sampling(n=3, temperature=1.0, top_p=0.95)}
    return generate_samples(loaded, CONVERSATIONS, **{**settings, **options})


def test_sampling_gives_n_rows_per_question_reproducibly_under_a_seed(tiny: LoadedModel) -> None:
    first, again, other = sample(tiny, 1), sample(tiny, 1), sample(tiny, 2)
    assert [len(rows) for rows in first] == [3, 3, 3]
    ids = [[g.token_ids for g in rows] for rows in first]
    assert ids == [[g.token_ids for g in rows] for rows in again]  # same seed, same samples
    assert ids != [[g.token_ids for g in rows] for rows in other]
    assert any(len(set(rows)) > 1 for rows in ids)  # samples of one question differ: they are drawn
    assert all(0 < g.output_tokens <= 6 for rows in first for g in rows)


def test_oom_at_the_batch_boundary_halves_the_batch_instead_of_failing(tiny: LoadedModel) -> None:
    """CPU runs cannot exhaust CUDA memory, so the test-only hook jobs.resources.backoff.before_batch raises
    torch.cuda.OutOfMemoryError for any batch of more than one prompt, as a too-large batch would."""
    seen: list[int] = []

    def fail_big(rows: list[int]) -> None:
        seen.append(len(rows))
        if len(rows) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    expected = generate_batch(tiny, CONVERSATIONS, max_new_tokens=6, batch_size=1, seed=0)
    backoff.before_batch = fail_big
    try:
        got = generate_batch(tiny, CONVERSATIONS, max_new_tokens=6, batch_size=4, seed=0)
        assert seen == [3, 2, 1, 1, 1]  # the batch of 4 (3 prompts) fails, so does 2; at 1 it runs...
    finally:
        backoff.before_batch = None
    assert [g.token_ids for g in got] == [g.token_ids for g in expected]  # ...every question still answered


def test_oom_at_batch_size_one_is_fatal(tiny: LoadedModel) -> None:
    """Injected OOM via the test-only hook (see above): nothing smaller is left to try."""
    def always(rows: list[int]) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    backoff.before_batch = always
    try:
        with pytest.raises(FatalJobError, match="out of memory at batch size 1"):
            generate_batch(tiny, CONVERSATIONS, max_new_tokens=4, batch_size=8, seed=0)
    finally:
        backoff.before_batch = None


def test_continuous_batching_engine_matches_the_batched_engine_when_greedy(tiny: LoadedModel, tiny_model: TinyModel) -> None:
    """bench.continuous (rows refilled as others finish) gives the batched engine's greedy ids, EOS rows included."""
    from bench.continuous import generate_samples_continuous

    convs = [*CONVERSATIONS, tiny_model.probe]
    batched = generate_samples(tiny, convs, max_new_tokens=8, batch_size=8, seed=0)
    refilled = generate_samples_continuous(tiny, convs, max_new_tokens=8, seed=0)
    assert [[g.token_ids for g in r] for r in refilled] == [[g.token_ids for g in r] for r in batched]
    assert refilled[-1][0].output_tokens == tiny_model.eos_at + 1


def greedy_ids(loaded: LoadedModel, ids: list[int], steps: int) -> list[int]:
    """Plain greedy continuation from scratch (no cache handed over), for comparison."""
    new, _ = budget_forcing._continue(loaded, ids, None, steps)
    return new


def test_budget_forcing_inserts_wait_on_the_token_ids_and_reuses_the_cache(tiny: LoadedModel, tiny_model: TinyModel) -> None:
    prompt = encode_prompt(tiny.tokenizer, tiny_model.probe)
    eos = eos_token_ids(tiny)
    wait_ids = tiny.tokenizer("Wait", add_special_tokens=False)["input_ids"]
    params = BudgetForcingParams(max_think_tokens=16, waits=2, wait="Wait", max_answer_tokens=5)
    forced = budget_forcing.force(tiny, prompt, params, "\nFinal answer: ####")

    plain = greedy_ids(tiny, prompt, 16)
    assert plain[tiny_model.eos_at] in eos  # the probe stops early by itself...
    assert forced.wait_positions[0] == tiny_model.eos_at  # ...so its EOS is replaced by the wait string there
    assert forced.thinking[: tiny_model.eos_at] == plain[: tiny_model.eos_at]
    for position in forced.wait_positions:
        assert forced.thinking[position : position + len(wait_ids)] == wait_ids[: params.max_think_tokens - position]
    assert 1 <= forced.waits_used <= params.waits
    assert not eos & set(forced.thinking)  # no EOS survives inside the thinking phase
    assert len(forced.thinking) <= params.max_think_tokens
    assert forced.answer_prefix == tiny.tokenizer("\nFinal answer: ####", add_special_tokens=False)["input_ids"]
    assert 0 < len(forced.answer) <= params.max_answer_tokens
    # The continuation that reused the cache equals a fresh greedy run over the whole prefix.
    prefix = forced.prompt + forced.thinking + forced.answer_prefix
    assert forced.answer == greedy_ids(tiny, prefix, params.max_answer_tokens)


def test_budget_forcing_caps_thinking_and_answer_tokens(tiny: LoadedModel, tiny_model: TinyModel) -> None:
    prompt = encode_prompt(tiny.tokenizer, tiny_model.probe)
    # A cap below the model's own stop: thinking is cut at the cap, no wait is spent.
    capped = budget_forcing.force(tiny, prompt, BudgetForcingParams(max_think_tokens=tiny_model.eos_at, waits=2, max_answer_tokens=2), "####")
    assert len(capped.thinking) == tiny_model.eos_at and capped.think_capped and capped.waits_used == 0
    assert len(capped.answer) <= 2
    # waits=0: the model's own stop ends thinking; its EOS is not part of the thinking tokens.
    stopped = budget_forcing.force(tiny, prompt, BudgetForcingParams(max_think_tokens=50, waits=0, max_answer_tokens=3), "####")
    assert len(stopped.thinking) == tiny_model.eos_at and not stopped.think_capped and stopped.wait_positions == []
    # A wait that does not fit in the budget is cut to the remaining room.
    tight = budget_forcing.force(tiny, prompt, BudgetForcingParams(max_think_tokens=tiny_model.eos_at + 1, waits=1, wait="Wait Wait Wait", max_answer_tokens=1), "####")
    assert len(tight.thinking) == tiny_model.eos_at + 1 and tight.waits_used == 1 and tight.think_capped


# ----------------------------------------------------------------------------- every strategy on SmolLM2


def smol_spec(strategy: StrategySpec, **options: object) -> EvalJobSpec:
    settings: dict = {"max_new_tokens": 24, "batch_size": 8, "seed": 5, **options}
    return EvalJobSpec(
        model=ModelSpec(package=SMOLLM2_PACKAGE), dataset=DatasetSpec(name="synthetic", n=2, complexity=(1, 2), seed=0),
        strategy=strategy, **settings,
    )


SC = {"n": 3, "temperature": 0.8}


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(name="self_consistency", params=SC),
        StrategySpec(name="structured_sc", params=SC),
        StrategySpec(name="reflection"),
        StrategySpec(name="sc_reflect", params={**SC, "agreement_threshold": 1.0}),
        StrategySpec(name="budget_forcing", params={"max_think_tokens": 20, "waits": 1, "max_answer_tokens": 6}),
    ],
    ids=lambda s: s.name,
)
def test_each_strategy_runs_on_smollm2(smollm2: LoadedModel, strategy: StrategySpec) -> None:
    outcome = eval_job.run(smol_spec(strategy))
    assert outcome.n == 2 and outcome.metrics is not None
    for p in outcome.predictions:
        d = p.details
        assert d["strategy"] == strategy.name
        if "votes" in d:  # the self-consistency family: every sample and the vote are recorded
            assert len(d["samples"]) == 3 and sum(d["votes"].values()) == sum(s["answer"] is not None for s in d["samples"])
            assert d["agreement"] == majority_vote([s["answer"] for s in d["samples"]]).agreement
            assert p.output_tokens >= sum(s["output_tokens"] for s in d["samples"])
        if strategy.name in ("reflection", "sc_reflect"):
            assert "initial_answer" in d and "revised_output" in d  # agreement < 1.0 always reflects: 3 samples rarely agree
            assert d["fixed"] == (not d["initial_correct"] and p.correct) and d["broke"] == (d["initial_correct"] and not p.correct)
        if strategy.name == "budget_forcing":
            assert d["thinking_tokens"] <= 20 and d["answer_tokens"] <= 6
            assert p.output_tokens == d["thinking_tokens"] + d["answer_tokens"]
    if strategy.name in ("reflection",):
        assert outcome.metrics.fixes is not None
    if "votes" in outcome.predictions[0].details:
        assert outcome.metrics.mean_agreement is not None


def test_sampled_job_twice_gives_identical_outputs_on_smollm2(smollm2: LoadedModel) -> None:
    spec = smol_spec(StrategySpec(name="self_consistency", params=SC), max_new_tokens=16)
    first, second = eval_job.run(spec), eval_job.run(spec)
    assert [p.details["samples"] for p in first.predictions] == [p.details["samples"] for p in second.predictions]
    texts = [s["text"] for p in first.predictions for s in p.details["samples"]]
    assert len(set(texts)) > 1


# ----------------------------------------------------------------------------- CLI: submit to leaderboard, bad input


def embedded_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_strategies_end_to_end_to_the_leaderboard(tmp_path: Path, tiny_model: TinyModel) -> None:
    sweep = {
        "name": "strategies", "seed": 1, "model": {"id": str(tiny_model.path), "name": "tiny"},
        "dataset": {"name": "synthetic", "n": 2, "complexity": [1, 2]},
        "eval": {
            "strategies": [
                {"self_consistency": {"n": 2}}, "reflection",
                {"budget_forcing": {"max_think_tokens": 6, "waits": 1, "max_answer_tokens": 3}},
            ],
            "max_new_tokens": 6, "batch_size": 4, "prompts": {"reflection": {"review": "Check it. End with #### <number>."}},
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    submitted = embedded_cli("submit", str(path), cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    board = embedded_cli("leaderboard", "--format", "json", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    runs = {r["strategy"].split("(")[0]: r for r in json.loads(board.stdout)}
    assert set(runs) == {"self_consistency", "reflection", "budget_forcing"}
    for run in runs.values():
        assert run["median_output_tokens"] > 0 and run["res"] >= 0 and run["mean_latency_s"] > 0
        assert run["truncated"] >= 0 and run["repetition_loops"] >= 0
    assert runs["self_consistency"]["mean_agreement"] is not None and runs["self_consistency"]["fixes"] is None
    assert runs["reflection"]["fixes"] is not None and runs["reflection"]["breaks"] is not None
    assert runs["budget_forcing"]["mean_thinking_tokens"] <= 6 and runs["budget_forcing"]["mean_answer_tokens"] <= 3
    markdown = embedded_cli("leaderboard", "--format", "md", cwd=tmp_path)
    assert "RES" in markdown.stdout and "fix/break" in markdown.stdout


def test_bad_strategy_params_exit_2_naming_each_field(tmp_path: Path) -> None:
    sweep = {
        "name": "bad", "model": {"package": SMOLLM2_PACKAGE}, "dataset": {"name": "synthetic", "n": 2},
        "eval": {"strategies": [
            {"self_consistency": {"n": 0}}, {"structured_sc": {"temperature": -0.5}},
            {"budget_forcing": {"max_think_tokens": 0}}, {"sc_reflect": {"agreement": 0.5}},
        ]},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sweep))
    result = embedded_cli("submit", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    for field in ("eval.strategies.0.n", "eval.strategies.1.temperature", "eval.strategies.2.max_think_tokens", "eval.strategies.3.agreement"):
        assert field in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "reasonfleet.db").exists()  # nothing written


def test_budget_forcing_on_smollm2_token_ids(smollm2: LoadedModel) -> None:
    """A question SmolLM2 answers in a few tokens, so it stops early by itself and gets its waits."""
    prompt = encode_prompt(smollm2.tokenizer, [{"role": "user", "content": "What is 2 + 3? Reply with the number only."}])
    eos = eos_token_ids(smollm2)
    plain = greedy_ids(smollm2, prompt, 24)
    stop = next(i for i, t in enumerate(plain) if t in eos)
    params = BudgetForcingParams(max_think_tokens=24, waits=2, wait="Wait", max_answer_tokens=4)
    forced = budget_forcing.force(smollm2, prompt, params, "\nFinal answer: ####")
    wait_ids = smollm2.tokenizer("Wait", add_special_tokens=False)["input_ids"]
    assert forced.thinking[:stop] == plain[:stop] and forced.wait_positions[0] == stop
    assert all(forced.thinking[p : p + len(wait_ids)] == wait_ids[: params.max_think_tokens - p] for p in forced.wait_positions)
    assert not eos & set(forced.thinking) and len(forced.thinking) <= 24 and len(forced.answer) <= 4
    assert forced.answer == greedy_ids(smollm2, forced.prompt + forced.thinking + forced.answer_prefix, 4)
