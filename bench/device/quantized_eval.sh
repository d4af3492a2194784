#!/usr/bin/env bash
# Issue 13's device table: peak memory and generated tokens/s of greedy and SC@5 evals through the refill engine,
# bf16 / nf4 / int8, at a published shape (random init, built on the GPU), 100 questions, 256 new tokens, EOS
# spread as in bench/eval_throughput.py; then the 8B NF4 eval under an 8 GiB cap (an 8 GB card emulated).
# Usage on the device (wheels carried in .whl: pydantic*, annotated-types, typing-inspection, bitsandbytes):
#   bash bench/device/quantized_eval.sh qwen3-4b     and     bash bench/device/quantized_eval.sh qwen3-8b cap
set -uo pipefail
shape=${1:-qwen3-4b}
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 GSM8K_TEST=${GSM8K_TEST:-.gsm8k/test.jsonl}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
common=(--shape "$shape" --questions 100 --max-new-tokens 256 --eos-spread 0.25 --variants refill)
for quantization in ${QUANTIZATIONS:-none nf4 int8}; do
  python3 bench/eval_throughput.py "${common[@]}" --quantization "$quantization" --samples 1 --temperature 0 \
    --batch-size 100 --json "$out/$shape-$quantization-greedy.json" 2>&1 | grep -v "Warning\|MatMul8bitLt" | tee -a "$out/$shape.log"
  python3 bench/eval_throughput.py "${common[@]}" --quantization "$quantization" --samples 5 --temperature 0.7 \
    --batch-size 200 --json "$out/$shape-$quantization-sc5.json" 2>&1 | grep -v "Warning\|MatMul8bitLt" | tee -a "$out/$shape.log"
done
if [ "${2:-}" = cap ]; then
  python3 bench/eval_throughput.py "${common[@]}" --quantization nf4 --samples 5 --temperature 0.7 --batch-size 200 \
    --memory-gib 8 --json "$out/$shape-nf4-sc5-8gib.json" 2>&1 | grep -v "Warning\|MatMul8bitLt" | tee -a "$out/$shape.log"
fi
