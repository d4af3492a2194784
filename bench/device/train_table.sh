#!/usr/bin/env bash
# Issue 16's training table: our train job vs the TRL SFTTrainer recipe at the seeds' shapes (random init, built on
# the GPU), NF4 + LoRA, paged 8-bit AdamW, gradient checkpointing, 512 tokens. Wheels carried in .whl: pydantic*,
# annotated-types, typing-inspection, bitsandbytes, trl, datasets, dill, multiprocess.
#   bash bench/device/train_table.sh small-shapes     # 0.5B and 4B
#   bash bench/device/train_table.sh qwen3-8b         # 8B r16 both sides, then ours at r32
#   bash bench/device/train_table.sh all              # all three shapes in one run (fewer steps; 8B r32 last)
#   bash bench/device/train_table.sh graph-check      # CUDA-graphed vs eager training agree (bench/train_graph_check.py)
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
run() { python3 bench/train_throughput.py --sides "${SIDES:-trl,ours}" "$@" 2>&1 | tee -a "$out/train-raw.log" | grep -E "^(shape|trl |ours|ratio|JSON|--- )" | tee -a "$out/train.log"; }
case "${1:-small-shapes}" in
  graph-check)
    python3 bench/train_graph_check.py --shape qwen2.5-0.5b --steps 12 2>&1 | grep -vE "Warning|warn" | tail -n 16 | tee -a "$out/graph-check.log" ;;
  small-shapes)
    run --shape qwen2.5-0.5b --batch 8 --steps 40 --warmup 5
    run --shape qwen3-4b --batch 4 --steps 24 --warmup 4 ;;
  qwen3-8b)
    run --shape qwen3-8b --batch 2 --steps 24 --warmup 4
    run --shape qwen3-8b --batch 2 --steps 24 --warmup 4 --rank 32 --sides ours ;;
  all)
    run --shape qwen2.5-0.5b --batch 8 --steps ${STEPS_05B:-30} --warmup 5
    run --shape qwen3-4b --batch 4 --steps ${STEPS:-16} --warmup 4
    run --shape qwen3-8b --batch 2 --steps ${STEPS:-16} --warmup 4
    run --shape qwen3-8b --batch 2 --steps 10 --warmup 3 --rank 32 --sides ours ;;
esac
