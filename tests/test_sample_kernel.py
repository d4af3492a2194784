"""The refill engine's fused temperature draw (jobs.generation.sample_kernel), on the CPU.

CI has no GPU: the Triton kernels run under Triton's interpreter in a subprocess (as in
tests/test_decode_attention.py). They must draw from softmax(logits / T), never a token of
probability 0, find the token in any slice of a row longer than one program's, and depend on nothing
but the uniforms and the logits; the refill engine that uses them must give the same samples for the
same seed.
The CUDA build of the same kernel runs in the device runs under bench/results/.
"""

from __future__ import annotations

import pytest

from tests.test_decode_attention import interpreted, needs_triton


@needs_triton
def test_draws_follow_the_softmax_of_logits_over_temperature() -> None:
    """400 rows of the same 6 logits at T = 0.7, seeded uniforms: the counts against softmax(logits / T),
    Pearson's chi-square (5 degrees of freedom; 25 is beyond the 99.99th percentile). A -inf logit is never
    drawn, not even by a uniform of 0 or just below 1. (The interpreter runs a program in ~40 ms, hence so few
    rows; bench/decode_attention_check.py draws 100,000 on CUDA.)"""
    result = interpreted("""
        import json, torch
        from jobs.generation.sample_kernel import sample_softmax
        row = torch.tensor([float("-inf"), 1.0, 0.2, -0.5, 2.0, 0.0, 1.5, float("-inf")])
        logits = row.repeat(400, 1).to(torch.bfloat16)
        uniform = torch.rand(400, generator=torch.Generator().manual_seed(0))
        uniform[:2] = torch.tensor([0.0, 1.0 - 2**-24])
        drawn = sample_softmax(logits, 0.7, uniform, block=8)
        counts = torch.bincount(drawn, minlength=8).tolist()
        expected = (torch.softmax(logits[0].float() / 0.7, -1) * 400).tolist()
        print(json.dumps({"counts": counts, "expected": expected, "ends": drawn[:2].tolist()}))
    """)
    counts, expected = result["counts"], result["expected"]
    assert counts[0] == counts[7] == 0  # -inf
    assert result["ends"] == [1, 6]  # the first and the last token of nonzero probability
    chi_square = sum((c - e) ** 2 / e for c, e in zip(counts[1:7], expected[1:7], strict=True))
    assert chi_square < 25, (counts, expected)


@needs_triton
def test_the_uniform_picks_the_token_where_the_cumulative_probability_passes_it_in_any_slice() -> None:
    """A vocabulary of 40,000 (3 slices of 16,384 logits): three equally likely tokens in three slices, the last
    one the vocabulary's last; uniforms below 1/3, between and above 2/3 pick each in turn. A logit far above the
    rest is drawn wherever it lies (the forced EOS of the benchmark: 1e9)."""
    result = interpreted("""
        import json, torch
        from jobs.generation.sample_kernel import sample_softmax
        vocab = 40_000
        thirds = torch.full((3, vocab), float("-inf"))
        thirds[:, [100, 20_000, vocab - 1]] = 0.5
        picked = sample_softmax(thirds, 0.7, torch.tensor([0.2, 0.5, 0.9])).tolist()
        spikes = torch.randn(4, vocab)
        winners = [7, 16_384, 30_001, vocab - 1]  # first slice, a slice's first logit, last slice, the last logit
        for row, token in enumerate(winners):
            spikes[row, token] = 1e9
        spiked = sample_softmax(spikes.to(torch.bfloat16), 0.7, torch.tensor([0.0, 0.3, 0.6, 0.99])).tolist()
        print(json.dumps({"picked": picked, "spiked": spiked, "winners": winners}))
    """)
    assert result["picked"] == [100, 20_000, 39_999]
    assert result["spiked"] == result["winners"]


@needs_triton
def test_the_draw_is_a_function_of_the_uniforms() -> None:
    result = interpreted("""
        import json, torch
        from jobs.generation.sample_kernel import sample_softmax
        logits = torch.randn(8, 20_000, generator=torch.Generator().manual_seed(1))
        first, other = (torch.rand(8, generator=torch.Generator().manual_seed(s)) for s in (3, 4))
        draws = [sample_softmax(logits, 1.0, u).tolist() for u in (first, first, other)]
        small_blocks = sample_softmax(logits, 1.0, first, block=1024).tolist()
        print(json.dumps({"draws": draws, "small_blocks": small_blocks}))
    """)
    first, again, other = result["draws"]
    assert first == again == result["small_blocks"]  # how the row is cut into programs does not change the draw
    assert first != other


@needs_triton
@pytest.mark.usefixtures("tiny_model")
def test_refill_sampling_with_the_fused_draw_is_reproducible(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """SC@3 at T = 0.8 through 2 slots (reused; masked SDPA, so only the draw runs interpreted): the engine takes
    the fused draw, the same seed gives the same
    samples, another seed other samples; with top_p < 1 it keeps the torch draw (jobs.generation.filters)."""
    result = interpreted(f"""
        import json
        from jobs.data.synthetic import generate
        from jobs.generation.refill import generate_samples_refill, _Engine
        from jobs.generation.rows import Sampling
        from jobs.models.loading import load_model
        from jobs.specs import ModelSpec
        loaded = load_model(ModelSpec(id={str(tiny_model.path)!r}), device="cpu")
        convs = [[{{"role": "user", "content": q.question}}] for q in generate(2, complexity=(1, 3), seed=2)]
        fused = []
        original = _Engine.__init__
        def spy(self, *args, **kwargs):
            original(self, *args, **kwargs)
            fused.append(self.fused_draw)
        _Engine.__init__ = spy
        def run(seed, top_p=1.0):
            rows = generate_samples_refill(loaded, convs, max_new_tokens=6, slots=2, seed=seed,
                                           sampling=Sampling(3, 0.8, top_p), decode_attention="sdpa")
            return [[list(g.token_ids) for g in r] for r in rows]
        print(json.dumps({{"first": run(0), "again": run(0), "other": run(1), "top_p": run(0, 0.9), "fused": fused}}))
    """)
    assert result["fused"] == [True, True, True, False]
    assert result["first"] == result["again"]
    assert result["first"] != result["other"]
    assert all(len(rows) == 3 for rows in result["first"])
