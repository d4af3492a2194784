#!/usr/bin/env bash
# Issue 16's eval table, one run: the decode kernel check (split counts and the fused draw timed inside CUDA graphs,
# the draw's distribution); fp32 greedy equality of the engines on CUDA; SC@5 with 256 new tokens and EOS forced per
# question in [64, 256] (--eos-spread 0.25), 200 slots: the refill engine (live-length attention, fused norms and
# rotary, fused temperature draw) against the same engine with the torch draw and with masked SDPA (the engine before
# this issue), side by side, at the Qwen2.5-0.5B shape (600 q) and the Qwen3-8B shape (200 q); refill against
# transformers' continuous batching on the same 100 questions (0.5B); with PROFILE_Q=N, a profile of the 8B decode
# (eager) on N questions. Wheels in .whl: pydantic, pydantic-core, annotated-types, typing-inspection; GSM8K test
# questions in .data/test.jsonl.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  ${WHEELS:-.whl}/pydantic*.whl ${WHEELS:-.whl}/annotated_types*.whl ${WHEELS:-.whl}/typing_inspection*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 GSM8K_TEST=$PWD/.data/test.jsonl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
python3 bench/decode_attention_check.py 2>&1 | tee "$out/kernel-check.log"
python3 bench/refill_cuda_check.py 2>&1 | grep -v -i warn | tee "$out/cuda-check.log"
common="--samples 5 --max-new-tokens 256 --eos-spread 0.25 --batch-size 200"
run() { python3 bench/eval_throughput.py $common "$@" 2>&1 | grep -v -i warn; }
run --shape qwen2.5-0.5b --questions 600 --variants refill,refill-torchdraw,refill-sdpa --prefill-timing --json "$out/eval-05b.json" \
  | tee "$out/eval-05b.log"
run --shape qwen2.5-0.5b --questions 100 --variants refill,continuous --json "$out/eval-05b-cb.json" | tee "$out/eval-05b-cb.log"
run --shape qwen3-8b --questions 200 --variants refill,refill-torchdraw,refill-sdpa --prefill-timing --json "$out/eval-8b.json" \
  --profile ${PROFILE_Q:-0} > "$out/eval-8b.log"
grep -E "^(model|device|refill|profile|  prefill)" "$out/eval-8b.log"
