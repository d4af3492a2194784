"""`workers start` for bench/gpu_fleet_e2e.py, with one hook: a real CUDA OOM on demand.

Before a job runs (Celery's task_prerun, in the pool child that runs it), a JSON file named by
RF_E2E_MEMORY_CAP_FILE, {"mib": 700, "attempts": 2}, caps that child's CUDA allocator with
torch.cuda.set_per_process_memory_fraction for the next `attempts` jobs, counting down in the
file. The Celery parent never touches CUDA: the cap is set in the child, when its job starts.

    python bench/e2e_worker.py start --broker … --db … [workers start options]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# As `workers start` does, before Celery is first imported (billiard reads it once).
os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")


def cap_memory(**_: object) -> None:
    path = os.environ.get("RF_E2E_MEMORY_CAP_FILE")
    if not path or not Path(path).exists():
        return
    cap = json.loads(Path(path).read_text() or "{}")
    if int(cap.get("attempts", 0)) <= 0:
        return
    Path(path).write_text(json.dumps({**cap, "attempts": int(cap["attempts"]) - 1}))
    import torch

    if not torch.cuda.is_available():
        return
    total = torch.cuda.get_device_properties(0).total_memory
    fraction = min(1.0, int(cap["mib"]) * 2**20 / total)
    torch.cuda.set_per_process_memory_fraction(fraction)
    print(f"E2E-HOOK pid {os.getpid()}: CUDA allocator capped at {cap['mib']} MiB ({fraction:.4f} of the card)",
          flush=True)


if __name__ == "__main__":
    from celery.signals import task_prerun

    task_prerun.connect(cap_memory, weak=False)
    from workers.cli import app

    app()
