"""Training throughput and peak memory: our train job vs the plain TRL SFTTrainer recipe.

Both train the same random-initialised model (default: Qwen2.5-0.5B-shaped, 152k vocab),
NF4 + LoRA r16 on all attention and MLP projections, paged 8-bit AdamW, gradient
checkpointing, on the same pre-tokenized 512-token sequences (loss on the assistant
turn only), batch 8, for the same number of steps. Each side runs in its own process so
neither inherits the other's memory; tokens/s is timed over the steps after a warm-up.

    python bench/train_throughput.py [--shape qwen2.5-0.5b|qwen3-4b|qwen3-8b] [--batch 8] [--rank 16] [--steps 40]
                                     [--warmup 5] [--small]   # --small: CPU-sized smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QWEN_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=4096)
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, vocab_size=4096, tie_word_embeddings=True, max_position_embeddings=4096)


# Published configs (Qwen/Qwen3-4B, Qwen/Qwen3-8B), as bench/eval_throughput.py builds them.
QWEN3_4B = dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                intermediate_size=9728, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=40960)
QWEN3_8B = dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                intermediate_size=12288, vocab_size=151936, tie_word_embeddings=False, max_position_embeddings=40960)
SHAPES = {"qwen2.5-0.5b": QWEN_05B, "qwen3-4b": QWEN3_4B, "qwen3-8b": QWEN3_8B, "small": SMALL}


def build_model(directory: Path, shape: dict) -> None:
    """A random model of `shape` in bf16 (Qwen3 classes where the shape has head_dim, else Qwen2) plus a small
    ChatML tokenizer (ids < 400 < vocab); built on the GPU when there is one (8B on the CPU takes minutes)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from tests.model_fixtures import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(directory)
    config_class, model_class = (Qwen3Config, Qwen3ForCausalLM) if "head_dim" in shape else (Qwen2Config, Qwen2ForCausalLM)
    config = config_class(**shape, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = model_class(config)
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(directory)
    del model


def write_traces(path: Path, count: int) -> None:
    """Teacher traces long enough that every example is truncated to exactly max_length."""
    from jobs.data.synthetic import generate

    problems = generate(count * 8, complexity=(3, 6), seed=1)
    with path.open("w") as out:
        for i in range(count):
            group = problems[i * 8 : (i + 1) * 8]
            response = "\n".join(q.solution for q in group)
            out.write(json.dumps({"question": group[0].question, "response": response}) + "\n")


def train_spec(model_dir: Path, traces: Path, args: argparse.Namespace) -> object:
    from jobs.specs import ModelSpec, TrainJobSpec, TrainParams

    params = TrainParams(
        lora_alpha=2 * args.rank, lora_dropout=0.05, batch_size=args.batch // args.accum, grad_accum=args.accum, max_length=args.seq,
        epochs=1, learning_rate=2e-4, checkpoint_every=10_000, trace_file=str(traces), loss_chunk=args.chunk,
        adapter_dtype="bfloat16" if "bf16" in args.variant else "float32", compile="compile" in args.variant,
        fused_lora="nofuse" not in args.variant, cuda_graphs="nograph" not in args.variant,
    )
    return TrainJobSpec(model=ModelSpec(id=str(model_dir)), method="distill", lora_rank=args.rank,
                        traces=args.steps * args.batch, params=params, seed=0)


def tokenized(model_dir: Path, traces: Path, args: argparse.Namespace) -> list:
    """Exactly the token ids and label masks our train job builds."""
    from jobs.models.loading import load_tokenizer
    from jobs.training.data import load_examples, tokenize

    spec = train_spec(model_dir, traces, args)
    tokenizer = load_tokenizer(str(model_dir), {})
    params = spec.params
    return [tokenize(e, tokenizer, max_length=args.seq) for e in load_examples(spec, params)]


def rate(stamps: list[float], tokens: list[int], warmup: int) -> float:
    return sum(tokens[warmup:]) / (stamps[-1] - stamps[warmup - 1]) if len(stamps) > warmup else float("nan")


def run_ours(model_dir: Path, traces: Path, args: argparse.Namespace) -> dict:
    import torch

    from jobs.training import train

    stamps: list[float] = []

    profiler = None

    def tick(step: int, total: int) -> None:
        nonlocal profiler
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        if args.profile and step == args.warmup:
            profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
            profiler.__enter__()
        if profiler is not None and step == args.warmup + 3:
            profiler.__exit__(None, None, None)
            for key in ("self_cuda_time_total", "self_cpu_time_total"):
                print(profiler.key_averages().table(sort_by=key, row_limit=18), file=sys.stderr)
            profiler = None

    spec = train_spec(model_dir, traces, args)
    with tempfile.TemporaryDirectory() as root:
        outcome = train.run(spec, artifacts_root=root, job_key="bench", progress=tick)
    per_step = [args.batch * args.seq] * len(stamps)  # every sequence is exactly seq tokens
    return {"tokens_per_s": rate(stamps, per_step, args.warmup), "peak_mb": outcome.peak_memory_mb, "mode": outcome.mode,
            "reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if torch.cuda.is_available() else None,
            "loss_first": outcome.loss_curve[0], "loss_last": outcome.loss_curve[-1], "steps": outcome.steps,
            "tokens_seen": outcome.tokens_seen}


def run_trl(model_dir: Path, traces: Path, args: argparse.Namespace) -> dict:
    """The recipe blog posts copy: BitsAndBytes NF4, prepare_model_for_kbit_training, SFTTrainer + LoraConfig."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from jobs.models.loading import load_tokenizer
    from jobs.training.data import IGNORE_INDEX
    from jobs.training.model import nf4_config

    rows = tokenized(model_dir, traces, args)
    dataset = Dataset.from_list([
        {"input_ids": r.input_ids, "completion_mask": [int(label != IGNORE_INDEX) for label in r.labels]} for r in rows
    ])
    tokenizer = load_tokenizer(str(model_dir), {})
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), quantization_config=nf4_config(), dtype=torch.bfloat16, device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    stamps: list[float] = []

    class Tick(TrainerCallback):
        def on_step_end(self, *a: object, **k: object) -> None:
            torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1, max_steps=args.steps,
            learning_rate=2e-4, bf16=True, gradient_checkpointing=True, optim="paged_adamw_8bit", logging_steps=10,
            save_strategy="no", report_to="none", max_length=args.seq, lr_scheduler_type="constant",
        )
        peft_config = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[Tick()])
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    per_step = [args.batch * args.seq] * len(stamps)
    return {"tokens_per_s": rate(stamps, per_step, args.warmup), "peak_mb": torch.cuda.max_memory_allocated() / 2**20,
            "reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None, "steps": len(stamps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="sequences per optimiser step (effective batch)")
    parser.add_argument("--accum", type=int, default=1, help="ours: micro-batches per step (batch/accum each)")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=1024, help="ours: tokens per cross-entropy chunk")
    parser.add_argument("--small", action="store_true", help="a tiny model: a smoke run of the script itself")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b",
                        help="the random model's published shape (built on the GPU, no download)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank, both sides")
    parser.add_argument("--sides", default="trl,ours", help="comma-separated: trl, ours, and ours with -bf16 (bf16 adapters), -compile (per-layer torch.compile), "
                        "-nofuse (peft's own LoRA forward instead of jobs.training.fused_lora), -nograph (no CUDA graphs, "
                        "jobs.training.micro_step), e.g. ours-nofuse-bf16")
    parser.add_argument("--side-timeout", type=float, default=600, help="seconds each side may take")
    parser.add_argument("--profile", action="store_true", help="ours: print a torch.profiler table of 3 steps to stderr")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        directory = Path(args.dir)
        # Sides: trl, ours, and ours+bf16 / ours+compile / ours+bf16+compile (our options on top).
        args.variant = args.worker
        result = (run_trl if args.worker == "trl" else run_ours)(directory / "model", directory / "traces.jsonl", args)
        print("RESULT " + json.dumps(result), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "model").mkdir()
        build_model(directory / "model", SMALL if args.small else SHAPES[args.shape])
        write_traces(directory / "traces.jsonl", args.steps * args.batch)
        results = {}
        for side in args.sides.split(","):
            results[side] = _side(side, directory, sys.argv[1:], timeout=args.side_timeout)
            print(f"{side}: {json.dumps(results[side])}", flush=True)
    _report(results, args)


def _side(side: str, directory: Path, argv: list[str], timeout: float) -> dict:
    try:
        done = _run_side(side, directory, argv, timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if "--profile" in argv:
        print(done.stderr[-12000:], file=sys.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"--- {side} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}", file=sys.stderr)
        return {"error": f"exit {done.returncode}"}
    return json.loads(lines[-1][7:])


def _run_side(side: str, directory: Path, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, __file__, *argv, "--worker", side, "--dir", str(directory)], timeout=timeout,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})


def _report(results: dict, args: argparse.Namespace) -> None:
    print(f"shape {'small' if args.small else args.shape}, rank {args.rank}, batch {args.batch} x {args.seq} tokens (ours: {args.batch // args.accum} x {args.accum} accum), {args.steps} steps, "
          f"timed after {args.warmup} warm-up steps")
    for side, r in results.items():
        if "error" in r:
            print(f"{side:18s} FAILED {r['error']}")
            continue
        reserved = f" (reserved {r['reserved_mb'] / 1024:.2f})" if r.get("reserved_mb") else ""
        print(f"{side:18s} {r['tokens_per_s']:10.0f} tokens/s  peak {r['peak_mb'] / 1024:6.2f} GiB{reserved}  "
              f"loss {r['loss_first']} -> {r['loss_last']}  {r.get('mode', 'trl')}")
    trl = results.get("trl", {})
    for side, ours in results.items():
        if side != "trl" and "tokens_per_s" in ours and "tokens_per_s" in trl:
            print(f"ratio {side}/trl: tokens/s {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x, "
                  f"peak memory {ours['peak_mb'] / trl['peak_mb']:.2f}x")
    print("JSON " + json.dumps({"args": vars(args), "results": results}))


if __name__ == "__main__":
    main()
