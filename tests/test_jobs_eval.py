"""Generation engine and eval job: fast on a tiny random model, then on the real SmolLM2 (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from jobs import eval as eval_job
from jobs.data.prompts import build_messages, load_templates
from jobs.data.synthetic import generate
from jobs.generation.engine import generate_batch
from jobs.generation.rows import Generation
from jobs.models.loading import LoadedModel, clear_cache, load_model
from jobs.resources.memory import MemoryTracker
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec
from tests.model_fixtures import SMOLLM2_PACKAGE, TinyModel

QUESTIONS = [
    "Tom has 3 apples. How many?",
    "A much longer question: a train travels 40 km per hour for 3 hours, then 20 km per hour for 2 hours. How far?",
    "Why?",
    "Janet has 16 eggs, eats 3, bakes with 4 and sells the rest for $2 each. How many dollars does she make a day?",
]


@pytest.fixture(scope="module")
def tiny(tiny_model: TinyModel) -> LoadedModel:
    # Outside the cache, so this module's tests never evict the session's SmolLM2.
    return load_model(ModelSpec(id=str(tiny_model.path)), use_cache=False)


def conversations() -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": q}] for q in QUESTIONS]


def run_tiny(loaded: LoadedModel, convs: list[list[dict[str, str]]], **options: object) -> list[Generation]:
    settings: dict = {"max_new_tokens": 12, "batch_size": 2, "seed": 0, **options}
    return generate_batch(loaded, convs, **settings)


# ----------------------------------------------------------------------------- loading, prompts, memory


def test_loaded_tokenizer_pads_left_with_eos(tiny: LoadedModel) -> None:
    assert tiny.tokenizer.padding_side == "left"
    assert tiny.tokenizer.pad_token == tiny.tokenizer.eos_token == "<|im_end|>"
    assert not tiny.model.training
    assert tiny.device == "cpu"


def test_model_cache_keeps_the_last_model(tiny_model: TinyModel) -> None:
    spec = ModelSpec(id=str(tiny_model.path))
    first = load_model(spec)
    assert load_model(spec) is first
    assert load_model(spec, use_cache=False) is not first
    clear_cache()
    assert load_model(spec) is not first
    clear_cache()


def test_package_without_gguf_is_a_clear_error() -> None:
    from jobs.errors import FatalJobError

    with pytest.raises(FatalJobError, match="exactly one .gguf"):
        load_model(ModelSpec(package="jobs"), use_cache=False)
    with pytest.raises(FatalJobError, match="not an installed package"):
        load_model(ModelSpec(package="no_such_package_here"), use_cache=False)


def test_model_sources_resolve_without_loading(tmp_path: Path) -> None:
    import torch

    from jobs.errors import FatalJobError
    from jobs.models.loading import resolve_dtype, resolve_source

    gguf = tmp_path / "model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_source(ModelSpec(path=str(gguf))) == (str(tmp_path), "model.Q4.gguf")
    assert resolve_source(ModelSpec(id="org/name", gguf_file="x.gguf")) == ("org/name", "x.gguf")
    with pytest.raises(FatalJobError, match="not a file"):
        resolve_source(ModelSpec(path=str(tmp_path / "absent.gguf")))
    assert resolve_dtype(ModelSpec(id="m"), "cpu") == torch.float32
    assert resolve_dtype(ModelSpec(id="m"), "cuda:0") == torch.bfloat16
    assert resolve_dtype(ModelSpec(id="m", dtype="float16"), "cpu") == torch.float16


def test_smollm2_package_resolves_to_its_single_gguf() -> None:
    from jobs.models.loading import resolve_source
    from tests.model_fixtures import require_smollm2

    require_smollm2()
    directory, gguf_file = resolve_source(ModelSpec(package=SMOLLM2_PACKAGE))
    assert gguf_file is not None and gguf_file.endswith(".gguf")
    assert (Path(directory) / gguf_file).is_file()


def test_prompt_asks_for_the_final_marker_and_is_overridable() -> None:
    question = generate(1, seed=0)[0]
    messages = build_messages(question)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert question.question in messages[-1]["content"]
    assert "#### <number>" in messages[-1]["content"]
    templates = load_templates({"zero_shot": {"system": ""}, "bare": {"user": "Q: {question}"}})
    assert [m["role"] for m in build_messages(question, "zero_shot", templates)] == ["user"]
    assert build_messages("1+1? {x}", "bare", templates) == [{"role": "user", "content": "Q: 1+1? {x}"}]
    assert [m["role"] for m in build_messages(question, "one_shot")] == ["system", "user", "assistant", "user"]
    with pytest.raises(ValueError, match="question"):
        load_templates({"zero_shot": {"user": "no placeholder"}})
    with pytest.raises(ValueError, match="unknown fields"):
        load_templates({"zero_shot": {"sytem": "typo"}})


def test_memory_tracker_reports_peak_rss_on_cpu() -> None:
    with MemoryTracker("cpu") as memory:
        block = bytearray(64 * 2**20)  # touch 64 MiB so the peak is at least that
        block[:: 4096] = b"x" * len(block[:: 4096])
    assert memory.kind == "rss"
    assert memory.peak_mb >= 64


# ----------------------------------------------------------------------------- generation, tiny model


def test_generation_is_deterministic(tiny: LoadedModel) -> None:
    first = run_tiny(tiny, conversations())
    second = run_tiny(tiny, conversations())
    assert [g.text for g in first] == [g.text for g in second]
    assert [g.token_ids for g in first] == [g.token_ids for g in second]
    assert any(g.text for g in first)


def test_input_order_is_preserved_when_batches_are_sorted_by_length(tiny: LoadedModel) -> None:
    # Batched rows are generated longest prompt first; each must come back at its own index
    # with the text it gets alone.
    batched = run_tiny(tiny, conversations(), batch_size=3)
    alone = [run_tiny(tiny, [c], batch_size=1)[0] for c in conversations()]
    assert [g.token_ids for g in batched] == [g.token_ids for g in alone]
    assert len({g.token_ids for g in alone}) > 1  # distinct prompts, distinct outputs: order is observable


def test_output_tokens_stop_at_eos_inside_a_padded_batch(tiny: LoadedModel, tiny_model: TinyModel) -> None:
    convs = [*conversations(), tiny_model.probe]
    generations = run_tiny(tiny, convs, max_new_tokens=tiny_model.eos_at + 6, batch_size=len(convs))
    probe = generations[-1]
    assert probe.output_tokens == tiny_model.eos_at + 1  # EOS counted, padding after it not
    assert probe.token_ids[-1] == tiny.tokenizer.eos_token_id
    assert probe.truncated is False
    assert "<|im_end|>" not in probe.text
    # The other rows ran on past the probe's EOS without one of their own.
    assert any(g.truncated and g.output_tokens == tiny_model.eos_at + 6 for g in generations[:-1])


def test_truncated_when_max_new_tokens_comes_before_eos(tiny: LoadedModel, tiny_model: TinyModel) -> None:
    (cut,) = run_tiny(tiny, [tiny_model.probe], max_new_tokens=tiny_model.eos_at)
    assert cut.truncated is True
    assert cut.output_tokens == tiny_model.eos_at
    assert tiny.tokenizer.eos_token_id not in cut.token_ids


def test_static_cache_with_padded_prompts_generates_what_the_dynamic_cache_does(tiny: LoadedModel) -> None:
    """CUDA eval jobs default to a static cache with prompts padded to a multiple of 64; in fp32
    its rows, greedy and sampled, are token for token those of the dynamic cache (on a GPU, bf16
    and compiled kernels may flip near-tied tokens of a random model)."""
    from jobs.generation.batched import STATIC_PAD
    from jobs.generation.engine import generate_samples
    from jobs.generation.rows import Sampling

    convs = [[{"role": "user", "content": q.question}] for q in generate(6, complexity=(1, 4), seed=5)]
    for sampling in (Sampling(), Sampling(n=2, temperature=0.7)):
        static = generate_samples(tiny, convs, max_new_tokens=12, batch_size=12, seed=0, sampling=sampling,
                                  cache_implementation="static", pad_to_multiple_of=STATIC_PAD)
        dynamic = generate_samples(tiny, convs, max_new_tokens=12, batch_size=12, seed=0, sampling=sampling)
        assert [[g.token_ids for g in r] for r in static] == [[g.token_ids for g in r] for r in dynamic]


def test_progress_is_reported_after_each_batch(tiny: LoadedModel) -> None:
    calls: list[tuple[int, int]] = []
    run_tiny(tiny, conversations()[:3], max_new_tokens=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 3), (3, 3)]


def test_latency_is_the_batch_wall_time(tiny: LoadedModel) -> None:
    generations = run_tiny(tiny, conversations(), batch_size=2, max_new_tokens=4)
    # Longest prompts first: rows 1 and 3 share the first batch, rows 0 and 2 the second.
    assert generations[1].latency_s == generations[3].latency_s > 0
    assert generations[0].latency_s == generations[2].latency_s > 0


# ----------------------------------------------------------------------------- eval job


def eval_spec(model: ModelSpec, *, n: int = 4, max_new_tokens: int = 96, strategy: str = "greedy") -> EvalJobSpec:
    return EvalJobSpec(
        model=model,
        dataset=DatasetSpec(name="synthetic", n=n, complexity=(1, 2), seed=0),
        strategy=StrategySpec(name=strategy),
        max_new_tokens=max_new_tokens,
        batch_size=4,
        seed=0,
    )


def assert_consistent(outcome: eval_job.EvalOutcome, n: int) -> None:
    assert outcome.n == len(outcome.predictions) == n
    assert outcome.correct == sum(p.correct for p in outcome.predictions)
    assert outcome.pass_at_1 == outcome.correct / n
    assert outcome.ci_low <= outcome.pass_at_1 <= outcome.ci_high
    assert sum(p.output_tokens for p in outcome.predictions) > 0
    assert outcome.tokens_per_s > 0 and outcome.wall_s > 0
    assert outcome.peak_memory_mb > 0 and outcome.memory_kind == "rss" and outcome.device == "cpu"
    questions = generate(n, complexity=(1, 2), seed=0)
    assert [p.question_id for p in outcome.predictions] == [q.id for q in questions]
    assert [p.reference_answer for p in outcome.predictions] == [q.answer for q in questions]


def test_eval_run_on_tiny_model(tiny_model: TinyModel) -> None:
    calls: list[tuple[int, int]] = []
    spec = eval_spec(ModelSpec(id=str(tiny_model.path)), n=5, max_new_tokens=6)
    outcome = eval_job.run(spec, progress=lambda done, total: calls.append((done, total)))
    assert_consistent(outcome, 5)
    assert calls == [(k, 5) for k in range(1, 6)]  # the default (refill) engine reports each finished question
    assert all(p.output_tokens <= 6 for p in outcome.predictions)
    clear_cache()


def test_every_implemented_strategy_is_registered_and_others_are_refused() -> None:
    from jobs.specs import STRATEGY_NAMES as IMPLEMENTED_STRATEGIES
    from jobs.strategies import REGISTRY, get_strategy

    assert set(REGISTRY) == set(IMPLEMENTED_STRATEGIES)
    assert all(callable(get_strategy(name)) for name in IMPLEMENTED_STRATEGIES)
    with pytest.raises(NotImplementedError, match="strategy 'beam_search' is not implemented yet"):
        get_strategy("beam_search")


# ----------------------------------------------------------------------------- the real SmolLM2


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for this test, then back: beside a busy process, torch's thread per
    core waits in OpenMP barriers for a descheduled sibling (this test took 94 s there with 2
    threads, against 14 s idle; at load 13 it ran past the 600 s timeout)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_smollm2_greedy_eval_is_consistent_and_repeatable(smollm2: LoadedModel, one_torch_thread: None) -> None:
    # 32 new tokens: every row still ends in a number (extracted), and repetition is checked token for token.
    spec = eval_spec(ModelSpec(package=SMOLLM2_PACKAGE), n=4, max_new_tokens=32)
    first = eval_job.run(spec)
    second = eval_job.run(spec)
    assert_consistent(first, 4)
    # Everything but wall-clock latency must repeat exactly.
    assert [replace(p, latency_s=0.0) for p in first.predictions] == [
        replace(p, latency_s=0.0) for p in second.predictions
    ]
    assert any(p.extracted_answer is not None for p in first.predictions)
    print(f"\nSmolLM2 greedy pass@1 on {first.n} synthetic: {first.pass_at_1:.2f} "
          f"({first.correct}/{first.n}), {first.tokens_per_s:.1f} tok/s, {first.peak_memory_mb:.0f} MB rss")
    for p in first.predictions:
        print(f"  {p.question_id}: ref={p.reference_answer} got={p.extracted_answer} tokens={p.output_tokens} "
              f"truncated={p.truncated}")


def test_per_call_logits_processors_see_the_padded_prompt_length(tiny: LoadedModel) -> None:
    """The engine's processors hook (used by the throughput bench to force EOS) gets each batch's prompt length."""
    from transformers import LogitsProcessorList

    from jobs.generation.engine import generate_samples
    from jobs.generation.rows import GREEDY

    eos = tiny.tokenizer.eos_token_id
    seen: list[int] = []

    def force_eos_at_step_3(prompt_length: int) -> LogitsProcessorList:
        seen.append(prompt_length)

        def processor(input_ids, scores):  # type: ignore[no-untyped-def]
            if input_ids.shape[1] - prompt_length == 2:  # the 3rd generated token
                scores[:, :] = float("-inf")
                scores[:, eos] = 0.0
            return scores

        return LogitsProcessorList([processor])

    convs = conversations()
    rows = generate_samples(tiny, convs, max_new_tokens=10, batch_size=2, seed=0, sampling=GREEDY, processors=force_eos_at_step_3)
    assert len(seen) == 2 and all(length > 0 for length in seen)
    assert [g.output_tokens for r in rows for g in r] == [3] * len(convs)
    assert all(g.token_ids[-1] == eos and not g.truncated for r in rows for g in r)
