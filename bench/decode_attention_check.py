"""The refill engine's decode kernels on CUDA: the live-length attention against masked SDPA, and the fused
temperature draw against torch's, one run.

For each shape (key/value heads, query heads, head size of Qwen2.5-0.5B and Qwen3-8B), 200 rows and a
cache capacity of 600 positions, lengths drawn in [--min-length, capacity]:
- correctness: ‖kernel − reference‖ / ‖reference‖ on fresh random bf16 inputs (reference: float32 softmax
  over each row's live keys), with every position past a row's length poisoned (NaN keys, huge values)
  and the output poisoned before the call;
- time per layer call (triton.testing.do_bench, median) of the kernel, of the masked packed SDPA the
  engine used before, and of unmasked SDPA over the whole capacity (what reading everything costs);
- the kernel's bandwidth over the live keys and values it must read, against the measured copy bandwidth;
- the same calls replayed from a CUDA graph (the GPU's time, which the engine sees), for several split counts;
- the fused draw (jobs.generation.sample_kernel) against the torch draw, in a CUDA graph, and its distribution
  over 100,000 draws (chi-square against softmax(logits / T)).

    python bench/decode_attention_check.py [--rows 200] [--capacity 600] [--min-length 100]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.generation.decode_attention import _splits, decode_attention, decode_attention_reference  # noqa: E402

SHAPES = {"qwen2.5-0.5b": (14, 2, 64), "qwen3-4b/8b": (32, 8, 128)}  # query heads, key/value heads, head size


def copy_bandwidth() -> float:
    x = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    from triton.testing import do_bench

    return 2 * x.numel() / (do_bench(lambda: y.copy_(x), return_mode="median") / 1e3)


def check(name: str, heads: int, kv_heads: int, dim: int, args: argparse.Namespace, bandwidth: float) -> None:
    from triton.testing import do_bench

    rows, capacity = args.rows, args.capacity
    groups = heads // kv_heads
    errors = []
    for seed in range(3):  # fresh inputs each time
        generator = torch.Generator(device="cuda").manual_seed(seed)
        q = torch.randn(rows, heads, 1, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
        k = torch.randn(rows, kv_heads, capacity, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
        v = torch.randn(rows, kv_heads, capacity, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
        lengths = torch.randint(args.min_length, capacity + 1, (rows,), device="cuda", generator=generator)
        lengths[0], lengths[1] = 1, capacity
        ref = decode_attention_reference(q, k, v, lengths, dim**-0.5).float()
        dead = torch.arange(capacity, device="cuda")[None, :] >= lengths[:, None]
        k.masked_fill_(dead[:, None, :, None], float("nan"))
        v.masked_fill_(dead[:, None, :, None], 1e4)
        out = decode_attention(q, k, v, lengths, dim**-0.5).float()
        errors.append(((out - ref).norm() / ref.norm()).item() if torch.isfinite(out).all() else float("nan"))
    k.masked_fill_(dead[:, None, :, None], 0.5)
    v.masked_fill_(dead[:, None, :, None], 0.5)
    mask = (~dead)[:, None, None, :]
    packed = q.reshape(rows, kv_heads, groups, dim)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    times = {
        "live kernel": do_bench(lambda: decode_attention(q, k, v, lengths, dim**-0.5), return_mode="median"),
        "masked SDPA (before)": do_bench(lambda: sdpa(packed, k, v, attn_mask=mask), return_mode="median"),
        "SDPA, whole capacity": do_bench(lambda: sdpa(packed, k, v), return_mode="median"),
    }
    live_bytes = 2 * int(lengths.sum()) * kv_heads * dim * 2
    floor_ms = live_bytes / bandwidth * 1e3
    print(f"{name}: {rows} rows, capacity {capacity}, mean length {lengths.float().mean():.0f}, "
          f"{heads} heads / {kv_heads} kv heads / dim {dim}; rel. error {max(errors):.2e} (3 draws)")
    for label, ms in times.items():
        print(f"  {label:22s} {1000 * ms:8.1f} µs per layer call  ({floor_ms / ms:5.1%} of the live-KV floor "
              f"{1000 * floor_ms:.1f} µs)")
    print(f"  speed-up over masked SDPA: {times['masked SDPA (before)'] / times['live kernel']:.2f}x", flush=True)
    # Replayed from a CUDA graph, as in the engine: launching from Python (do_bench above) can cost more than the
    # kernel at the small shape, so those times may be the host's; these are the GPU's.
    heuristic = _splits(q.device, rows * kv_heads, capacity)
    print(f"  in a CUDA graph, µs per call: heuristic ({heuristic} splits) "
          f"{graph_us(lambda: decode_attention(q, k, v, lengths, dim**-0.5)):.1f}; " + ", ".join(
              f"{s} splits {graph_us(lambda s=s: decode_attention(q, k, v, lengths, dim**-0.5, splits=s)):.1f}"
              for s in (1, 2, 3, 4, 6, 8)))
    print(f"  in a CUDA graph, masked SDPA (before): {graph_us(lambda: sdpa(packed, k, v, attn_mask=mask)):.1f} µs; "
          f"SDPA, whole capacity: {graph_us(lambda: sdpa(packed, k, v)):.1f} µs", flush=True)
    assert max(errors) < 2e-2, errors


def graph_us(call: Callable[[], object], calls: int = 20, replays: int = 20) -> float:
    """µs per call of `call`, `calls` of them captured back to back in one CUDA graph and replayed."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            call()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return 1000 * start.elapsed_time(end) / (calls * replays)


