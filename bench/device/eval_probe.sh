#!/usr/bin/env bash
# Issue 16, eval: the decode kernel check, then the refill engine with the live-length kernel against the
# same engine with masked SDPA (side by side in one run) at the 0.5B and 8B shapes, then a profile of the
# 0.5B decode (eager). Wheels carried in .whl: pydantic, pydantic-core, annotated-types, typing-inspection;
# GSM8K test questions in .data/test.jsonl.
#   bash bench/device/eval_probe.sh [q05b] [q8b] [profile_q]
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 GSM8K_TEST=$PWD/.data/test.jsonl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 bench/decode_attention_check.py 2>&1 | tee "$out/kernel.log"
common="--samples 5 --max-new-tokens 256 --eos-spread 0.25 --batch-size 200"
python3 bench/eval_throughput.py --shape qwen2.5-0.5b --questions "${1:-600}" $common --variants "${VARIANTS:-refill,refill-sdpa}" \
  --json "$out/eval-05b.json" ${3:+--profile $3} 2>&1 | grep -v -i warn | tee "$out/eval-05b.log"
python3 bench/eval_throughput.py --shape qwen3-8b --questions "${2:-200}" $common --variants "${VARIANTS:-refill,refill-sdpa}" \
  --json "$out/eval-8b.json" 2>&1 | grep -v -i warn | tee "$out/eval-8b.log"
