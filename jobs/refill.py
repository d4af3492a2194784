"""Generation with refilled slots: a finished row's slot takes the next sample at once.

`jobs.generation.generate_samples` runs fixed batches: a row that reaches EOS rides
along, still paying its share of every decode step, until the batch's longest row ends.
Here a fixed number of slots share one preallocated KV cache in which every row has its
own length: each decode step writes each row's new key/value at that row's position and
masks each row's attention to its own positions. When a row ends (EOS or
max_new_tokens) its slot is free; when a question's n samples fit in the free slots, the
question's prompt is prefilled once and its KV copied into those n slots. The decode
step always has the same shapes, so on CUDA it is captured once as a CUDA graph and
replayed (no per-step kernel launches from Python).

Sampling is Gumbel-max (argmax of logits / T plus Gumbel noise, an exact draw from the
softmax) from a generator seeded by the job's seed; slot assignment is deterministic, so
the same job gives the same samples again on the same device (not the same samples as
the batched engine: the draws are made in another order). Supports EOS and
max_new_tokens stopping, temperature and top_p; stop strings and logits processors are
the batched engine's (`generate_samples`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from jobs.generation import (
    GREEDY,
    Conversation,
    Generation,
    Sampling,
    encode_prompt,
    eos_token_ids,
)
from jobs.model_loading import LoadedModel

# (prompt ids, tokens generated so far) of each row, logits [rows, vocab] -> logits; the benchmark forces EOS with it
RowHook = Callable[[list[tuple[list[int], int]], torch.Tensor], torch.Tensor]


class SlotCache:
    """Per-layer KV tensors [slots, kv_heads, capacity, head_dim], each slot with its own length.

    Duck-types the one method transformers' attention layers call on a cache, `update`.
    Before a forward the caller sets `mode`: "prefill" writes the call's keys/values at
    positions [0, L) of every slot in `targets` and returns them as they are (the prompt
    attends to itself); "decode" writes each row's key/value at `write_at[row]` and returns
    the whole cache, which the caller's mask limits to each row's own positions.
    """

    def __init__(self, config: Any, slots: int, capacity: int, device: str, dtype: torch.dtype) -> None:
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.rows = torch.arange(slots, device=device)
        self.write_at = torch.zeros(slots, dtype=torch.long, device=device)
        self.targets: torch.Tensor | None = None
        self.mode = "decode"

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.mode == "prefill":
            length = key.shape[2]
            keys[self.targets, :, :length] = key[0].to(keys.dtype)
            values[self.targets, :, :length] = value[0].to(values.dtype)
            return key, value
        keys[self.rows, :, self.write_at] = key[:, :, 0].to(keys.dtype)
        values[self.rows, :, self.write_at] = value[:, :, 0].to(values.dtype)
        return keys, values


@dataclass
class _Row:
    question: int
    sample: int
    length: int  # tokens in the cache: prompt + generated so far
    generated: list[int] = field(default_factory=list)
    started: float = 0.0


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
    stats: dict[str, int] | None = None,
) -> list[list[Generation]]:
    """`sampling.n` Generations per conversation, in input order, through `slots` refilled rows.

    `cuda_graph` (default: on CUDA) captures the decode step once and replays it.
    `stats`, if given, receives the number of decode steps and prefills run.
    """
    prompts = [encode_prompt(loaded.tokenizer, c) for c in conversations]
    n = sampling.n
    slots = max(slots, n)
    engine = _Engine(loaded, slots, max(map(len, prompts), default=1) + max_new_tokens, seed, sampling, hook, prompts)
    if cuda_graph if cuda_graph is not None else loaded.device.startswith("cuda"):
        engine.capture()
    results: list[list[Generation | None]] = [[None] * n for _ in prompts]
    waiting = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))  # long prompts first: fewer late stragglers
    waiting.reverse()  # pop() from the end
    eos = eos_token_ids(loaded)

    def finish(advanced: list[tuple[int, _Row]]) -> None:
        for slot, row in advanced:
            token = row.generated[-1]
            if token in eos or len(row.generated) >= max_new_tokens:
                results[row.question][row.sample] = _generation(loaded, row, token in eos, max_new_tokens)
                engine.release(slot)

    steps = prefills = 0
    while waiting or engine.busy():
        while waiting and engine.free_slots() >= n:
            finish(engine.admit(waiting.pop()))  # a first token may already end a row
            prefills += 1
        if engine.busy():
            finish(engine.step())
            steps += 1
    if stats is not None:
        stats.update(steps=steps, prefills=prefills)
    return [[g for g in per_question if g is not None] for per_question in results]


def _generation(loaded: LoadedModel, row: _Row, ended: bool, max_new_tokens: int) -> Generation:
    ids = row.generated
    return Generation(
        text=loaded.tokenizer.decode(ids, skip_special_tokens=True),
        output_tokens=len(ids),
        truncated=not ended and len(ids) >= max_new_tokens,
        latency_s=time.perf_counter() - row.started,
        token_ids=tuple(ids),
    )


class _Engine:
    """Slots, their cache and the decode step (captured as a CUDA graph where asked)."""

    def __init__(self, loaded: LoadedModel, slots: int, capacity: int, seed: int, sampling: Sampling,
                 hook: RowHook | None, prompts: list[list[int]]) -> None:
        self.loaded, self.model, self.device = loaded, loaded.model, loaded.device
        self.sampling, self.hook, self.prompts = sampling, hook, prompts
        config = self.model.config
        dtype = next(self.model.parameters()).dtype
        self.cache = SlotCache(config, slots, capacity, self.device, dtype)
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", False):
            raise ValueError("refilled generation does not handle sliding-window attention; use generate_samples")
        self.rows: list[_Row | None] = [None] * slots
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        pad = loaded.tokenizer.pad_token_id
        self.ids = torch.full((slots, 1), pad if pad is not None else 0, dtype=torch.long, device=self.device)
        self.positions = torch.arange(capacity, device=self.device)
        self.logits: torch.Tensor | None = None
        self.graph: Any = None

    # ------------------------------------------------------------------ slots

    def free_slots(self) -> int:
        return sum(r is None for r in self.rows)

    def busy(self) -> bool:
        return any(r is not None for r in self.rows)

    def release(self, slot: int) -> None:
        self.rows[slot] = None

    def admit(self, question: int) -> list[tuple[int, _Row]]:
        """Prefill a question's prompt once into n free slots and draw each sample's first token."""
        prompt = self.prompts[question]
        targets = [i for i, r in enumerate(self.rows) if r is None][: self.sampling.n]
        ids = torch.tensor([prompt], device=self.device)
        length = len(prompt)
        causal = torch.ones(length, length, dtype=torch.bool, device=self.device).tril()[None, None]
        self.cache.mode, self.cache.targets = "prefill", torch.tensor(targets, device=self.device)
        with torch.inference_mode():
            out = self.model(
                input_ids=ids, position_ids=self.positions[None, :length], attention_mask=self._masks(causal),
                past_key_values=self.cache, use_cache=True, logits_to_keep=1,
            )
        self.cache.mode = "decode"
        started = time.perf_counter()
        logits = out.logits[:, -1].float().expand(len(targets), -1)
        new_rows = [_Row(question, sample, length, started=started) for sample in range(len(targets))]
        first = self._draw(logits, [(prompt, 0)] * len(targets)).tolist()
        for slot, row, token in zip(targets, new_rows, first, strict=True):
            row.generated.append(token)
            self.rows[slot] = row
        return list(zip(targets, new_rows, strict=True))

    # ------------------------------------------------------------------ decode

    def step(self) -> list[tuple[int, _Row]]:
        """One decode step for every occupied slot; returns the (slot, row) pairs that advanced."""
        occupied = [(i, r) for i, r in enumerate(self.rows) if r is not None]
        if not occupied:
            return []
        # Free slots decode a pad at position 0 into their own (unused) cache rows.
        feed = [0] * len(self.rows)
        at = [0] * len(self.rows)
        for slot, row in occupied:
            feed[slot], at[slot] = row.generated[-1], row.length
        self.ids.copy_(torch.tensor(feed, device="cpu").view(-1, 1), non_blocking=True)
        self.cache.write_at.copy_(torch.tensor(at, device="cpu"), non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            logits = self.logits
        else:
            logits = self._decode()
        chosen = [slot for slot, _ in occupied]
        index = torch.tensor(chosen, device=self.device)
        drawn = self._draw(logits[index].float(), [(self.prompts[r.question], len(r.generated)) for _, r in occupied]).tolist()
        for (_, row), token in zip(occupied, drawn, strict=True):
            row.length += 1
            row.generated.append(token)
        return occupied

    def _decode(self) -> torch.Tensor:
        visible = (self.positions[None, :] <= self.cache.write_at[:, None])[:, None, None, :]  # [slots, 1, 1, capacity]
        with torch.inference_mode():
            out = self.model(
                input_ids=self.ids, position_ids=self.cache.write_at[:, None], attention_mask=self._masks(visible),
                past_key_values=self.cache, use_cache=True,
            )
        return out.logits[:, -1]

    def capture(self) -> None:
        """Record the decode step as a CUDA graph (after warm-up runs on a side stream, as CUDA requires)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._decode()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._decode()

    @staticmethod
    def _masks(mask: torch.Tensor) -> torch.Tensor:
        # A 4D boolean mask (True: may attend) is used as given by transformers' mask helpers.
        return mask

    def _draw(self, logits: torch.Tensor, rows: list[tuple[list[int], int]]) -> torch.Tensor:
        if self.hook is not None:
            logits = self.hook(rows, logits)
        if self.sampling.greedy:
            return logits.argmax(-1)
        logits = logits / self.sampling.temperature
        if self.sampling.top_p < 1.0:
            logits = _top_p(logits, self.sampling.top_p)
        uniform = torch.rand(logits.shape, generator=self.generator, device=logits.device).clamp_(1e-20, 1.0)
        return (logits - torch.log(-torch.log(uniform))).argmax(-1)


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches top_p (always the top one)."""
    ordered, order = logits.sort(-1, descending=True)
    cumulative = ordered.softmax(-1).cumsum(-1)
    drop = cumulative - ordered.softmax(-1) >= top_p
    return logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
