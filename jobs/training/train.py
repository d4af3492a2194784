"""A train job: LoRA/QLoRA fine-tune on traces, checkpointed, adapter saved to the artifact store.

Called by workers and the embedded runner alike (workers.runner._run_train). A re-run of
the same job (same `job_key`) resumes from its last complete checkpoint.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from jobs.data.shipped import Shipped
from jobs.errors import RetryableError
from jobs.resources import artifacts
from jobs.resources.memory import MemoryTracker
from jobs.specs import TrainJobSpec, TrainParams
from jobs.training import checkpoint as train_checkpoint
from jobs.training import fused_lora, micro_step
from jobs.training.data import IGNORE_INDEX, Tokenized, load_examples, tokenize
from jobs.training.model import MODES, add_lora, choose_mode, load_base

# Examples are sorted by length within windows of this many batches, so a batch pads little
# while the order stays shuffled.
LENGTH_GROUP_BATCHES = 32
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class TrainOutcome:
    adapter_uri: str
    adapter_bytes: int
    adapter_sha256: str
    mode: str  # qlora-nf4-cuda | lora-cuda | lora-cpu
    device: str
    steps: int
    examples: int
    loss_curve: list[float]  # mean assistant-token loss per optimiser step
    tokens_seen: int  # non-padding tokens through the model, resumed steps included
    wall_s: float  # this attempt's training loop
    tokens_per_s: float  # this attempt's tokens / wall_s
    peak_memory_mb: float
    memory_kind: str
    resumed_from_step: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def job_uri(artifacts_root: str, job_key: str) -> str:
    return artifacts.join(artifacts.normalise_root(artifacts_root), "train", job_key)


def run(
    spec: TrainJobSpec,
    *,
    artifacts_root: str,
    job_key: str,
    progress: Callable[[int, int], None] | None = None,
    shipped: Shipped | None = None,
) -> TrainOutcome:
    """Train `spec`'s adapter and store it under `<artifacts_root>/train/<job_key>/adapter`.

    `progress(step, total)` is called after every optimiser step (and after that step's
    checkpoint, if any, is stored); an exception it raises stops training there, and a
    RetryableError (a yield to the GPU's owner) first checkpoints that step, so the retry resumes there.
    """
    params = spec.params
    mode = choose_mode(spec, params, cuda=torch.cuda.is_available())
    examples = load_examples(spec, params, shipped=shipped)  # before the model: a bad source fails fast
    model, tokenizer = load_base(spec, mode)
    model = add_lora(model, spec, params)
    data = [tokenize(e, tokenizer, max_length=params.max_length) for e in examples]
    loop = _Loop(model, data, spec, params, mode, pad_id=int(tokenizer.pad_token_id))
    where = job_uri(artifacts_root, job_key)
    state = train_checkpoint.load_latest(where, model=model, optimizer=loop.optimizer, scheduler=loop.scheduler)
    state = state or train_checkpoint.Progress()
    with MemoryTracker(MODES[mode]) as memory:
        started, tokens_before = time.perf_counter(), state.tokens_seen
        loop.train(state, where, progress)
        wall_s = time.perf_counter() - started
    stored = _save_adapter(model, artifacts.join(where, "adapter"))
    return TrainOutcome(
        adapter_uri=stored.uri, adapter_bytes=stored.size_bytes, adapter_sha256=stored.sha256, mode=mode,
        device=MODES[mode], steps=state.step, examples=len(examples), loss_curve=state.loss_curve,
        tokens_seen=state.tokens_seen, wall_s=wall_s,
        tokens_per_s=(state.tokens_seen - tokens_before) / max(wall_s, 1e-9),
        peak_memory_mb=memory.peak_mb, memory_kind=memory.kind, resumed_from_step=state.resumed_from,
    )


def _save_adapter(model: Any, uri: str) -> artifacts.Stored:
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)  # a peft model saves its adapter only, never the base
        return artifacts.upload_dir(Path(tmp), uri)


def plan_batches(lengths: list[int], *, batch_size: int, seed: int, epochs: float) -> list[list[int]]:
    """Micro-batches of example indices for the whole run, a pure function of its arguments.

    Each epoch is shuffled with its own seed, sorted by length within windows (little
    padding), cut into batches whose order is shuffled again; a fractional last epoch
    is cut short.
    """
    per_epoch = math.ceil(len(lengths) / batch_size)
    total = math.ceil(epochs * per_epoch)
    batches: list[list[int]] = []
    for epoch in range(math.ceil(epochs)):
        rng = random.Random(seed * 1_000_003 + epoch)
        order = list(range(len(lengths)))
        rng.shuffle(order)
        window = batch_size * LENGTH_GROUP_BATCHES
        for start in range(0, len(order), window):
            group = sorted(order[start : start + window], key=lambda i: -lengths[i])
            chunk = [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
            rng.shuffle(chunk)
            batches += chunk
    return batches[:total]


class _Loop:
    """Optimiser, scheduler and the step loop over a fixed batch plan."""

    def __init__(
        self, model: Any, data: list[Tokenized], spec: TrainJobSpec, params: TrainParams, mode: str, *, pad_id: int
    ) -> None:
        self.model, self.data, self.params, self.pad_id = model, data, params, pad_id
        self.device = MODES[mode]
        lengths = [len(d.input_ids) for d in data]
        self.batches = plan_batches(lengths, batch_size=params.batch_size, seed=spec.seed, epochs=params.epochs)
        self.total_steps = math.ceil(len(self.batches) / params.grad_accum)
        self.flat = _flatten([p for p in model.parameters() if p.requires_grad])
        self.optimizer = _optimizer(list(self.flat), params.learning_rate, cuda=self.device == "cuda")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _warmup_then_linear(self.total_steps))
        base = model.get_base_model()
        # Not with torch.compile: replaying a compiled layer's dropout outside its capture fails in inductor's RNG
        # ("Offset increment outside graph capture", H200, bench/results/2026-12-03-session8).
        self.micro = micro_step.micro_step(
            base.get_decoder(), base.get_output_embeddings(), chunk=params.loss_chunk, device=self.device,
            graphs=params.cuda_graphs and not params.compile, rows=params.batch_size, pad_id=pad_id,
        )

    def train(self, state: train_checkpoint.Progress, where: str, progress: Callable[[int, int], None] | None) -> None:
        self.model.train()
        while state.step < self.total_steps:
            micro = self.batches[state.step * self.params.grad_accum : (state.step + 1) * self.params.grad_accum]
            loss, tokens = self._step(micro)
            state.step += 1
            state.tokens_seen += tokens
            state.loss_curve.append(loss)
            saved = state.step % self.params.checkpoint_every == 0 and state.step < self.total_steps
            if saved:
                self._checkpoint(where, state)
            if progress:
                try:
                    progress(state.step, self.total_steps)
                except RetryableError:
                    # The job comes back later (the owner wants the GPU): keep every step done, not only
                    # those up to the last periodic checkpoint.
                    if not saved and state.step < self.total_steps:
                        self._checkpoint(where, state)
                    raise
        self.model.eval()

    def _checkpoint(self, where: str, state: train_checkpoint.Progress) -> None:
        train_checkpoint.save(
            where, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, progress=state
        )

    def _step(self, micro: list[list[int]]) -> tuple[float, int]:
        batches = [self._collate(indices) for indices in micro]
        # Every labelled token of the step weighs the same, however the micro-batches split them.
        labelled = max(1, sum(int((labels[:, 1:] != IGNORE_INDEX).sum()) for _, labels, _ in batches))
        losses = [self.micro(ids, labels, 1.0 / labelled) for ids, labels, _ in batches]
        torch.nn.utils.clip_grad_norm_(list(self.flat), MAX_GRAD_NORM)
        self.optimizer.step()
        fused_lora.adapters_changed()
        self.scheduler.step()
        for flat in self.flat:
            assert flat.grad is not None  # set by _flatten, zeroed in place, never dropped
            flat.grad.zero_()
        return float(torch.stack(losses).sum()) / labelled, sum(real for _, _, real in batches)

    def _collate(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(input ids, labels, non-padding tokens) of a right-padded micro-batch, on the CPU."""
        rows = [self.data[i] for i in indices]
        width = max(len(r.input_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for row, item in enumerate(rows):  # right padding: positions start at 0 for every row
            n = len(item.input_ids)
            ids[row, :n] = torch.tensor(item.input_ids)
            labels[row, :n] = torch.tensor(item.labels)
        return ids, labels, sum(len(r.input_ids) for r in rows)


def _flatten(trainable: list[torch.nn.Parameter]) -> dict[torch.nn.Parameter, list[torch.nn.Parameter]]:
    """One parameter per dtype and device holding the trainable weights, each weight now a view of it -> the
    weights it holds. The optimiser and the gradient clipping take these: a kernel or two a step instead of one
    per weight (336 LoRA matrices at Qwen2.5-0.5B; bitsandbytes' 8-bit optimiser has no multi-tensor kernel, and
    its per-weight launches were 6% of a launch-bound step: bench/results/2026-12-03-session7). Gradients too:
    each weight's `.grad` is a view of its flat parameter's, allocated here and zeroed in place after each step,
    so autograd accumulates into the flat gradient directly (and a captured CUDA graph, jobs.training.micro_step,
    has fixed buffers to accumulate into)."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.nn.Parameter]] = {}
    for weight in trainable:
        groups.setdefault((weight.dtype, weight.device), []).append(weight)
    flats: dict[torch.nn.Parameter, list[torch.nn.Parameter]] = {}
    for weights in groups.values():
        flat = torch.nn.Parameter(torch.cat([w.detach().reshape(-1) for w in weights]))
        flat.grad = torch.zeros_like(flat)
        sizes = [w.numel() for w in weights]
        views = zip(torch.split(flat.detach(), sizes), torch.split(flat.grad, sizes), strict=True)
        for weight, (view, grad) in zip(weights, views, strict=True):
            weight.data = view.view_as(weight)  # shares the flat storage: the optimiser's writes are the weight's
            weight.grad = grad.view_as(weight)
        flats[flat] = weights
    return flats


def _optimizer(trainable: list[torch.nn.Parameter], lr: float, *, cuda: bool) -> torch.optim.Optimizer:
    if cuda:
        from bitsandbytes.optim.adamw import PagedAdamW8bit  # its home: bitsandbytes.optim re-exports it implicitly

        # Paged 8-bit AdamW: optimiser state in 8 bits, paged to host memory under pressure.
        paged: torch.optim.Optimizer = PagedAdamW8bit(  # type: ignore[no-untyped-call]  # untyped in bitsandbytes
            trainable, lr=lr, weight_decay=0.0
        )
        return paged
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)


def _warmup_then_linear(total_steps: int) -> Callable[[int], float]:
    warmup = max(1, min(10, total_steps // 20))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.1, 1.0 - (step - warmup) / max(1, total_steps - warmup))

    return factor
