"""Device check of jobs.training.micro_step: the same train job with CUDA graphs and without.

CI has no GPU, so capture and replay are proven here. A random model of a published shape (NF4 + LoRA, built on
the GPU) trains on traces of varied length (several padded shapes, a short last micro-batch, 2 micro-batches a
step), with and without graphs, same seed:
- dropout 0: the loss curves and the trained adapters agree to bf16 rounding (the graph pads and projects every
  position, so sums run in another order), and the graphed run captured one graph per padded shape;
- dropout 0.05: two graphed runs give the same loss curve (seeded, replayed RNG), and the loss falls.

    python bench/train_graph_check.py [--shape qwen2.5-0.5b] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train_throughput import SHAPES, build_model  # noqa: E402


def write_varied_traces(path: Path, count: int) -> None:
    from jobs.data.synthetic import generate

    problems = generate(count * 6, complexity=(1, 3), seed=3)
    with path.open("w") as out:
        for i in range(count):
            group = problems[i * 6 : i * 6 + 1 + i % 4]
            lead = "Let me check that again. " * (2 * (i % 5))  # lengths over several padded shapes
            response = lead + "\n".join(q.solution for q in group)
            out.write(json.dumps({"question": group[0].question, "response": response}) + "\n")


def train_once(model_dir: Path, traces: Path, *, graphs: bool, dropout: float, steps: int) -> dict:
    import torch
    from safetensors.torch import load_file

    from jobs.specs import ModelSpec, TrainJobSpec, TrainParams
    from jobs.training import micro_step, train

    captured: list[tuple[int, ...]] = []
    original = micro_step.GraphedMicroSteps._capture

    def counting(self: micro_step.GraphedMicroSteps, ids: torch.Tensor, *rest: torch.Tensor) -> None:
        original(self, ids, *rest)
        captured.append(tuple(ids.shape))

    micro_step.GraphedMicroSteps._capture = counting  # type: ignore[method-assign]
    params = TrainParams(lora_dropout=dropout, batch_size=3, grad_accum=2, max_length=768, epochs=1,
                         learning_rate=2e-4, checkpoint_every=10_000, trace_file=str(traces), cuda_graphs=graphs)
    spec = TrainJobSpec(model=ModelSpec(id=str(model_dir)), method="distill", lora_rank=16, traces=steps * 6 - 1,
                        params=params, seed=0)
    try:
        with tempfile.TemporaryDirectory() as root:
            started = time.perf_counter()
            outcome = train.run(spec, artifacts_root=root, job_key="check")
            wall = time.perf_counter() - started
            adapter = load_file(str(Path(outcome.adapter_uri.removeprefix("file://")) / "adapter_model.safetensors"))
    finally:
        micro_step.GraphedMicroSteps._capture = original  # type: ignore[method-assign]
    return {"losses": outcome.loss_curve, "adapter": adapter, "captured": captured, "wall_s": wall,
            "peak_mb": outcome.peak_memory_mb, "tokens_per_s": outcome.tokens_per_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "model").mkdir()
        build_model(directory / "model", SHAPES[args.shape])
        write_varied_traces(directory / "traces.jsonl", args.steps * 6 - 1)
        runs = {
            name: train_once(directory / "model", directory / "traces.jsonl", graphs=graphs, dropout=dropout,
                             steps=args.steps)
            for name, graphs, dropout in [("eager", False, 0.0), ("graphs", True, 0.0),
                                          ("graphs-dropout", True, 0.05), ("graphs-dropout-again", True, 0.05)]
        }
    report(runs)


def report(runs: dict[str, dict]) -> None:
    for name, run in runs.items():
        print(f"{name:22s} wall {run['wall_s']:6.1f} s  {run['tokens_per_s']:8.0f} tok/s  peak {run['peak_mb'] / 1024:.2f} GiB  "
              f"graphs captured {run['captured']}  losses {[round(x, 4) for x in run['losses']]}")
    eager, graphed = runs["eager"], runs["graphs"]
    loss_gap = max(abs(a - b) / abs(a) for a, b in zip(eager["losses"], graphed["losses"], strict=True))
    weight_gap = max(float((eager["adapter"][k].float() - graphed["adapter"][k].float()).norm() / eager["adapter"][k].float().norm())
                     for k in eager["adapter"])
    again = runs["graphs-dropout"]["losses"] == runs["graphs-dropout-again"]["losses"]
    falls = runs["graphs-dropout"]["losses"][-1] < runs["graphs-dropout"]["losses"][0]
    print(f"dropout 0, graphs vs eager: max relative loss gap {loss_gap:.2e}, max relative adapter gap {weight_gap:.2e}")
    print(f"dropout 0.05, graphed twice: identical loss curves {again}; loss falls {falls}")
    ok = loss_gap < 2e-2 and weight_gap < 5e-2 and len(graphed["captured"]) >= 2 and again and falls
    print("CHECK " + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
