"""The fleet on a real GPU, end to end (issue #14); run through scripts/gpu_fleet_e2e.sh.

Phases, each printing PASS/FAIL/SKIP and going on whatever the previous one did:
  model     a random-init Qwen2.5-0.5B-shaped model (152k vocab) built on the GPU and saved
  check     `workers check` (GPU, CUDA, bitsandbytes NF4, services, store, clock, versions)
  worker    `workers start` (Celery, REASONFLEET_HEARTBEAT_S=1, --idle-resume-s 5) and its registration
  submit    `orchestrator submit` of a sweep: one QLoRA train job and its dependent evals
  yield     mid-train, a stand-in game (a second CUDA process): the job is handed back within 10 s,
            with a checkpoint at that step; after the game, the job resumes from that step
  chain     train -> evals finish, results in the database, the leaderboard
  oom       a second sweep whose train job meets a real CUDA OOM (allocator capped in the job's
            process): batch halved on the same class, then one class up, then it runs uncapped
In --dry mode (CPU, no driver) NVML is tests/fake_nvml (readings written by this script, the
worker's job process and the game listed under translated "host" PIDs, as in a container), the
game is a CPU process and the OOM phase is skipped.

Never initialises CUDA itself: a CUDA context of this process would be a foreign GPU process to the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HOST_OFFSET = 5_000_000  # --dry: "host PIDs" of the fake NVML, never this machine's
T0 = time.monotonic()
RESULTS: list[tuple[str, str, str]] = []
LOG: Any = None


def say(message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - T0:6.1f}s] {message}"
    print(line, flush=True)
    if LOG:
        LOG.write(line + "\n")
        LOG.flush()


@contextmanager
def phase(name: str) -> Iterator[dict[str, str]]:
    """Run a phase; an exception is its FAIL, and the script goes on."""
    outcome = {"status": "PASS", "detail": ""}
    started = time.monotonic()
    say(f"=== {name}")
    try:
        yield outcome
    except Exception as error:  # noqa: BLE001
        outcome["status"], outcome["detail"] = "FAIL", f"{type(error).__name__}: {error}"
        say(traceback.format_exc().rstrip())
    RESULTS.append((name, outcome["status"], outcome["detail"]))
    say(f"{outcome['status']} {name} ({time.monotonic() - started:.1f} s) {outcome['detail']}")


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


# --------------------------------------------------------------------------- the model


def build_model(directory: Path, *, small: bool) -> None:
    """In a child process (it may initialise CUDA): random weights, bf16, saved with a small ChatML tokenizer."""
    import types

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if "pytest" not in sys.modules:
        try:
            import pytest  # noqa: F401
        except ImportError:  # tests.model_fixtures decorates fixtures; the device image has no pytest
            stub = types.ModuleType("pytest")
            stub.fixture = lambda *a, **k: (lambda f: f)  # type: ignore[attr-defined]
            sys.modules["pytest"] = stub
    from bench.train_throughput import QWEN_05B, SMALL
    from tests.model_fixtures import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(directory)
    config = Qwen2Config(**(SMALL if small else QWEN_05B), eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory)
    params = sum(p.numel() for p in model.parameters())
    print(f"built {params / 1e6:.0f}M parameters on {device} in {directory}")


# --------------------------------------------------------------------------- the database


def db() -> Any:
    from db.session import session_scope

    return session_scope()


def job_row(job_id: str) -> Any:
    from db.models import Job

    with db() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def sweep_jobs(sweep_id: str) -> list[Any]:
    from db import crud

    with db() as session:
        jobs = crud.sweep_jobs(session, sweep_id=sweep_id)
        for job in jobs:
            session.expunge(job)
        return jobs


def worker_rows() -> list[Any]:
    from sqlmodel import select

    from db.models import Worker

    with db() as session:
        rows = session.exec(select(Worker)).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def train_result(job_id: str) -> Any:
    from sqlmodel import select

    from db.models import TrainResult

    with db() as session:
        row = session.exec(select(TrainResult).where(TrainResult.job_id == job_id)).first()
        if row is not None:
            session.expunge(row)
        return row


# --------------------------------------------------------------------------- processes


class Proc:
    """A child process logging to $OUT/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], out: Path) -> None:
        self.name, self.path = name, out / f"{name}.log"
        self.file = self.path.open("w")
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self.file, stderr=subprocess.STDOUT)
        say(f"started {name} (pid {self.process.pid}): {' '.join(argv[1:4])} …")

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.file.close()


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


