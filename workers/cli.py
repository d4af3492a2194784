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
) -> None:
    """Join the fleet: check the services, then pull jobs until stopped (Ctrl-C finishes the current job)."""
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
    from workers.celery_app import DEFAULT_QUEUE, make_app

    worker_app = make_app(settings)
    argv = [
        "worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", f"--pool={pool}",
        f"--hostname={name or 'reasonfleet@' + socket.gethostname()}", f"--queues={DEFAULT_QUEUE}",
        "--without-gossip", "--without-mingle",
    ]
    if gpus:
        # CUDA memory is only returned when the process exits: one job per child on a GPU.
        argv.append("--max-tasks-per-child=1")
    worker_app.worker_main(argv)


def _check_services(settings) -> None:  # type: ignore[no-untyped-def]
    from db.migrate import SchemaOutOfDate, ensure_schema
    from jobs.errors import ReasonFleetError
    from workers.services import check_broker, check_database

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
