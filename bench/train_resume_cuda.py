"""CUDA proof of a resumed QLoRA train job: NF4 base, fused LoRA, paged 8-bit AdamW state in the checkpoint.

tests/test_train.py proves resume-after-kill on CPU (plain LoRA, torch AdamW). CI has
no GPU, so this script is the CUDA counterpart, run on a device: a train job stopped
after step 4 (checkpoints every 2 steps) and run again must end with the adapter and
loss curve of an uninterrupted run. Exit status 0 only if it does.

    python bench/train_resume_cuda.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train_throughput import SMALL, build_model, write_traces  # noqa: E402
from jobs.resources import artifacts
from jobs.specs import ModelSpec, TrainJobSpec, TrainParams  # noqa: E402
from jobs.training import train  # noqa: E402


class Killed(Exception):
    pass


def adapter(uri: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(artifacts.fetch_dir(uri) / "adapter_model.safetensors"))


def main() -> int:
    if not torch.cuda.is_available():
        print("needs CUDA (the NF4 + paged 8-bit optimiser path)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "model").mkdir()
        build_model(root / "model", SMALL)
        write_traces(root / "traces.jsonl", 32)
        params = TrainParams(batch_size=4, max_length=512, epochs=1, checkpoint_every=2, trace_file=str(root / "traces.jsonl"),
                             learning_rate=1e-3, lora_dropout=0.05)
        spec = TrainJobSpec(model=ModelSpec(id=str(root / "model")), method="distill", lora_rank=8, traces=32,
                            params=params.model_dump(mode="json"), seed=3)  # 32 traces, batch 4: 8 steps

        whole = train.run(spec, artifacts_root=str(root / "a"), job_key="whole")

        def kill_after_4(step: int, total: int) -> None:
            if step == 4:
                raise Killed

        try:
            train.run(spec, artifacts_root=str(root / "b"), job_key="killed", progress=kill_after_4)
        except Killed:
            pass
        resumed = train.run(spec, artifacts_root=str(root / "b"), job_key="killed")

        expected, got = adapter(whole.adapter_uri), adapter(resumed.adapter_uri)
        worst = max(float((got[n].float() - expected[n].float()).abs().max()) for n in expected)
        scale = max(float(t.float().abs().max()) for t in expected.values())
        loss_gap = max(abs(a - b) for a, b in zip(whole.loss_curve, resumed.loss_curve, strict=True))
        moved = any(float(t.abs().sum()) > 0 for n, t in expected.items() if "lora_B" in n)
        print(f"mode {whole.mode} (optimiser on CUDA: bitsandbytes PagedAdamW8bit, jobs.training.train._optimizer)")
        print(f"whole: {whole.steps} steps, loss {whole.loss_curve[0]:.4f} -> {whole.loss_curve[-1]:.4f}, peak {whole.peak_memory_mb:.0f} MB")
        print(f"resumed from step {resumed.resumed_from_step}: {resumed.steps} steps, loss -> {resumed.loss_curve[-1]:.4f}")
        print(f"adapter max |diff| {worst:.3g} (largest weight {scale:.3g}); loss curve max |diff| {loss_gap:.3g}; B moved: {moved}")
        ok = (whole.mode == "qlora-nf4-cuda" and resumed.resumed_from_step == 4 and resumed.steps == whole.steps
              and expected.keys() == got.keys() and worst <= 1e-3 * max(scale, 1e-6) + 1e-5 and loss_gap < 1e-3 and moved)
        print("RESUME " + ("OK" if ok else "MISMATCH"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
