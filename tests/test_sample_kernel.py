"""The refill engine's fused temperature draw (jobs.generation.sample_kernel), on the CPU.

CI has no GPU: the Triton kernel runs under Triton's interpreter in a subprocess (as in
tests/test_decode_attention.py). It must draw from softmax(logits / T), give the lowest id among
tied winners, read rows longer than one program's slice, and depend on nothing but its seed and
the logits; the refill engine that uses it must give the same samples for the same seed.
The CUDA build of the same kernel runs in the device runs under bench/results/.
"""

from __future__ import annotations

import pytest

from tests.test_decode_attention import interpreted, needs_triton


@needs_triton
def test_draws_follow_the_softmax_of_logits_over_temperature() -> None:
    """400 rows of the same 6 logits at T = 0.7: the counts against softmax(logits / T), Pearson's chi-square
    (5 degrees of freedom; 25 is beyond the 99.99th percentile). A -inf logit is never drawn. (The interpreter
    runs a program in ~40 ms, hence so few rows; bench/decode_attention_check.py draws 100,000 on CUDA.)"""
    result = interpreted("""
        import json, torch
        from jobs.generation.sample_kernel import gumbel_argmax
        logits = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0, 1.5, float("-inf")]).repeat(400, 1).to(torch.bfloat16)
        drawn = gumbel_argmax(logits, 0.7, torch.tensor([1234]), block=8)
        counts = torch.bincount(drawn, minlength=7).tolist()
        expected = (torch.softmax(logits[0].float() / 0.7, -1) * 400).tolist()
        print(json.dumps({"counts": counts, "expected": expected}))
    """)
    counts, expected = result["counts"], result["expected"]
    assert counts[6] == 0  # -inf
    chi_square = sum((c - e) ** 2 / e for c, e in zip(counts[:6], expected[:6], strict=True))
    assert chi_square < 25, (counts, expected)


@needs_triton
def test_rows_longer_than_a_slice_and_ties_take_the_lowest_id() -> None:
    """A vocabulary of 40,000 (3 programs' slices of 16,384): a logit far above the rest wins wherever it lies, in the last
    slice too; among tied winners (every other logit -inf) the lowest id is drawn, as torch.argmax would."""
    result = interpreted("""
        import json, torch
        from jobs.generation.sample_kernel import gumbel_argmax
        vocab = 40_000
        logits = torch.randn(4, vocab)
        winners = [7, 16_384, 30_001, 39_999]  # first slice, a slice's first logit, last slice, the last logit
        for row, token in enumerate(winners):
            logits[row, token] = 1e4
        spike = gumbel_argmax(logits, 1.0, torch.tensor([5])).tolist()  # the engine's block: 16,384 a program
        tied = torch.full((2, vocab), float("-inf"))
        tied[:, [20_000, 35_000]] = 1e30  # Gumbel noise cannot separate them in float32
        ties = gumbel_argmax(tied, 1.0, torch.tensor([9])).tolist()
        print(json.dumps({"spike": spike, "winners": winners, "ties": ties}))
    """)
    assert result["spike"] == result["winners"]
    assert result["ties"] == [20_000, 20_000]


@needs_triton
def test_the_draw_is_a_function_of_the_seed() -> None:
    result = interpreted("""
        import json, torch
        from jobs.generation.sample_kernel import gumbel_argmax
        logits = torch.zeros(8, 20_000)  # uniform: every token as likely
        draws = [gumbel_argmax(logits, 1.0, torch.tensor([s])).tolist() for s in (3, 3, 4)]
        small_blocks = gumbel_argmax(logits, 1.0, torch.tensor([3]), block=1024).tolist()
        print(json.dumps({"draws": draws, "small_blocks": small_blocks}))
    """)
    first, again, other = result["draws"]
    assert first == again == result["small_blocks"]  # the noise is keyed by position, not by the program
    assert first != other
    assert len(set(first)) == 8  # 8 rows of 20,000 equally likely tokens: distinct draws (a collision is ~0.1%)


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
