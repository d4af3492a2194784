"""Device check of jobs.training.micro_step: the same train job with CUDA graphs and without.

CI has no GPU, so capture and replay are proven here. A random model of a published shape (NF4 + LoRA, built on
the GPU) trains on traces of varied length (several padded shapes, a short last micro-batch, 2 micro-batches a
step), with and without graphs, same seed:
- one batch, the same weights: a replay's gradient is the eager step's (to bf16 rounding: the graph projects every
  position, so sums run in another order), and again after the weights move (a replay reads the current weights);
- dropout 0: the loss curves agree, and the graphed run captured one graph per padded shape;
- dropout 0.05: two graphed runs give the same loss curve exactly when two eager runs do, and the loss falls.

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


def gradient_check(model_dir: Path) -> list[tuple[float, float]]:
    """(relative loss gap, relative gradient gap) of a replay against the eager step on the same batch, before and
    after the adapter weights move."""
    import torch

    from jobs.specs import ModelSpec, TrainJobSpec, TrainParams
    from jobs.training import fused_lora, micro_step
    from jobs.training.model import add_lora, load_base
    from jobs.training.train import _flatten

    if not torch.cuda.is_available():
        return []  # a CPU smoke run of the script: nothing is captured
    params = TrainParams(lora_dropout=0.0, batch_size=4, max_length=512)
    spec = TrainJobSpec(model=ModelSpec(id=str(model_dir)), method="qlora", lora_rank=16, traces=4, params=params,
                        seed=0)
    model, _ = load_base(spec, "qlora-nf4-cuda")
    model = add_lora(model, spec, params)
    model.train()
    flats = _flatten([p for p in model.parameters() if p.requires_grad])
    base = model.get_base_model()
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    graphed = micro_step.GraphedMicroSteps(decoder, head, chunk=1024, rows=4, pad_id=0)
    eager = micro_step.EagerMicroStep(decoder, head, chunk=1024, device="cuda")
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(2):
        ids = torch.randint(3, 400, (4, 256), generator=generator)
        labels = ids.clone()
        labels[:, :40] = -100
        batches.append((ids, labels))

    def gradient(step: micro_step.MicroStep, ids: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
        loss = float(step(ids, labels, 1e-3))
        grad = torch.cat([flat.grad.float().clone() for flat in flats])  # type: ignore[union-attr]
        for flat in flats:
            flat.grad.zero_()  # type: ignore[union-attr]
        return loss, grad

    gradient(graphed, *batches[0])  # this shape's first batch: eager, then captured
    gaps = []
    for _ in range(2):
        replay_loss, replay_grad = gradient(graphed, *batches[1])
        eager_loss, eager_grad = gradient(eager, *batches[1])
        gaps.append((abs(replay_loss - eager_loss) / abs(eager_loss),
                     float((replay_grad - eager_grad).norm() / eager_grad.norm())))
        with torch.no_grad():  # as an optimiser step would
            for flat in flats:
                flat.add_(torch.randn_like(flat) * 0.02)
        fused_lora.adapters_changed()
    return gaps


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
        gaps = gradient_check(directory / "model")
        runs = {
            name: train_once(directory / "model", directory / "traces.jsonl", graphs=graphs, dropout=dropout,
                             steps=args.steps)
            for name, graphs, dropout in [("eager", False, 0.0), ("graphs", True, 0.0),
                                          ("eager-dropout", False, 0.05), ("eager-dropout-again", False, 0.05),
                                          ("graphs-dropout", True, 0.05), ("graphs-dropout-again", True, 0.05)]
        }
    report(gaps, runs)


def report(gaps: list[tuple[float, float]], runs: dict[str, dict]) -> None:
    for i, (loss_gap, grad_gap) in enumerate(gaps):
        print(f"replay vs eager, same batch{' after the weights moved' if i else ''}: relative loss gap {loss_gap:.2e}, "
              f"relative gradient gap {grad_gap:.2e}")
    for name, run in runs.items():
        print(f"{name:22s} wall {run['wall_s']:6.1f} s  {run['tokens_per_s']:8.0f} tok/s  peak {run['peak_mb'] / 1024:.2f} GiB  "
              f"graphs captured {run['captured']}  losses {[round(x, 4) for x in run['losses']]}")
    eager, graphed = runs["eager"], runs["graphs"]
    loss_gap = max(abs(a - b) / abs(a) for a, b in zip(eager["losses"], graphed["losses"], strict=True))
    ours, theirs = torch_cat(graphed["adapter"]), torch_cat(eager["adapter"])
    print(f"dropout 0, graphs vs eager: max relative loss gap {loss_gap:.2e}; trained adapters' relative gap "
          f"{float((ours - theirs).norm() / theirs.norm()):.2e} (Adam's first steps amplify rounding)")
    eager_again = runs["eager-dropout"]["losses"] == runs["eager-dropout-again"]["losses"]
    graphs_again = runs["graphs-dropout"]["losses"] == runs["graphs-dropout-again"]["losses"]
    falls = runs["graphs-dropout"]["losses"][-1] < runs["graphs-dropout"]["losses"][0]
    print(f"dropout 0.05, run twice: identical loss curves eager {eager_again}, graphs {graphs_again}; "
          f"loss falls {falls}")
    ok = (all(loss < 1e-3 and grad < 2e-2 for loss, grad in gaps) and loss_gap < 1e-3
          and len(graphed["captured"]) >= 2 and (graphs_again or not eager_again) and falls)
    print("CHECK " + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


def torch_cat(tensors: dict) -> object:
    import torch

    return torch.cat([t.float().reshape(-1) for _, t in sorted(tensors.items())])


if __name__ == "__main__":
    main()
