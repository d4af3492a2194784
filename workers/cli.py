"""`workers start`: the one command a friend runs to lend their PC to the fleet."""

from __future__ import annotations

import os
import socket

import typer
from rich.console import Console

from db.settings import mask_url, reload_settings

app = typer.Typer(help="ReasonFleet workers.", no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)


@app.callback()
def main() -> None:
    """ReasonFleet workers."""


@app.command()
def start(
    broker: str | None = typer.Option(None, "--broker", help="Broker URL (else REASONFLEET_BROKER_URL).", show_default=False),
    db: str | None = typer.Option(None, "--db", help="Database URL (else REASONFLEET_DATABASE_URL).", show_default=False),
    name: str | None = typer.Option(None, "--name", help="Worker name (default: reasonfleet@<host>)."),
    concurrency: int = typer.Option(1, min=1, help="Jobs at a time; keep 1 per GPU."),
    pool: str = typer.Option("prefork", help="prefork, or solo where fork is unavailable (Windows)."),
    loglevel: str = typer.Option("INFO"),
    hours: str | None = typer.Option(None, "--hours", envvar="REASONFLEET_HOURS", help="Only take jobs in this daily window, e.g. 01:00-08:00."),
    yield_to_owner: bool = typer.Option(True, "--yield/--no-yield", help="Stop taking jobs while the owner uses the GPU."),
    yield_mode: str = typer.Option("requeue", "--yield-mode", envvar="REASONFLEET_YIELD_MODE", help="A running job when the owner comes back: requeue or pause."),
    idle_resume_s: float = typer.Option(300.0, "--idle-resume-s", envvar="REASONFLEET_IDLE_RESUME_S", help="Seconds the GPU must be idle before jobs resume."),
    busy_utilization: float = typer.Option(30.0, "--busy-utilization", envvar="REASONFLEET_BUSY_UTILIZATION", help="GPU utilisation (%) that means the owner is using it."),
) -> None:
    """Join the fleet: check the services, then pull jobs until stopped (Ctrl-C finishes the current job)."""
    # SIGTERM (docker stop, systemd, the owner) becomes Celery's soft shutdown: running jobs get
    # worker_soft_shutdown_timeout to finish, then are handed back. Read by billiard at import.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    # Flags become the environment so every child process and module sees one configuration.
    if broker:
        os.environ["REASONFLEET_BROKER_URL"] = broker
    if db:
        os.environ["REASONFLEET_DATABASE_URL"] = db
    settings = reload_settings()
    if not settings.broker_url or not settings.database_url:
        console.print("[red]error:[/] a worker needs both --broker/REASONFLEET_BROKER_URL and --db/REASONFLEET_DATABASE_URL")
        raise typer.Exit(2)
    _check_services(settings)
    gpus = _announce(settings)
    from jobs.errors import InsecureBrokerTLS
    from workers.celery_app import make_worker_app

    try:
        worker_app = make_worker_app(settings)
    except InsecureBrokerTLS as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    queues = _join_fleet(settings, gpus, hours=hours, yield_to_owner=yield_to_owner, yield_mode=yield_mode,
                         idle_resume_s=idle_resume_s, busy_utilization=busy_utilization)
    argv = [
        "worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", f"--pool={pool}",
        f"--hostname={name or 'reasonfleet@' + socket.gethostname()}", f"--queues={','.join(queues)}",
        "--without-gossip", "--without-mingle",
    ]
    if gpus:
        # CUDA memory is only returned when the process exits: one job per child on a GPU.
        argv.append("--max-tasks-per-child=1")
    worker_app.worker_main(argv)


def _join_fleet(settings, gpus, *, hours, yield_to_owner, yield_mode, idle_resume_s, busy_utilization) -> list[str]:  # type: ignore[no-untyped-def]
    """Pick the queues this card serves and install the heartbeat/yield thread; returns the queues."""
    from jobs.resources.placement import queue_name, worker_class, worker_queues
    from workers import heartbeat
    from workers.yield_policy import (
        YieldConfig,
        YieldPolicy,
        parse_hours,
        probe_from_env,
    )

    if yield_mode not in ("requeue", "pause"):
        console.print(f"[red]error:[/] --yield-mode: expected requeue or pause, got {yield_mode!r}")
        raise typer.Exit(2)
    try:
        window = parse_hours(hours) if hours else None
    except ValueError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    os.environ["REASONFLEET_YIELD_MODE"] = yield_mode  # read by the job's heartbeat in the child process
    gpu = gpus[0] if gpus else None
    queues = worker_queues(gpu.total_mb if gpu else 0)
    top = worker_class(gpu.total_mb if gpu else 0)
    policy = YieldPolicy(YieldConfig(busy_utilization_pct=busy_utilization, idle_resume_s=idle_resume_s, hours=window))
    probe = probe_from_env(_own_pids) if yield_to_owner else None
    heartbeat.install(heartbeat.FleetConfig(
        settings=settings, gpu=gpu, memory_class=queue_name(top) if top else "cpu", queues=queues,
        policy=policy if (probe or window) else None, probe=probe,
    ))
    console.print(f"consuming {', '.join(queues)}" + (f" · hours {hours}" if hours else ""))
    return queues


def _own_pids() -> set[int]:
    import psutil

    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


def _check_services(settings) -> None:  # type: ignore[no-untyped-def]
    from db.broker import check_broker
    from db.migrate import SchemaOutOfDate, ensure_schema
    from db.services import check_database
    from jobs.errors import ReasonFleetError

    try:
        check_database(settings.database_url)
        check_broker(settings.broker_url)
        ensure_schema(settings.database_url, auto_upgrade=False)
    except (ReasonFleetError, SchemaOutOfDate) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(getattr(error, "exit_code", 3)) from None


def _announce(settings) -> list:  # type: ignore[no-untyped-def]
    from workers.gpu import probe_gpus

    gpus = probe_gpus()
    hardware = ", ".join(f"{g.name} {g.total_mb} MB" for g in gpus) or "CPU only"
    console.print(f"worker on {socket.gethostname()} ({hardware}) · broker {mask_url(settings.broker_url)} · db {mask_url(settings.database_url)}")
    return gpus


if __name__ == "__main__":
    app()
