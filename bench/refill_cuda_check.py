"""The refill engine on CUDA: correctness against eager and the batched engine, and decode-attention kernels timed.

fp32 greedy on a random-init Qwen2.5-0.5B shape: the CUDA-graph decode against eager
decode and against the batched engine (dynamic cache), row by row; seeded SC@5 with
top_p twice (identical) and with another seed (different). Then SDPA backends for the
packed decode shape (a group's query heads as queries of their key/value head) with a
per-row mask. Run on a GPU: python bench/refill_cuda_check.py
(2026-11-23 H100 output: bench/results/2026-11-23-session3/refill_cuda_check.log)
"""
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path.cwd())); sys.path.insert(0, str(Path.cwd() / "bench"))
import eval_throughput as bench

from jobs.generation.engine import generate_samples
from jobs.generation.refill import generate_samples_refill
from jobs.generation.rows import Sampling


def ids(x): return [[g.token_ids for g in rows] for rows in x]
loaded = bench.random_qwen("cuda", torch.float32)
convs = bench.questions(40)
graph = generate_samples_refill(loaded, convs, max_new_tokens=48, slots=64, seed=0)
eager = generate_samples_refill(loaded, convs, max_new_tokens=48, slots=64, seed=0, cuda_graph=False)
batched = generate_samples(loaded, convs, max_new_tokens=48, batch_size=64, seed=0, cache_implementation=None)
def same(a, b):
    rows = [(x, y) for ra, rb in zip(ids(a), ids(b)) for x, y in zip(ra, rb)]
    prefix = [next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y))) for x, y in rows]
    return f"{sum(x == y for x, y in rows)}/{len(rows)} rows identical, mean common prefix {sum(prefix)/len(prefix):.1f} tokens"
print("fp32 greedy: graph vs eager refill:", same(graph, eager))
print("fp32 greedy: graph refill vs batched dynamic:", same(graph, batched))
sc = Sampling(5, 0.7, 0.95)
a = generate_samples_refill(loaded, convs[:20], max_new_tokens=32, slots=40, seed=3, sampling=sc)
b = generate_samples_refill(loaded, convs[:20], max_new_tokens=32, slots=40, seed=3, sampling=sc)
c = generate_samples_refill(loaded, convs[:20], max_new_tokens=32, slots=40, seed=4, sampling=sc)
print("SC@5 top_p .95 same seed identical:", ids(a) == ids(b), "· other seed differs:", ids(a) != ids(c))
del loaded; torch.cuda.empty_cache()

def t(f, k=100):
    f(); torch.cuda.synchronize(); s = time.perf_counter()
    for _ in range(k): f()
    torch.cuda.synchronize(); return 1e6 * (time.perf_counter() - s) / k
from torch.nn.attention import SDPBackend, sdpa_kernel

for S, C in [(200, 456), (600, 456), (1000, 456)]:
    q = torch.randn(S, 2, 7, 64, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(S, 2, C, 64, device="cuda", dtype=torch.bfloat16); v = torch.randn_like(k)
    lens = torch.randint(1, C, (S,), device="cuda")
    mask = (torch.arange(C, device="cuda")[None] < lens[:, None])[:, None, None, :]
    add = torch.zeros(mask.shape, device="cuda", dtype=torch.bfloat16).masked_fill(~mask, float("-inf"))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = {}
    out["default bool"] = t(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    out["default additive"] = t(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=add))
    for name, be in [("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH), ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        try:
            with sdpa_kernel(be):
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                out[name] = t(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        except Exception as e: out[name] = f"n/a ({type(e).__name__})"
    def manual():
        s = torch.matmul(q, k.transpose(-1, -2)) * 0.125
        return torch.matmul(s.masked_fill(~mask, float("-inf")).softmax(-1, dtype=torch.float32).to(v.dtype), v)
    out["manual"] = t(manual)
    err = (manual() - ref).abs().max().item()
    kv_mb = 2 * k.numel() * 2 / 1e6
    print(f"S={S} C={C} (K+V {kv_mb:.0f} MB, {kv_mb/3000*1000:.0f} us at 3 TB/s): " + ", ".join(f"{n} {v if isinstance(v, str) else f'{v:.0f} us'}" for n, v in out.items()) + f" · manual max err {err:.3g}")
