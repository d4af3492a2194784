"""A real CUDA out-of-memory back-off in the refill engine, and an SC@5 eval job through jobs.eval on it.

Under a per-process cap of 8 GiB (an 8 GiB card), 400 questions × 5 samples asked of 4096
slots (capped at 2000, the rows there are) must halve until the slot cache fits. Then an
eval job (300 synthetic questions, SC@5, 128 new tokens, random-init Qwen2.5-0.5B shape
saved to /tmp/rq) on the engine(s) named: python bench/refill_cuda_eval_job.py [refill] [batched]
(2026-11-23 H100 output: bench/results/2026-11-23-session3/refill_cuda_eval_job.log)
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path.cwd())); sys.path.insert(0, str(Path.cwd() / "bench"))
import eval_throughput as bench

from jobs import eval as eval_job
from jobs.generation.refill import generate_samples_refill
from jobs.generation.rows import Sampling
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec

device = "cuda" if torch.cuda.is_available() else "cpu"
small = device == "cpu"
loaded = bench.random_qwen(device, torch.bfloat16 if device == "cuda" else torch.float32)
loaded.model.save_pretrained("/tmp/rq"); loaded.tokenizer.save_pretrained("/tmp/rq")
convs = bench.questions(4 if small else 400)
if device == "cuda":
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(8 * 2**30 / total)  # an 8 GiB card
stats = {}
s = time.perf_counter()
out = generate_samples_refill(loaded, convs, max_new_tokens=8 if small else 256, slots=64 if small else 4096, seed=0,
                              sampling=Sampling(5, 0.7, 1.0), stats=stats)
print(f"OOM back-off: asked 4096 slots under an 8 GiB cap -> ran with {stats['slots']:.0f}; {sum(len(r) for r in out)} samples "
      f"in {time.perf_counter() - s:.1f} s; peak {torch.cuda.max_memory_allocated() / 2**30 if device == 'cuda' else 0:.2f} GiB")
del loaded, out
if device == "cuda":
    torch.cuda.set_per_process_memory_fraction(1.0); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
for engine in sys.argv[1:] or ["refill"]:
    spec = EvalJobSpec(model=ModelSpec(id="/tmp/rq"), dataset=DatasetSpec(name="synthetic", n=4 if small else 300, complexity=(1, 3), seed=0),
                       strategy=StrategySpec(name="self_consistency", params={"n": 5}), max_new_tokens=8 if small else 128,
                       batch_size=200, seed=0, engine=engine)
    r = eval_job.run(spec)
    print(f"eval job SC@5 engine={engine}: n={r.n} pass@1={r.pass_at_1:.3f} [{r.ci_low:.3f},{r.ci_high:.3f}] "
          f"tokens/s={r.tokens_per_s:.0f} wall={r.wall_s:.1f}s peak={r.peak_memory_mb:.0f} MB ({r.memory_kind}) device={r.device}")
