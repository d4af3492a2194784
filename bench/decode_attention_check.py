"""The refill engine's decode attention on CUDA: the live-length Triton kernel against masked SDPA, one run.

For each shape (key/value heads, query heads, head size of Qwen2.5-0.5B and Qwen3-8B), 200 rows and a
cache capacity of 600 positions, lengths drawn in [--min-length, capacity]:
- correctness: ‖kernel − reference‖ / ‖reference‖ on fresh random bf16 inputs (reference: float32 softmax
  over each row's live keys), with every position past a row's length poisoned (NaN keys, huge values)
  and the output poisoned before the call;
- time per layer call (triton.testing.do_bench, median) of the kernel, of the masked packed SDPA the
  engine used before, and of unmasked SDPA over the whole capacity (what reading everything costs);
- the kernel's bandwidth over the live keys and values it must read, against the measured copy bandwidth.

    python bench/decode_attention_check.py [--rows 200] [--capacity 600] [--min-length 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.generation.decode_attention import decode_attention, decode_attention_reference  # noqa: E402

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
    for splits in (1, 2, 3, 5, 8):  # the engine's heuristic picks one (first row below); how the others compare
        ms = do_bench(lambda: decode_attention(q, k, v, lengths, dim**-0.5, splits=splits), return_mode="median")
        print(f"  (splits {splits}: {1000 * ms:.1f} µs)", end="")
    print()
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
    assert max(errors) < 2e-2, errors


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


if __name__ == "__main__":
    main()
