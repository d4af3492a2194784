"""`workers check`: everything `workers start` needs, checked without taking a job.

Each check prints one line, and a failure one more with its fix. The exit status is 0 only
when the worker would run jobs: services reachable, schema current, artifact store writable,
clock close to the database's, versions matching the orchestrator's, and, where NVML sees a
GPU, CUDA and bitsandbytes' 4-bit kernels working in a child process (the worker's own parent
never initialises CUDA: prefork children do, and a context in the parent breaks them).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from db.settings import Settings, mask_url

if TYPE_CHECKING:
    from workers.gpu import GpuInfo

Status = Literal["ok", "warn", "skip", "FAIL"]
CLOCK_TOLERANCE_S = 10.0  # a third of the 30 s after which `orchestrator workers` shows a worker as gone
CUDA_CHILD_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def run_checks(settings: Settings, *, yield_to_owner: bool = True) -> list[Check]:
    from workers.gpu import probe_gpus

    gpus = probe_gpus()
    checks = [_gpus(gpus)]
    checks += _cuda_and_bitsandbytes() if gpus else [
        Check("cuda", "skip", "no NVIDIA GPU: nothing to initialise"),
        Check("bitsandbytes", "skip", "no NVIDIA GPU: 4-bit QLoRA needs CUDA (train jobs here fall back to CPU LoRA)"),
    ]
    checks.append(_queues(gpus[0].total_mb if gpus else 0, settings, yield_to_owner=yield_to_owner))
    checks.append(_guarded("broker", lambda: _broker(settings.broker_url)))
    database = _guarded("database", lambda: _database(settings.database_url))
    checks.append(database)
    checks.append(_guarded("artifact store", lambda: _artifact_store(settings.artifacts)))
    if database.status == "ok" and settings.database_url:
        url = settings.database_url
        checks += [_guarded("clock", lambda: _clock(url)), _guarded("versions", lambda: _versions(url))]
    else:
        checks += [Check("clock", "skip", "needs the database"), Check("versions", "skip", "needs the database")]
    return checks


def passed(checks: list[Check]) -> bool:
    return all(check.status != "FAIL" for check in checks)


def render(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    verdict = "this worker would run jobs" if passed(checks) else "this worker would NOT run jobs"
    return "\n".join([*lines, verdict])


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    """A check that raised is a failure with its first line, never a traceback."""
    try:
        return check()
    except Exception as error:  # noqa: BLE001  (whatever broke, the report goes on)
        first_line = (str(error).splitlines() or [""])[0][:300]
        return Check(name, "FAIL", f"{type(error).__name__}: {first_line}", "see the error above")


# --------------------------------------------------------------------------- hardware


def _gpus(gpus: list[GpuInfo]) -> Check:
    if not gpus:
        return Check(
            "gpu", "warn", "NVML sees no NVIDIA GPU: this worker takes CPU jobs only",
            "for GPU jobs install the NVIDIA driver (in Docker: the NVIDIA Container Toolkit, `--gpus all`)",
        )
    described = "; ".join(
        f"{g.name} {g.total_mb} MiB ({g.free_mb} MiB free), driver {g.driver}" for g in gpus
    )
    return Check("gpu", "ok", described)


# Run in a child: CUDA must never be initialised in the process that becomes the Celery parent.
_CUDA_CHILD = """
import json, torch
result = {"cuda": None, "bnb": None}
try:
    x = torch.randn(256, 256, device="cuda")
    torch.cuda.synchronize()
    result["cuda"] = f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, " \\
        f"matmul ok ({float((x @ x).sum().isfinite())})"