class FakeGpu:
    """--dry: writes the fake NVML readings: the worker's job process while a job runs, and the game, under
    translated PIDs (what NVML shows a worker in its own PID namespace)."""

    def __init__(self, path: Path) -> None:
        self.path, self.worker_pid, self.game_pid = path, None, None  # type: ignore[var-annotated]
        self.stop = threading.Event()
        self.write([], 0)

    def write(self, pids: list[int], utilization: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"utilization_pct": utilization, "pids": pids, "used_mb": 500 * len(pids)}))
        tmp.replace(self.path)

    def loop(self) -> None:
        import psutil

        from db.models import Job
        from db.states import JobState

        while not self.stop.wait(0.3):
            pids = []
            try:
                with db() as session:
                    from sqlmodel import select

                    busy = session.exec(select(Job.id).where(Job.state == JobState.running)).first() is not None
                if busy and self.worker_pid:
                    pids += [c.pid + HOST_OFFSET for c in psutil.Process(self.worker_pid).children(recursive=True)]
            except Exception:  # noqa: BLE001, S110  (a reading missed is the next one)
                pass
            if self.game_pid:
                pids.append(self.game_pid + HOST_OFFSET)
            self.write(pids, 99.0 if pids else 0.0)


# --------------------------------------------------------------------------- the run


def sweep_yaml(model_dir: Path, *, name: str, traces: int, batch: int, max_length: int, epochs: float) -> str:
    return json.dumps({  # JSON is YAML
        "name": name, "seed": 1,
        "model": {"id": str(model_dir), "name": "qwen05b-shaped-random"},
        "dataset": {"name": "synthetic", "n": 8, "complexity": [1, 2]},
        "eval": {"strategies": ["greedy"], "max_new_tokens": 16, "batch_size": 8},
        "train": {
            "method": "qlora", "lora_rank": [8], "traces": [traces], "source": {"name": "synthetic", "n": traces},
            "batch_size": batch, "max_length": max_length, "epochs": epochs, "checkpoint_every": 10_000,
            "learning_rate": 1e-4, "allow_cpu_fallback": True,
        },
        "resources": {"max_attempts": 5},
    }, indent=1)


def submit(path: Path, env: dict[str, str]) -> str:
    done = run([sys.executable, "-m", "orchestrator.cli", "submit", str(path)], env)
    say(f"submit exit {done.returncode}: {done.stdout.strip()[-500:]} {done.stderr.strip()[-500:]}")
    if done.returncode != 0:
        raise RuntimeError("orchestrator submit failed")
    return done.stdout.split()[-1]


