"""The refilled engine (jobs.generation.refill) on the tiny random model, CPU: it generates what the
batched engine generates, refills slots as rows end, and is reproducible under a seed.
Its CUDA-graph decode is exercised by bench/eval_throughput.py on a GPU (CI has none)."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from jobs.data.synthetic import generate
from jobs.generation.engine import generate_samples
from jobs.generation.refill import generate_samples_refill
from jobs.generation.rows import Sampling
from jobs.generation.slot_cache import PACKED_DECODE, packed_decode_attention
from jobs.models.loading import load_model
from jobs.specs import ModelSpec


@pytest.fixture(scope="module")
def loaded(tiny_model):  # type: ignore[no-untyped-def]
    return load_model(ModelSpec(id=str(tiny_model.path)), device="cpu")


def conversations(count: int, seed: int = 2) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": q.question}] for q in generate(count, complexity=(1, 3), seed=seed)]


def test_greedy_refill_generates_what_the_batched_engine_generates(loaded, tiny_model) -> None:  # type: ignore[no-untyped-def]
    convs = [tiny_model.probe] + conversations(6)  # the probe ends at EOS early, freeing its slot
    stats: dict[str, int] = {}
    batched = generate_samples(loaded, convs, max_new_tokens=16, batch_size=16, seed=0)
    refilled = generate_samples_refill(loaded, convs, max_new_tokens=16, slots=2, seed=0, stats=stats)

    assert [[g.token_ids for g in rows] for rows in refilled] == [[g.token_ids for g in rows] for rows in batched]
    assert [[(g.output_tokens, g.truncated, g.text) for g in rows] for rows in refilled] == [
        [(g.output_tokens, g.truncated, g.text) for g in rows] for rows in batched
    ]
    probe = refilled[0][0]
    assert probe.output_tokens == tiny_model.eos_at + 1 and not probe.truncated  # ended at its EOS, which is counted
    assert 1 <= stats["prefills"] <= len(convs)  # prefill passes: several prompts may share one

    roomy: dict[str, int] = {}
    all_at_once = generate_samples_refill(loaded, convs, max_new_tokens=16, slots=16, seed=0, stats=roomy)
    assert roomy["prefills"] == 1  # every prompt left-padded into one pass
    assert [[g.token_ids for g in rows] for rows in all_at_once] == [[g.token_ids for g in rows] for rows in batched]
    # Two slots: the steps are the rows' own lengths packed two at a time, not batches padded to their longest row.
    tokens = [g.output_tokens for rows in refilled for g in rows]
    assert stats["steps"] < sum(tokens)
    assert stats["steps"] >= (sum(tokens) - len(tokens)) // 2  # each row's first token comes from its prefill


def test_sampled_refill_is_reproducible_and_returns_n_samples(loaded) -> None:  # type: ignore[no-untyped-def]
    convs = conversations(5, seed=4)
    sampling = Sampling(n=3, temperature=0.9, top_p=0.9)
    first = generate_samples_refill(loaded, convs, max_new_tokens=12, slots=4, seed=11, sampling=sampling)
    again = generate_samples_refill(loaded, convs, max_new_tokens=12, slots=4, seed=11, sampling=sampling)
    other = generate_samples_refill(loaded, convs, max_new_tokens=12, slots=4, seed=12, sampling=sampling)

    ids = [[g.token_ids for g in rows] for rows in first]
    assert ids == [[g.token_ids for g in rows] for rows in again]
    assert ids != [[g.token_ids for g in rows] for rows in other]
    assert all(len(rows) == 3 for rows in first)
    assert all(1 <= g.output_tokens <= 12 for rows in first for g in rows)
    assert any(len(set(rows)) > 1 for rows in ids)  # samples of a question differ


def test_one_token_budget_ends_every_row_at_its_first_token(loaded) -> None:  # type: ignore[no-untyped-def]
    convs = conversations(3)
    batched = generate_samples(loaded, convs, max_new_tokens=1, batch_size=8, seed=0)
    refilled = generate_samples_refill(loaded, convs, max_new_tokens=1, slots=1, seed=0)
    assert [[g.token_ids for g in r] for r in refilled] == [[g.token_ids for g in r] for r in batched]
    assert all(g.output_tokens == 1 for rows in refilled for g in rows)


def test_hook_sees_each_slots_question_and_generated_count(loaded) -> None:  # type: ignore[no-untyped-def]
    """A hook that allows EOS only at a per-question step ends every row exactly there, through refills."""
    import torch

    convs = conversations(5)
    stops = torch.tensor([3, 7, 1, 9, 5])
    eos = loaded.tokenizer.eos_token_id

    def hook(questions: torch.Tensor, generated: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        at_stop = (stops[questions] == generated + 1)[:, None]
        is_eos = torch.zeros_like(scores, dtype=torch.bool)
        is_eos[:, eos] = True
        return scores.masked_fill(is_eos != at_stop, float("-inf"))

    out = generate_samples_refill(loaded, convs, max_new_tokens=8, slots=3, seed=0, sampling=Sampling(n=2, temperature=1.0), hook=hook)
    for question, rows in enumerate(out):
        expected = min(int(stops[question]), 8)
        for g in rows:
            assert g.output_tokens == expected
            assert (g.token_ids[-1] == eos) == (stops[question] <= 8)
            assert g.truncated == (stops[question] > 8)


def test_eval_jobs_give_the_batched_engines_greedy_output_on_the_refill_engine(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from jobs import eval as eval_job
    from jobs.models.loading import clear_cache
    from jobs.specs import DatasetSpec, EvalJobSpec, StrategySpec

    def spec(engine: str, strategy: StrategySpec) -> EvalJobSpec:
        return EvalJobSpec(
            model=ModelSpec(id=str(tiny_model.path)), dataset=DatasetSpec(name="synthetic", n=5, complexity=(1, 2), seed=0),
            strategy=strategy, max_new_tokens=12, batch_size=3, seed=0, engine=engine,
        )

    greedy = StrategySpec(name="greedy")
    assert spec("batched", greedy).model_dump(mode="json")["engine"] == "batched"

    batched = eval_job.run(spec("batched", greedy))
    calls: list[tuple[int, int]] = []
    refilled = eval_job.run(spec("refill", greedy), progress=lambda done, total: calls.append((done, total)))
    assert [p.raw_output for p in refilled.predictions] == [p.raw_output for p in batched.predictions]
    assert [p.output_tokens for p in refilled.predictions] == [p.output_tokens for p in batched.predictions]
    assert calls == [(k, 5) for k in range(1, 6)]  # one call per finished question

    sc = StrategySpec(name="self_consistency", params={"n": 3, "temperature": 0.8})
    first, again = eval_job.run(spec("refill", sc)), eval_job.run(spec("refill", sc))
    assert [p.details["samples"] for p in first.predictions] == [p.details["samples"] for p in again.predictions]
    assert all(len(p.details["samples"]) == 3 for p in first.predictions)
    clear_cache()


def test_refill_engine_refuses_what_only_the_batched_engine_does(loaded) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="stop strings"):
        generate_samples(loaded, conversations(2), max_new_tokens=4, batch_size=2, seed=0, stop_strings=["####"], engine="refill")


def test_packed_decode_attention_equals_sdpa_with_repeated_heads() -> None:
    """One query token per row, 6 query heads on 2 key/value heads, rows seeing different lengths."""
    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 3, True
    query, key, value = torch.randn(4, 6, 1, 16), torch.randn(4, 2, 10, 16), torch.randn(4, 2, 10, 16)
    mask = (torch.arange(10)[None, :] < torch.tensor([3, 10, 1, 7])[:, None])[:, None, None, :]

    packed, _ = packed_decode_attention(module, query, key, value, mask, scaling=0.25)
    repeated, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)

    assert packed.shape == repeated.shape == (4, 1, 6, 16)
    torch.testing.assert_close(packed, repeated)
    # Row 2 sees position 0 only: its output is value[2, kv head] at position 0, for each head of the group.
    torch.testing.assert_close(packed[2, 0], value[2, :, 0].repeat_interleave(3, dim=0))


def test_refill_leaves_the_models_attention_setting_as_it_found_it(loaded) -> None:  # type: ignore[no-untyped-def]
    before = loaded.model.config._attn_implementation
    generate_samples_refill(loaded, conversations(2), max_new_tokens=4, slots=2, seed=0)
    assert loaded.model.config._attn_implementation == before != PACKED_DECODE


def test_oom_mid_run_halves_the_slots_and_keeps_finished_questions(loaded) -> None:  # type: ignore[no-untyped-def]
    """CPU runs cannot exhaust CUDA memory, so the test-only hook jobs.resources.backoff.before_batch raises
    torch.cuda.OutOfMemoryError at the second admission, after some questions have finished."""
    from jobs.resources import backoff

    convs = conversations(6, seed=5)
    expected = generate_samples(loaded, convs, max_new_tokens=8, batch_size=8, seed=0)
    admissions: list[list[int]] = []

    def fail_second(admitted: list[int]) -> None:
        admissions.append(list(admitted))
        if len(admissions) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    stats: dict[str, int] = {}
    done: list[int] = []
    backoff.before_batch = fail_second
    try:
        got = generate_samples_refill(loaded, convs, max_new_tokens=8, slots=4, seed=0, stats=stats, progress=lambda d, t: done.append(d))
    finally:
        backoff.before_batch = None
    assert len(admissions[0]) == 4 and stats["slots"] == 2
    finished_first = set(admissions[0]) - {q for later in admissions[2:] for q in later}
    assert finished_first, "some questions of the first admission finished before the injected OOM and were kept"
    assert [[g.token_ids for g in rows] for rows in got] == [[g.token_ids for g in rows] for rows in expected]
    assert done == list(range(1, 7))


def test_oom_with_slots_for_one_question_is_fatal(loaded) -> None:  # type: ignore[no-untyped-def]
    """Injected OOM via the test-only hook (see above): nothing smaller than n slots is left to try."""
    from jobs.errors import FatalJobError
    from jobs.resources import backoff

    def always(admitted: list[int]) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    backoff.before_batch = always
    try:
        with pytest.raises(FatalJobError, match="out of memory with 2 slots"):
            generate_samples_refill(loaded, conversations(3), max_new_tokens=4, slots=8, seed=0, sampling=Sampling(n=2, temperature=1.0))
    finally:
        backoff.before_batch = None


def test_the_cache_goes_under_the_keyword_the_models_forward_takes() -> None:
    """transformers renamed `past_key_values` to `cache` (the old name warns, and goes at 5.40): the engine passes
    the slot cache under whichever name the model's forward has, so older releases (5.17 on the GPU image) work too."""
    from jobs.generation.rows import cache_argument

    class Older(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, past_key_values: object = None) -> None: ...

    class Newer(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, cache: object = None) -> None: ...

    assert cache_argument(Older()) == "past_key_values"
    assert cache_argument(Newer()) == "cache"