except Exception as error:
    result["cuda_error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
if result["cuda"]:
    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import dequantize_4bit, quantize_4bit
        w = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
        packed, state = quantize_4bit(w, quant_type="nf4")
        error = float((dequantize_4bit(packed, state) - w).abs().mean())
        result["bnb"] = f"bitsandbytes {bnb.__version__}, NF4 round trip mean error {error:.3f}"
    except Exception as error:
        result["bnb_error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
print("RESULT " + json.dumps(result))
"""


def _cuda_and_bitsandbytes() -> list[Check]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CUDA_CHILD], capture_output=True, text=True, timeout=CUDA_CHILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return [Check("cuda", "FAIL", f"a CUDA child process hung for {CUDA_CHILD_TIMEOUT_S:.0f} s",
                      "check `nvidia-smi`; reboot after a driver update")]
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return [Check("cuda", "FAIL", f"the CUDA child process failed: {tail}",
                      "install a torch build for your CUDA driver (pip install torch --index-url …/cu12x)")]
    result = json.loads(line.removeprefix("RESULT "))
    if not result["cuda"]:
        return [
            Check("cuda", "FAIL", f"CUDA does not work in a child process: {result.get('cuda_error')}",
                  "install a torch build matching the driver (python -c 'import torch; print(torch.version.cuda)')"),
            Check("bitsandbytes", "skip", "needs CUDA"),
        ]
    bnb = (
        Check("bitsandbytes", "ok", result["bnb"]) if result["bnb"] else
        Check("bitsandbytes", "FAIL", f"4-bit kernels do not load: {result.get('bnb_error')}",
              "pip install -U 'bitsandbytes>=0.45' (a build for your CUDA version)")
    )
    return [Check("cuda", "ok", result["cuda"]), bnb]


def _queues(vram_total_mb: int, settings: Settings, *, yield_to_owner: bool) -> Check:
    from jobs.resources.placement import queue_name, worker_class, worker_queues

    top = worker_class(vram_total_mb)
    watching = yield_to_owner and settings.gpu_probe != "none"
    policy = f"yields to the owner, probe {settings.gpu_probe}" if watching else "never yields to the owner"
    hours = f", hours {settings.hours}" if settings.hours else ""
    return Check(
        "queues", "ok",
        f"memory class {queue_name(top) if top else 'cpu'}; consumes {', '.join(worker_queues(vram_total_mb))}"
        f" ({policy}, idle {settings.idle_resume_s:g} s before resuming{hours})",
    )


# --------------------------------------------------------------------------- services


def _broker(url: str | None) -> Check:
    from db.broker import check_broker

    if not url:
        return Check("broker", "FAIL", "no broker URL", "pass --broker redis://… or set REASONFLEET_BROKER_URL")
    try:
        check_broker(url)
    except Exception as error:  # noqa: BLE001  (ServiceUnavailable, with the URL masked)
        return Check("broker", "FAIL", str(error), "start Redis, or check the host, port and password in the URL")
    return Check("broker", "ok", f"{mask_url(url)} answers")


def _database(url: str | None) -> Check:
    from db.migrate import ensure_schema
    from db.services import check_database
    from jobs.errors import SchemaOutOfDate

    if not url:
        return Check("database", "FAIL", "no database URL", "pass --db postgresql://… or set REASONFLEET_DATABASE_URL")
    try:
        check_database(url)
    except Exception as error:  # noqa: BLE001
        return Check("database", "FAIL", str(error), "start Postgres, or check the host, port and password in the URL")
    try:
        ensure_schema(url, auto_upgrade=False)
    except SchemaOutOfDate:
        return Check("database", "FAIL", f"{mask_url(url)} answers, but its schema is old",
                     "run `orchestrator db upgrade` where the orchestrator runs")
    return Check("database", "ok", f"{mask_url(url)} answers, schema current")


def _artifact_store(root: str) -> Check:
    """Write and delete a small object: a worker that cannot upload its adapter would lose its training."""
    from fsspec.core import url_to_fs

    from jobs.errors import RetryableError
    from jobs.resources import artifacts

    where = artifacts.normalise_root(root)
    shown = artifacts.without_userinfo(where)
    probe = artifacts.join(where, f".reasonfleet-check-{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    try:
        with artifacts.store_errors(where):
            fs, path = url_to_fs(probe)
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            fs.pipe_file(path, b"ok")
            fs.rm(path)
    except RetryableError as error:
        fix = "check the store's endpoint (AWS_ENDPOINT_URL_S3) and the network"
        return Check("artifact store", "FAIL", str(error), fix)
    except Exception as error:  # noqa: BLE001  (no permission, no such bucket, no s3fs, …)
        first_line = (str(error).splitlines() or [""])[0][:200]
        return Check(
            "artifact store", "FAIL", f"cannot write to {shown}: {type(error).__name__}: {first_line}",
            "pip install 'reasonfleet[s3]' for s3://, and set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            if where.startswith("s3://") else "set REASONFLEET_ARTIFACTS to a directory this user can write",
        )
    return Check("artifact store", "ok", f"{shown} writable")


def _clock(url: str) -> Check:
    from sqlalchemy import text

    from db.session import get_engine

    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        return Check("clock", "skip", "SQLite shares this machine's clock")
    with engine.connect() as connection:
        before = time.time()
        database_time = float(connection.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
        offset = (before + time.time()) / 2 - database_time  # local minus database, at the query's midpoint
    detail = f"{offset:+.2f} s from the database's clock"
    if abs(offset) > CLOCK_TOLERANCE_S:
        return Check("clock", "FAIL", detail + f" (more than {CLOCK_TOLERANCE_S:g} s: heartbeats would look stale)",
                     "turn on time synchronisation: `timedatectl set-ntp true` (Windows: Settings > Time > Sync now)")
    return Check("clock", "ok", detail)


def _versions(url: str) -> Check:
    from sqlalchemy import desc
    from sqlmodel import Session, col, select

    from db.models import Job
    from db.session import get_engine
    from jobs.resources.versions import RESULT_PACKAGES, installed_versions, mismatches

    here = installed_versions()
    mine = ", ".join(f"{package} {here[package]}" for package in RESULT_PACKAGES)
    with Session(get_engine(url)) as session:
        recent = session.exec(
            select(Job.spec).where(col(Job.kind).in_(("eval", "train", "audit"))).order_by(desc(col(Job.created_at)))
            .limit(50)
        ).all()
    recorded = next((spec["versions"] for spec in recent if isinstance(spec, dict) and spec.get("versions")), None)
    if recorded is None:
        return Check("versions", "ok", f"{mine}; no submitted job records the orchestrator's versions yet")
    differences = mismatches(recorded, here)
    if differences:
        wanted = " ".join(f"{package}=={version}" for package, version in sorted(recorded.items()))
        return Check("versions", "FAIL", "differ from the orchestrator's latest submit: " + "; ".join(differences),
                     f"pip install {wanted}  (or upgrade the orchestrator's machine to match)")
    return Check("versions", "ok", f"{mine}; match the orchestrator's latest submit")