def main() -> int:  # noqa: C901  (a script of phases, read top to bottom)
    global LOG
    parser = argparse.ArgumentParser()
    parser.add_argument("--dry", action="store_true", help="CPU plumbing run: fake NVML, tiny model, no OOM phase")
    parser.add_argument("--out", default=os.environ.get("OUT") or "/tmp/rf-e2e-out")
    parser.add_argument("--work", default="/tmp/rf-e2e")
    parser.add_argument("--broker", default="redis://127.0.0.1:6390/0")
    parser.add_argument("--idle-resume-s", type=float, default=5.0)
    parser.add_argument("--game-s", type=float, default=15.0)
    parser.add_argument("--train-epochs", type=float, default=None, help="default: 20 (GPU), 60 (--dry)")
    parser.add_argument("--oom-cap-mib", type=int, default=700)
    parser.add_argument("--build-model", help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_model:
        build_model(Path(args.build_model), small=args.small)
        return 0

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    LOG = (out / "e2e.log").open("w")
    database = f"sqlite:///{work / 'reasonfleet.db'}"
    env = {
        **os.environ, "REASONFLEET_DATABASE_URL": database, "REASONFLEET_BROKER_URL": args.broker,
        "REASONFLEET_ARTIFACTS": str(work / "store"), "REASONFLEET_ARTIFACT_CACHE": str(work / "cache"),
        "REASONFLEET_HEARTBEAT_S": "1", "REASONFLEET_RECONCILE_EVERY_S": "30", "REASONFLEET_GPU_PROBE": "nvml",
        "RF_E2E_MEMORY_CAP_FILE": str(work / "memory-cap.json"), "PYTHONUNBUFFERED": "1",
    }
    if args.dry:
        fake = REPO / "tests" / "fake_nvml"
        env["PYTHONPATH"] = f"{fake}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env["FAKE_NVML_FILE"] = str(work / "nvml.json")
        env.setdefault("OMP_NUM_THREADS", "1")
    os.environ.update({k: v for k, v in env.items() if k.startswith("REASONFLEET_")})
    from db.settings import reload_settings

    reload_settings()
    mode = "dry (CPU, fake NVML)" if args.dry else "GPU"
    say(f"mode {mode}; work {work}; out {out}; db {database}; broker {args.broker}")
    fake_gpu = FakeGpu(work / "nvml.json") if args.dry else None
    model_dir = work / "model"
    epochs = args.train_epochs or (60.0 if args.dry else 20.0)

    with phase("model") as result:
        small = ["--small"] if args.dry else []
        argv = [sys.executable, str(Path(__file__)), "--build-model", str(model_dir), *small]
        done = run(argv, env, timeout=300)
        say(done.stdout.strip() + done.stderr.strip()[-1500:])
        if done.returncode != 0:
            raise RuntimeError("model build failed")
        result["detail"] = done.stdout.strip().splitlines()[-1]

    with phase("db upgrade"):
        done = run([sys.executable, "-m", "orchestrator.cli", "db", "upgrade"], env)
        say(done.stdout.strip() + done.stderr.strip()[-800:])
        if done.returncode != 0:
            raise RuntimeError("db upgrade failed")

    with phase("check") as result:
        done = run([sys.executable, "-m", "workers.cli", "check", "--idle-resume-s", str(args.idle_resume_s)], env)
        (out / "workers_check.txt").write_text(done.stdout + done.stderr)
        say("workers check:\n" + done.stdout + done.stderr[-1500:])
        failed = [ln.split()[1] for ln in done.stdout.splitlines() if ln.startswith("FAIL")]
        result["detail"] = f"exit {done.returncode}" + (f", failed: {', '.join(failed)}" if failed else "")
        if args.dry and failed == ["cuda"]:
            result["detail"] += " (expected in --dry: the fake NVML shows a GPU this CPU-only torch cannot use)"
        elif done.returncode != 0:
            raise RuntimeError(f"workers check exited {done.returncode}")

    worker: Proc | None = None
    with phase("worker") as result:
        argv = [sys.executable, "bench/e2e_worker.py", "start", "--name", "e2e@%h", "--idle-resume-s",
                str(args.idle_resume_s), "--loglevel", "INFO"]
        worker = Proc("worker", argv, env, out)
        if fake_gpu:
            fake_gpu.worker_pid = worker.process.pid
            threading.Thread(target=fake_gpu.loop, daemon=True).start()
        wait_for(lambda: "ready." in worker.text() or worker.process.poll() is not None, 120, "worker ready")
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.text()[-3000:]}")
        row = wait_for(lambda: next(iter(worker_rows()), None), 30, "registration")
        result["detail"] = (f"registered {row.name}: GPU {row.gpu_name}, VRAM {row.vram_total_mb} MiB, "
                            f"driver {row.driver}, class {row.memory_class}, queues {row.queues}")

    train_id, sweep_id = None, None
    with phase("submit") as result:
        path = work / "sweep-e2e.yaml"
        path.write_text(sweep_yaml(model_dir, name="gpu-e2e", traces=64, batch=4, max_length=256, epochs=epochs))
        sweep_id = submit(path, env)
        jobs = sweep_jobs(sweep_id)
        train_id = next(j.id for j in jobs if j.kind == "train")
        result["detail"] = f"sweep {sweep_id}: " + ", ".join(f"{j.kind} {j.id} ({j.queue}, {j.state})" for j in jobs)

    yielded_at_step = None
    with phase("yield") as result:
        if not train_id:
            raise RuntimeError("no train job")
        job = wait_for(lambda: (j := job_row(train_id)).state == "running" and j.progress_done >= 3 and j, 300,
                       "the train job to run 3 steps")
        say(f"train job at step {job.progress_done}/{job.progress_total}; starting the game")
        time.sleep(2)  # the worker's identity of its GPU process is decided by now (logged)
        game = Proc("game", [sys.executable, "bench/gpu_game.py", "--seconds", str(args.game_s)]
                    + (["--cpu"] if args.dry else []), env, out)
        wait_for(lambda: "GAME READY" in game.text() or game.process.poll() is not None, 60, "the game's context")
        game_ready = time.monotonic()
        if fake_gpu:
            fake_gpu.game_pid = game.process.pid
        say(f"game ready: {game.text().strip().splitlines()[0]}")
        paused = wait_for(lambda: any(w.state == "paused" for w in worker_rows()) and time.monotonic(), 30,
                          "the worker to pause")
        handed = wait_for(lambda: (j := job_row(train_id)).state != "running" and j, 30, "the job to be handed back")
        handed_after = time.monotonic() - game_ready
        yielded_at_step = handed.progress_done
        reason = next((w.pause_reason for w in worker_rows() if w.pause_reason), None)
        say(f"worker paused {paused - game_ready:.1f} s after the game started ({reason}); job {handed.state} "
            f"{handed_after:.1f} s after, at step {yielded_at_step}: {handed.error}")
        checkpoints = sorted((work / "store" / "train").glob(f"*/checkpoints/step-{yielded_at_step:08d}"))
        say(f"checkpoint at the yield: {[str(c) for c in checkpoints]}")
        game.process.wait(timeout=args.game_s + 60)
        game_over = time.monotonic()
        if fake_gpu:
            fake_gpu.game_pid = None
        say(f"game over: {game.text().strip().splitlines()[-1]}")
        game.stop()
        rerun = wait_for(lambda: (j := job_row(train_id)).state in ("running", "succeeded", "failed") and j, 120,
                         "the job to run again")
        say(f"job {rerun.state} again {time.monotonic() - game_over:.1f} s after the game ended "
            f"(--idle-resume-s {args.idle_resume_s:g})")
        done_train = wait_for(lambda: (j := job_row(train_id)).state in ("succeeded", "failed") and j, 600,
                              "the train job to finish")
        outcome = train_result(train_id)
        resumed = outcome.resumed_from_step if outcome else None
        result["detail"] = (f"yield latency {handed_after:.1f} s (worker paused after {paused - game_ready:.1f} s), "
                            f"checkpoint at step {yielded_at_step}: {'yes' if checkpoints else 'NO'}, "
                            f"train {done_train.state}, resumed_from_step {resumed}")
        if handed_after > 10 or not checkpoints or resumed != yielded_at_step or done_train.state != "succeeded":
            raise RuntimeError(result["detail"])

    with phase("chain") as result:
        if not sweep_id:
            raise RuntimeError("no sweep")
        jobs = wait_for(lambda: (js := sweep_jobs(sweep_id)) and all(j.state in ("succeeded", "failed", "cancelled")
                                                                     for j in js) and js, 600, "the sweep to finish")
        for j in jobs:
            say(f"  {j.kind:5} {j.label:60} {j.state} attempts {j.attempts} {j.error or ''}")
        outcome = train_result(train_id) if train_id else None
        if outcome:
            say(f"  train: mode {outcome.mode}, {outcome.steps} steps, loss {outcome.loss_curve[0]:.3f} -> "
                f"{outcome.loss_curve[-1]:.3f}, {outcome.tokens_per_s:.0f} tokens/s, "
                f"peak {outcome.peak_memory_mb:.0f} MB")
        board = run([sys.executable, "-m", "orchestrator.cli", "leaderboard", "--sweep", sweep_id], env)
        (out / "leaderboard.txt").write_text(board.stdout + board.stderr)
        say("leaderboard:\n" + board.stdout + board.stderr[-800:])
        fleet = run([sys.executable, "-m", "orchestrator.cli", "workers"], env)
        say("orchestrator workers:\n" + fleet.stdout + fleet.stderr[-800:])
        states = [j.state for j in jobs]
        result["detail"] = f"{states.count('succeeded')}/{len(states)} jobs succeeded"
        if set(states) != {"succeeded"}:
            raise RuntimeError(result["detail"])

    with phase("oom") as result:
        if args.dry:
            result["status"], result["detail"] = "SKIP", "--dry: no CUDA, so no real CUDA OOM"
        else:
            cap = work / "memory-cap.json"
            cap.write_text(json.dumps({"mib": args.oom_cap_mib, "attempts": 2}))
            path = work / "sweep-oom.yaml"
            path.write_text(sweep_yaml(model_dir, name="gpu-e2e-oom", traces=32, batch=16, max_length=1024, epochs=1))
            oom_sweep = submit(path, env)
            oom_id = next(j.id for j in sweep_jobs(oom_sweep) if j.kind == "train")
            first = job_row(oom_id)
            say(f"OOM train job {oom_id}: batch {first.spec['params']['batch_size']}, queue {first.queue}")
            seen: list[tuple[int, int, str]] = []

            def watch() -> Any:
                j = job_row(oom_id)
                moment = (j.ooms, j.spec["params"]["batch_size"], j.queue)
                if not seen or seen[-1] != moment:
                    seen.append(moment)
                    say(f"  ooms {j.ooms}, batch {moment[1]}, queue {j.queue}, state {j.state}: {j.error or ''}")
                return j.state in ("succeeded", "failed") and j

            final = wait_for(watch, 480, "the OOM job to finish", every=0.5)
            log_lines = worker.text().splitlines() if worker else []
            hooks = [ln for ln in log_lines if "E2E-HOOK" in ln or "out of memory" in ln]
            say("worker log:\n" + "\n".join(hooks[-10:]))
            result["detail"] = " -> ".join(f"ooms {o} batch {b} {q}" for o, b, q in seen) + f"; {final.state}"
            half = first.spec["params"]["batch_size"] // 2
            halved = any(o == 1 and b == half and q == first.queue for o, b, q in seen)
            moved = any(o == 2 and q != first.queue for o, b, q in seen)
            if not (halved and moved and final.state == "succeeded"):
                raise RuntimeError(result["detail"])

    if worker:
        worker.stop()
    if fake_gpu:
        fake_gpu.stop.set()
    say("=== summary")
    for name, status, detail in RESULTS:
        say(f"{status:4} {name:10} {detail}")
    (out / "summary.json").write_text(json.dumps([{"phase": n, "status": s, "detail": d} for n, s, d in RESULTS],
                                                 indent=1))
    return 0 if all(status in ("PASS", "SKIP") for _, status, _ in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
