"""Generation with refilled slots, the eval default: a finished row's slot takes the next sample at once.

The batched engine (`jobs.generation.engine.generate_samples`, engine="batched") runs fixed
batches: a row that reaches EOS rides along, still paying its share of every decode
step, until the batch's longest row ends. Here a fixed number of slots share one
preallocated KV cache in which every row has its own length: each decode step writes
each row's new key/value at that row's position, and each row attends to its own
positions only: on CUDA a Triton kernel reads just those (jobs.generation.decode_attention,
with RMSNorm and rotary fused: jobs.generation.fused_decode), elsewhere SDPA masks the
rest of the cache. When a row ends (EOS or max_new_tokens) its slot is free; once enough
slots are free, waiting prompts are prefilled together in one left-padded pass and each
prompt's KV goes to its n samples' slots (one prefill per question). The decode step
always has the same shapes, so on CUDA it is captured once as a CUDA graph and replayed
(no per-step kernel launches from Python).

Sampling is an exact draw from the softmax, from a generator seeded by the job's seed: where
Triton runs and temperature is the only filter, one uniform per row and the inverse CDF in two
kernels (jobs.generation.sample_kernel); otherwise Gumbel-max in torch (argmax of the filtered
logits plus Gumbel noise). Slot assignment is deterministic, so
the same job gives the same samples again on the same device (not the same samples as
the batched engine: the draws are made in another order). Supports EOS and
max_new_tokens stopping and transformers' filters (jobs.generation.filters: repetition
penalty, temperature, top_k, top_p, min_p); stop strings, logits processors and
sliding-window attention need the batched engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Any

import torch

from jobs.errors import FatalJobError
from jobs.generation.decode_attention import available as triton_available
from jobs.generation.filters import gumbel_draw, penalise_repeats, temperature_only
from jobs.generation.fused_decode import FusedDecodeOps
from jobs.generation.rows import (
    GREEDY,
    Conversation,
    Generation,
    Sampling,
    cache_argument,
    encode_prompt,
    eos_token_ids,
    longest_first,
)
from jobs.generation.sample_kernel import sample_softmax
from jobs.generation.slot_cache import (
    DecodeKernel,
    SlotCache,
    decode_kernel,
    packed_attention,
    prefill_attention_kernels,
)
from jobs.models.loading import LoadedModel
from jobs.resources import backoff
from jobs.scoring.thinking import thinking_count

# Admitting waits until this fraction of the slots is free (or nothing else runs), so that prompts are prefilled
# several at a time rather than one forward pass each: a prefill has a fixed cost (a small model's is launching
# its kernels: ~26 ms for Qwen2.5-0.5B on an H200 host, 9 decode steps) and free slots idle until it runs. With S
# slots freeing r a step, waiting for F costs P/F + F·step/(2rS) a slot, least at F = sqrt(2rSP/step): ~64 of 200
# at 0.5B, ~25 at 8B. A quarter favours small models at a small cost to large ones; its measured gain (0.5B: 11.7
# against 13.1 s, separate processes) is not yet clean of other first-run costs (bench/results/2026-12-03-session7).
ADMIT_WHEN_FREE = 1 / 4

# (question index of each slot [slots], tokens each slot has generated [slots], logits [slots, vocab])
# -> logits, all on the device; the benchmark forces EOS with it. Free slots hold stale values.
RowHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def generate_samples_refill(
    loaded: LoadedModel,
    conversations: list[Conversation],
    *,
    max_new_tokens: int,
    slots: int,
    seed: int,
    sampling: Sampling = GREEDY,
    hook: RowHook | None = None,
    cuda_graph: bool | None = None,
    decode_attention: DecodeKernel = "auto",
    stats: dict[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Generation]]:
    """`sampling.n` Generations per conversation, in input order, through `slots` refilled rows.

    `cuda_graph` (default: on CUDA) captures the decode step once and replays it.
    `decode_attention` (default: `live` where Triton runs, i.e. on CUDA from Ampere on, else `sdpa`) picks the decode
    step's attention: each row's live positions only (with fused RMSNorms and rotary), or masked SDPA over the
    cache's capacity (transformers' layers otherwise).
    `stats`, if given, receives the number of decode steps and of prefill passes run, the
    seconds spent in each kind, and the slots the run ended with. `progress(done, total)`
    is called each time all samples of a question have ended.

    On torch.cuda.OutOfMemoryError the run starts again with half the slots (at least n),
    keeping the questions already finished; the samples of the others are drawn again,
    from a generator seeded by `seed` and the attempt. At n slots the error is fatal.
    """
    prompts = [encode_prompt(loaded.tokenizer, c) for c in conversations]
    results: list[list[Generation] | None] = [None] * len(prompts)
    counts: dict[str, float] = {"steps": 0, "prefills": 0, "prefill_s": 0.0, "decode_s": 0.0}
    size, attempt = max(sampling.n, min(slots, sampling.n * len(prompts))), 0  # no slot that could never fill
    graph = cuda_graph if cuda_graph is not None else loaded.device.startswith("cuda")
    kernel = decode_kernel(loaded.model, decode_attention)
    counts["live_attention"] = float(kernel == "live")
    while True:
        # Long prompts first (popped from the end): fewer late stragglers, and an
        # out-of-memory error shows early.
        waiting = [q for q in longest_first([len(p) for p in prompts])[::-1] if results[q] is None]
        try:
            # The engine lives in _drain's frame only, so its cache is gone once the error is handled.
            build = partial(_Engine, loaded, prompts, size, max_new_tokens, seed + 1_000_003 * attempt,
                            sampling, hook, graph, kernel)
            _drain(build, waiting, results, counts, progress)
            break
        except torch.cuda.OutOfMemoryError as error:
            if size == sampling.n:
                raise FatalJobError(f"out of memory with {size} slots (one question's samples): {error}") from None
        size, attempt = max(sampling.n, size // 2), attempt + 1
        backoff.free_cuda()
    if stats is not None:
        stats.update(counts, slots=size)
    assert all(rows is not None for rows in results), "every question's samples ended"
    return [rows for rows in results if rows is not None]


def _drain(
    build: Callable[[], _Engine],
    waiting: list[int],
    results: list[list[Generation] | None],
    counts: dict[str, float],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Run `waiting` (popped from the end) through a new engine's slots; finished questions go to `results`."""
    engine = build()
    counts["cuda_graph"] = float(engine.graph is not None)
    n, total = engine.sampling.n, len(results)
    samples: dict[int, list[Generation | None]] = {}

    def finish(ended: list[tuple[int, int, Generation]]) -> None:
        for question, sample, generation in ended:
            rows = samples.setdefault(question, [None] * n)
            rows[sample] = generation
            if all(g is not None for g in rows):
                results[question] = [g for g in rows if g is not None]
                if progress:
                    progress(sum(r is not None for r in results), total)

    gather = max(n, int(engine.slots * ADMIT_WHEN_FREE))
    while waiting or engine.busy():
        if waiting and len(engine.free) >= min(gather, n * len(waiting)) or not engine.busy():
            admitted = [waiting.pop() for _ in range(min(len(engine.free) // n, len(waiting)))]
            if backoff.before_batch is not None:
                backoff.before_batch(admitted)
            started = time.perf_counter()
            finish(engine.admit(admitted))  # a first token may already end a row
            counts["prefills"] += 1
            counts["prefill_s"] += time.perf_counter() - started  # admit and step end in a device sync: device time too
        if engine.busy():
            started = time.perf_counter()
            finish(engine.step())
            counts["steps"] += 1
            counts["decode_s"] += time.perf_counter() - started


class _Engine:
    """Slots, their cache and the decode step (captured as a CUDA graph where asked).

    Per-slot state lives on the device (last token, position, tokens generated, whether
    active), so a decode step costs a graph replay, a draw and one small transfer: the
    slots that just ended. Their tokens are copied to the host only then.
    """

    def __init__(self, loaded: LoadedModel, prompts: list[list[int]], slots: int, max_new_tokens: int, seed: int,
                 sampling: Sampling, hook: RowHook | None, cuda_graph: bool, kernel: DecodeKernel) -> None:
        self.loaded, self.model, self.device, self.kernel = loaded, loaded.model, loaded.device, kernel
        self.fused = FusedDecodeOps(self.model) if kernel == "live" else None
        self.prompts, self.max_new_tokens, self.sampling, self.hook = prompts, max_new_tokens, sampling, hook
        config = self.model.config
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", False):
            raise FatalJobError(
                f"{loaded.label} uses sliding-window attention, which the refill engine does not handle: "
                "set `eval.engine: batched` in the sweep"
            )
        capacity = max(map(len, prompts), default=1) + max_new_tokens
        self.cache = SlotCache(config, slots, capacity, self.device, next(self.model.parameters()).dtype)
        self.cache_arg = cache_argument(self.model)
        self.positions = torch.arange(capacity, device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.fused_draw = temperature_only(sampling) and not sampling.greedy and triton_available(self.device)
        self.eos = torch.tensor(sorted(eos_token_ids(loaded)), device=self.device)
        device = self.device
        # Each slot's last token: the next step's input.
        self.ids = torch.zeros((slots, 1), dtype=torch.long, device=device)
        self.tokens = torch.zeros((slots, max_new_tokens), dtype=torch.long, device=device)
        self.counts = torch.zeros(slots, dtype=torch.long, device=device)  # tokens generated
        self.active = torch.zeros(slots, dtype=torch.bool, device=device)
        self.question_of = torch.zeros(slots, dtype=torch.long, device=device)
        self.slots = slots
        self.free = list(range(slots))
        self.owner: dict[int, tuple[int, int, float]] = {}  # slot -> (question, sample, admitted at)
        self.logits: torch.Tensor | None = None
        # Tokens each slot's row has seen (prompt and output), for the repetition penalty only:
        # [slots, vocab] booleans, allocated at the first draw (the logits give the vocabulary size).
        self.seen: torch.Tensor | None = None
        self.graph: Any = None
        self.graph_failure: str | None = None  # why the decode step runs without a CUDA graph, when it was asked
        if cuda_graph:
            try:
                self.capture()
            except RuntimeError as error:
                # A kernel that cannot be captured (some quantized matmuls sync with the host): decode eagerly,
                # slower but the same tokens; the run records why (stats["graph_failure"]).
                self.graph, self.logits, self.graph_failure = None, None, f"{type(error).__name__}: {error}"[:300]
                torch.cuda.synchronize()
                warning = f"refill engine: decode steps without a CUDA graph ({self.graph_failure})"
                warnings = loaded.info.setdefault("warnings", [])
                if warning not in warnings:  # the run records it (EvalOutcome.run_info)
                    warnings.append(warning)

    def busy(self) -> bool:
        return bool(self.owner)

    def admit(self, questions: list[int]) -> list[tuple[int, int, Generation]]:
        """Prefill the questions' prompts in one left-padded pass, each into n free slots, and
        draw each sample's first token; returns the rows that token already ended."""
        n = self.sampling.n
        prompts = [self.prompts[q] for q in questions]
        width = max(map(len, prompts))
        pads = [width - len(p) for p in prompts]
        targets = [self.free[i * n : (i + 1) * n] for i in range(len(questions))]
        self.free = self.free[n * len(questions) :]
        ids = torch.tensor([[0] * pad + p for pad, p in zip(pads, prompts, strict=True)], device=self.device)
        shift = torch.tensor(pads, device=self.device)[:, None]
        keys = self.positions[None, :width] >= shift  # [rows, width]: not padding
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        # Padding queries see themselves only: a row with nothing to attend to would be NaN.
        mask = (causal & keys[:, None, :]) | torch.eye(width, dtype=torch.bool, device=self.device)
        self.cache.prefill_into(list(zip(targets, pads, strict=True)), width)
        started = time.perf_counter()  # a sample's latency counts its prompt's prefill
        with torch.inference_mode(), prefill_attention_kernels(self.device), self._fused():
            out = self.model(
                input_ids=ids,
                position_ids=(self.positions[None, :width] - shift).clamp(min=0),
                attention_mask=mask[:, None],
                **{self.cache_arg: self.cache},
                use_cache=True,
                logits_to_keep=1,
            )
        self.cache.mode = "decode"
        slots = [slot for group in targets for slot in group]
        for question, group in zip(questions, targets, strict=True):
            for sample, slot in enumerate(group):
                self.owner[slot] = (question, sample, started)
        index = torch.tensor(slots, device=self.device)
        self.question_of[index] = torch.tensor(questions, device=self.device).repeat_interleave(n)
        self.counts[index] = 0
        logits = out.logits[:, -1].float().repeat_interleave(n, dim=0)
        if self.sampling.repetition_penalty != 1.0:
            self._see_prompts(prompts, targets, logits.shape[-1])
        first = self._draw(logits, index)
        self.tokens[index, 0] = first
        self.ids[index, 0] = first
        self.cache.write_at[index] = torch.tensor([len(p) for p in prompts], device=self.device).repeat_interleave(n)
        self.counts[index] = 1
        self.active[index] = True
        return self._collect(index)

    def step(self) -> list[tuple[int, int, Generation]]:
        """One decode step for every slot; returns the rows that ended at it."""
        if self.graph is not None:
            self.graph.replay()
            logits = self.logits
        else:
            logits = self._decode()
        assert logits is not None
        drawn = self._draw(logits, None)
        live = self.active
        slot_ids = torch.arange(len(self.ids), device=self.device)
        if self.seen is not None:
            self.seen[slot_ids, drawn] |= live
        at = self.counts.clamp(max=self.max_new_tokens - 1)
        self.tokens[slot_ids, at] = torch.where(live, drawn, self.tokens[slot_ids, at])
        self.ids[:, 0] = torch.where(live, drawn, self.ids[:, 0])
        self.counts += live
        self.cache.write_at += live
        return self._collect(None)

    def _collect(self, among: torch.Tensor | None) -> list[tuple[int, int, Generation]]:
        """Rows (among `among`, else all slots) whose last token is EOS or that used their budget: freed, returned."""
        last = self.tokens.gather(1, (self.counts - 1).clamp(min=0)[:, None])[:, 0]
        at_eos = torch.isin(last, self.eos)
        ended = self.active & (at_eos | (self.counts >= self.max_new_tokens))
        if among is not None:
            ended = ended & torch.zeros_like(ended).index_fill_(0, among, True)
        slots = ended.nonzero()[:, 0].tolist()  # the step's one host sync
        if not slots:
            return []
        index = torch.tensor(slots, device=self.device)
        self.active[index] = False
        counts, eos_flags, rows = self.counts[index].tolist(), at_eos[index].tolist(), self.tokens[index].tolist()
        now = time.perf_counter()
        done = []
        for slot, count, flag, row in zip(slots, counts, eos_flags, rows, strict=True):
            question, sample, started = self.owner.pop(slot)
            self.free.append(slot)
            done.append((question, sample, self._generation(row[:count], flag, now - started)))
        self.free.sort()
        return done

    def _generation(self, ids: list[int], at_eos: bool, latency: float) -> Generation:
        return Generation(
            text=self.loaded.tokenizer.decode(ids, skip_special_tokens=True), output_tokens=len(ids),
            truncated=not at_eos and len(ids) >= self.max_new_tokens, latency_s=latency, token_ids=tuple(ids),
            thinking_tokens=thinking_count(ids, self.loaded.think_ids),
        )

    def _decode(self) -> torch.Tensor:
        visible = (self.positions[None, :] <= self.cache.write_at[:, None])[:, None, None, :]  # [slots, 1, 1, capacity]
        # The live kernel reads each row's length instead of the mask (kept: transformers builds none then).
        lengths = {"decode_lengths": self.cache.write_at + 1} if self.kernel == "live" else {}
        with torch.inference_mode(), packed_attention(self.model, self.kernel), self._fused():
            out = self.model(
                input_ids=self.ids, position_ids=self.cache.write_at[:, None], attention_mask=visible,
                use_cache=True, **{self.cache_arg: self.cache}, **lengths,
            )
        logits: torch.Tensor = out.logits[:, -1]  # the model is untyped (LoadedModel.model: Any)
        return logits

    def _fused(self) -> AbstractContextManager[None]:
        """The live path also fuses RMSNorms and rotary embeddings (jobs.generation.fused_decode): a step at these
        batch sizes is bound by small kernels. The sdpa path keeps transformers' own layers."""
        return self.fused.active() if self.fused is not None else nullcontext()

    def capture(self) -> None:
        """Record the decode step as a CUDA graph (after warm-up runs on a side stream, as CUDA requires)."""
        stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # untyped in torch
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._decode()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._decode()

    def _draw(self, logits: torch.Tensor, slots: torch.Tensor | None) -> torch.Tensor:
        """Next token of each row of `logits` (the slots `slots`, else every slot), in the model's dtype or float32:
        greedy's argmax and the fused draw read either as it is (a float32 copy of 200 x 152k logits costs more
        than a small model's decode step)."""
        if self.hook is not None:
            index = slots if slots is not None else slice(None)
            logits = self.hook(self.question_of[index], self.counts[index], logits)
        if self.seen is not None:
            index = slots if slots is not None else slice(None)
            logits = penalise_repeats(logits.float(), self.seen[index], self.sampling.repetition_penalty)
        drawn = logits.argmax(-1) if self.sampling.greedy else self._sample(logits)
        if slots is not None and self.seen is not None:
            self.seen[slots, drawn] = True  # a first token; step() marks the later ones of live rows
        return drawn

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """An exact draw from the softmax of the filtered logits: by its inverse CDF in two Triton kernels where they
        run and temperature is the only filter (jobs.generation.sample_kernel), else Gumbel-max in torch."""
        if self.fused_draw:
            uniform = torch.rand(logits.shape[0], generator=self.generator, device=self.device)
            return sample_softmax(logits, self.sampling.temperature, uniform)
        return gumbel_draw(logits, self.sampling, self.generator)

    def _see_prompts(self, prompts: list[list[int]], targets: list[list[int]], vocab: int) -> None:
        """Mark each admitted prompt's tokens as seen in its samples' slots (their earlier rows' marks cleared)."""
        if self.seen is None:
            self.seen = torch.zeros((self.slots, vocab), dtype=torch.bool, device=self.device)
        for prompt, group in zip(prompts, targets, strict=True):
            rows = torch.tensor(group, device=self.device)
            self.seen[rows] = False
            ids = torch.tensor(prompt, device=self.device)
            self.seen[rows[:, None], ids[ids < vocab][None, :]] = True  # ids beyond the logits cannot repeat