def sampling_check(rows: int = 200, vocab: int = 151_936, draws: int = 500) -> None:
    """The fused temperature draw against the torch draw it replaces: time per step (CUDA graph), and its
    distribution: six live tokens spread over the vocabulary, rows x draws samples, Pearson's chi-square."""
    from jobs.generation.filters import gumbel_draw
    from jobs.generation.rows import Sampling
    from jobs.generation.sample_kernel import sample_softmax

    logits = torch.randn(rows, vocab, device="cuda", dtype=torch.bfloat16) * 3
    uniform = torch.rand(rows, device="cuda")
    sampling = Sampling(5, 0.7, 1.0)

    def torch_draw() -> torch.Tensor:  # the engine's torch draw, from the default generator (capturable)
        return gumbel_draw(logits, sampling)

    fused_us = graph_us(lambda: sample_softmax(logits, 0.7, uniform))
    torch_us = graph_us(torch_draw)
    print(f"sampling, {rows} rows x {vocab} logits (bf16), T 0.7, in a CUDA graph: fused draw {fused_us:.1f} µs, "
          f"torch draw {torch_us:.1f} µs ({torch_us / fused_us:.1f}x)")
    live = torch.tensor([5, 20_000, 40_000, 75_001, 120_000, vocab - 1], device="cuda")
    values = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0, 1.5], device="cuda")
    sparse = torch.full((rows, vocab), float("-inf"), device="cuda", dtype=torch.bfloat16)
    sparse[:, live] = values.to(torch.bfloat16)
    counts = torch.zeros(vocab, device="cuda")
    for _ in range(draws):
        counts += torch.bincount(sample_softmax(sparse, 0.7, torch.rand(rows, device="cuda")), minlength=vocab)
    expected = torch.softmax(values.to(torch.bfloat16).float() / 0.7, -1) * rows * draws
    chi_square = float(((counts[live] - expected) ** 2 / expected).sum())
    print(f"  {rows * draws} draws: {counts[live].long().tolist()} vs expected {[round(e) for e in expected.tolist()]}; "
          f"outside the live tokens {int(counts.sum() - counts[live].sum())}; chi-square {chi_square:.1f} (5 dof; "
          "p = 0.001 at 20.5)", flush=True)
    assert counts.sum() == counts[live].sum() and chi_square < 30, chi_square


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=600)
    parser.add_argument("--min-length", type=int, default=100)
    args = parser.parse_args()
    bandwidth = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()} · copy bandwidth {bandwidth / 1e9:.0f} GB/s (read + write)")
    for name, (heads, kv_heads, dim) in SHAPES.items():
        check(name, heads, kv_heads, dim, args, bandwidth)
    sampling_check()


if __name__ == "__main__":
    main()
