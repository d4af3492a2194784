#!/usr/bin/env bash
# Issue 16 probe (session 7), one device call: where the refill engine's time goes after the live-length kernel,
# and where the 0.5B training step's. The kernel check (split counts timed inside a CUDA graph; the fused temperature
# draw against torch's, and its distribution); at 0.5B (600 q) refill vs the same engine with the torch draw, with
# prefill timing, then admission at a quarter of the slots free; at 8B (200 q) the same pair, then the split heuristic
# at 16 programs per SM; a torch.profiler table of 3 training steps of ours at 0.5B. Wheels in .whl (pydantic set,
# bitsandbytes, trl, datasets, dill, multiprocess), GSM8K test questions in .data/test.jsonl.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 GSM8K_TEST=$PWD/.data/test.jsonl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 bench/decode_attention_check.py 2>&1 | tee "$out/kernel-check.log"
common="--samples 5 --max-new-tokens 256 --eos-spread 0.25 --batch-size 200"
run() { python3 bench/eval_throughput.py $common "$@" 2>&1 | grep -v -i warn; }
run --shape qwen2.5-0.5b --questions 600 --variants refill,refill-torchdraw --prefill-timing | tee "$out/eval-05b.log"
run --shape qwen2.5-0.5b --questions 600 --variants refill --admit-when-free 0.25 | tee "$out/eval-05b-admit.log"
run --shape qwen3-8b --questions 200 --variants refill,refill-torchdraw --prefill-timing | tee "$out/eval-8b.log"
run --shape qwen3-8b --questions 200 --variants refill --programs-per-sm 16 | tee "$out/eval-8b-splits.log"
python3 bench/train_throughput.py --shape qwen2.5-0.5b --batch 8 --steps 10 --warmup 4 --sides ours --profile \
  > "$out/train-05b-profile.log" 2>&1
grep -E "^(ours|shape)" "$out/train-05b-profile.log"
