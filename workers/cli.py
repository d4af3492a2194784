"""`workers start`: the one command a friend runs to lend their PC to the fleet."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from db.settings import Settings, configure, default_of, env_name, load_settings, mask_url, url_has_secret
from jobs.errors import SchemaOutOfDate, ServiceUnavailable, UsageError, one_line_errors

if TYPE_CHECKING:
    from workers.gpu import GpuInfo

app = typer.Typer(help="ReasonFleet workers.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True, soft_wrap=True)

# The options of `workers start` that override a setting for this worker: field -> option.
OPTIONS = {
    "broker_url": "--broker", "database_url": "--db", "hours": "--hours", "yield_mode": "--yield-mode",
    "idle_resume_s": "--idle-resume-s", "busy_utilization": "--busy-utilization",
    "allow_remote_code": "--allow-remote-code", "models_dir": "--models-dir",
}


def _default(field: str) -> str:
    """`(default: <its variable>, else <value>)` for an option's help: the setting's one default."""
    value = default_of(field)
    shown = "unset" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return f"(default: REASONFLEET_{field.upper()}, else {shown})"


@app.callback()
def main() -> None:
    """ReasonFleet workers."""


@app.command()
@one_line_errors()
def start(
    broker: str | None = typer.Option(
        None, "--broker", show_default=False, help=f"Broker URL {_default('broker_url')}."
    ),
    db: str | None = typer.Option(None, "--db", show_default=False, help=f"Database URL {_default('database_url')}."),
    name: str | None = typer.Option(None, "--name", help="Worker name (default: reasonfleet@<host>)."),
    concurrency: int = typer.Option(1, min=1, help="Jobs at a time; keep 1 per GPU."),
    pool: str = typer.Option("prefork", help="prefork, or solo where fork is unavailable (Windows)."),
    loglevel: str = typer.Option("INFO"),
    hours: str | None = typer.Option(
        None, "--hours", show_default=False,
        help=f"Only take jobs in this daily window, e.g. 01:00-08:00 {_default('hours')}.",
    ),
    yield_to_owner: bool = typer.Option(
        True, "--yield/--no-yield", help="Stop taking jobs while the owner uses the GPU."
    ),
    yield_mode: str | None = typer.Option(
        None, "--yield-mode", show_default=False,
        help=f"A running job when the owner comes back: requeue or pause {_default('yield_mode')}.",
    ),
    idle_resume_s: float | None = typer.Option(
        None, "--idle-resume-s", show_default=False,
        help=f"Seconds the GPU must be idle before jobs resume {_default('idle_resume_s')}.",
    ),
    busy_utilization: float | None = typer.Option(
        None, "--busy-utilization", show_default=False,
        help=f"GPU utilisation (%) that means the owner is using it {_default('busy_utilization')}.",
    ),
    allow_remote_code: bool = typer.Option(
        False, "--allow-remote-code", show_default=False,
        help="Also run jobs whose model sets trust_remote_code: the model repo's own Python code runs on this PC "
        f"{_default('allow_remote_code')}.",
    ),
    models_dir: str | None = typer.Option(
        None, "--models-dir", show_default=False,
        help=f"Load local models only from under this directory {_default('models_dir')}.",
    ),
    env_file: Path | None = typer.Option(
        None, "--env-file", show_default=False,
        help="Read REASONFLEET_* settings (NAME=value lines) from this file: where the URLs' passwords go "
        "(chmod 600). The environment and options win over it.",
    ),
) -> None:
    """Join the fleet: check the services, then pull jobs until stopped (Ctrl-C finishes the current job)."""
    # Celery's own variable, not one of ours: billiard reads REMAP_SIGTERM once, when Celery is first
    # imported (below), so only the environment can carry it. With it, SIGTERM (docker stop, systemd,
    # the owner) becomes Celery's soft shutdown: running jobs get REASONFLEET_SOFT_SHUTDOWN_S to finish,
    # then are handed back.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    overrides = {
        "broker_url": broker, "database_url": db, "hours": hours, "yield_mode": yield_mode,
        "idle_resume_s": idle_resume_s, "busy_utilization": busy_utilization,
        "allow_remote_code": allow_remote_code or None,  # absent: the variable decides
        "models_dir": models_dir,
    }
    # Options win over the environment, which wins over the env file.
    settings = load_settings(overrides, options=OPTIONS, env_file=_readable(env_file))
    refuse_secrets_on_command_line(overrides)
    if not settings.broker_url or not settings.database_url:
        raise UsageError("a worker needs both --broker/REASONFLEET_BROKER_URL and --db/REASONFLEET_DATABASE_URL")
    _install(settings)
    wait_for_services(settings)
    gpus = _announce(settings)
    from workers.celery_app import make_worker_app  # after _install: its module-level app reads the settings

    worker_app = make_worker_app(settings)
    queues = _join_fleet(settings, gpus, yield_to_owner=yield_to_owner)
    argv = [
        "worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", f"--pool={pool}",
        f"--hostname={name or 'reasonfleet@' + socket.gethostname()}", f"--queues={','.join(queues)}",
        "--without-gossip", "--without-mingle",
    ]
    if gpus:
        # CUDA memory is only returned when the process exits: one job per child on a GPU.
        argv.append("--max-tasks-per-child=1")
    worker_app.worker_main(argv)


def _install(settings: Settings) -> None:
    """These settings, options applied, for this process and every pool child: passed, never through os.environ."""
    from celery.signals import worker_process_init

    configure(settings)
    # A forked child starts with the parent's memory; the hook says so explicitly, for every child.
    worker_process_init.connect(lambda **_: configure(settings), weak=False)


def _join_fleet(settings: Settings, gpus: list[GpuInfo], *, yield_to_owner: bool) -> list[str]:
    """Pick the queues this card serves and install the heartbeat/yield thread; returns the queues."""
    from jobs.resources.placement import queue_name, worker_class, worker_queues
    from workers import heartbeat
    from workers.yield_policy import YieldConfig, YieldPolicy, probe_for

    gpu = gpus[0] if gpus else None
    queues = worker_queues(gpu.total_mb if gpu else 0, allow_remote_code=settings.allow_remote_code)
    top = worker_class(gpu.total_mb if gpu else 0)
    window = settings.hours_window
    policy = YieldPolicy(YieldConfig(
        busy_utilization_pct=settings.busy_utilization, idle_resume_s=settings.idle_resume_s, hours=window,
    ))
    probe = probe_for(settings.gpu_probe, _own_pids, _jobs_running) if yield_to_owner else None
    heartbeat.install(heartbeat.FleetConfig(
        settings=settings, gpu=gpu, memory_class=queue_name(top) if top else "cpu", queues=queues,
        policy=policy if (probe or window) else None, probe=probe,
    ))
    console.print(f"consuming {', '.join(queues)}" + (f" · hours {window}" if window else ""))
    return queues


def _jobs_running() -> int:
    """Jobs this worker runs now, as its Celery parent (where the probe runs) counts them."""
    from workers.heartbeat import running_job_ids

    return len(running_job_ids())


def _own_pids() -> set[int]:
    import psutil

    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


def refuse_secrets_on_command_line(overrides: Mapping[str, object]) -> None:
    """A password in an option sits in /proc/<pid>/cmdline of the worker and every pool child, readable by any
    local user (ps): refused, with the safe form."""
    for field in ("broker_url", "database_url"):
        url = overrides.get(field)
        if isinstance(url, str) and url_has_secret(url):
            variable = env_name(field)
            raise UsageError(
                f"{OPTIONS[field]}: the URL holds a password, and a command line is readable by every local user "
                f"(ps); give it as {variable} in the environment or in a file: `workers start --env-file worker.env` "
                f"with the line {variable}={mask_url(url)} (the real password where *** stands; chmod 600 worker.env)"
            )


def _readable(env_file: Path | None) -> Path | None:
    if env_file is None:
        return None
    if not env_file.is_file():
        raise UsageError(f"--env-file: no such file: {env_file}")
    if env_file.stat().st_mode & 0o077:
        console.print(f"[yellow]warning: --env-file {env_file} is readable by other users; chmod 600 {env_file}[/]")
    return env_file


def wait_for_services(settings: Settings) -> None:
    """Check the database and the broker; while either is unreachable, try again with doubling pauses (1 s up
    to REASONFLEET_SERVICE_RETRY_MAX_S) for up to REASONFLEET_SERVICE_WAIT_S, then exit 3 with the reason.
    An outdated schema is not waited for: it needs `orchestrator db upgrade`."""
    assert settings.database_url and settings.broker_url
    deadline = time.monotonic() + settings.service_wait_s
    pause = 1.0
    while True:
        try:
            _check_services(settings.database_url, settings.broker_url)
            return
        except SchemaOutOfDate:
            raise
        except ServiceUnavailable as error:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            wait = min(pause, settings.service_retry_max_s, left)
            console.print(f"waiting: {error}; next try in {wait:.0f} s (gives up {left:.0f} s from now)")
            time.sleep(wait)
            pause *= 2


def _check_services(database_url: str, broker_url: str) -> None:
    from db import migrate
    from db.broker import check_broker
    from db.services import check_database

    check_database(database_url)
    check_broker(broker_url)
    migrate.ensure_schema(database_url, auto_upgrade=False)


def _announce(settings: Settings) -> list[GpuInfo]:
    from workers.gpu import probe_gpus

    gpus = probe_gpus()
    hardware = ", ".join(f"{g.name} {g.total_mb} MB" for g in gpus) or "CPU only"
    console.print(
        f"worker on {socket.gethostname()} ({hardware}) · broker {mask_url(settings.broker_url)}"
        f" · db {mask_url(settings.database_url)}"
    )
    return gpus


@app.command()
@one_line_errors()
def check(
    broker: str | None = typer.Option(
        None, "--broker", show_default=False, help=f"Broker URL {_default('broker_url')}."
    ),
    db: str | None = typer.Option(None, "--db", show_default=False, help=f"Database URL {_default('database_url')}."),
    name: str | None = typer.Option(None, "--name", help="As for `workers start` (not used by the check)."),
    concurrency: int = typer.Option(1, min=1, help="As for `workers start` (not used by the check)."),
    pool: str = typer.Option("prefork", help="As for `workers start` (not used by the check)."),
    loglevel: str = typer.Option("INFO", help="As for `workers start` (not used by the check)."),
    hours: str | None = typer.Option(
        None, "--hours", show_default=False, help=f"As for `workers start` {_default('hours')}."
    ),
    yield_to_owner: bool = typer.Option(True, "--yield/--no-yield", help="As for `workers start`."),
    yield_mode: str | None = typer.Option(
        None, "--yield-mode", show_default=False, help=f"As for `workers start` {_default('yield_mode')}."
    ),
    idle_resume_s: float | None = typer.Option(
        None, "--idle-resume-s", show_default=False, help=f"As for `workers start` {_default('idle_resume_s')}."
    ),
    busy_utilization: float | None = typer.Option(
        None, "--busy-utilization", show_default=False, help=f"As for `workers start` {_default('busy_utilization')}."
    ),
) -> None:
    """Check, without taking a job, that `workers start` with these flags would run jobs (exit 0); else what to fix."""
    from workers.check import passed, render, run_checks

    overrides = {
        "broker_url": broker, "database_url": db, "hours": hours, "yield_mode": yield_mode,
        "idle_resume_s": idle_resume_s, "busy_utilization": busy_utilization,
    }
    settings = load_settings(overrides, options=OPTIONS)
    checks = run_checks(settings, yield_to_owner=yield_to_owner)
    typer.echo(render(checks))
    raise typer.Exit(0 if passed(checks) else 1)


if __name__ == "__main__":
    app()
