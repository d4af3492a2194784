"""`orchestrator`: submit sweeps, watch them, rank their runs."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from db import crud, migrate
from db.models import Sweep
from db.services import check_database, prepare_database
from db.session import session_scope
from db.settings import default_of, get_settings, load_settings, mask_url
from jobs.errors import NotFound, SweepFailed, UsageError, one_line_errors
from orchestrator import leaderboard as board
from orchestrator.classify import classify_command
from orchestrator.data_preview import data_app
from orchestrator.report import report_command
from orchestrator.show import show_command
from orchestrator.status import all_finished, status_table
from orchestrator.submit import plan, publish, record
from orchestrator.web.serve import web_command

# add_completion=False: no --install-completion/--show-completion in every help (a shell script, not our job).
app = typer.Typer(
    help="ReasonFleet: distributed sweeps of fine-tunes and decoding strategies.", no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")  # preview synthetic problems: orchestrator/data_preview.py

console = Console(soft_wrap=True)  # messages stay one line in logs and pipes
errors = Console(stderr=True, soft_wrap=True)
# Every command runs inside jobs.errors.one_line_errors (the wrapper `workers` uses too): our
# errors become `error: <message>` and their exit code, never a traceback.


@app.callback()
@one_line_errors()
def main() -> None:
    """ReasonFleet: distributed sweeps of fine-tunes and decoding strategies."""
    get_settings()  # every REASONFLEET_* variable is validated before a command runs


class Format(str, Enum):
    table = "table"
    md = "md"
    json = "json"


@app.command()
@one_line_errors()
def submit(
    sweep_file: Path = typer.Argument(..., help="The sweep YAML."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the job plan; write and run nothing."),
) -> None:
    """Validate and expand a sweep, record its jobs, and run them (in-process, or through the workers)."""
    the_plan = plan(sweep_file)
    if dry_run:
        _print_plan(the_plan)
        return
    settings = get_settings()
    report = record(the_plan, settings)
    sweep = report.sweep
    console.print(
        f"sweep [bold]{sweep.name}[/] id [bold]{sweep.id}[/]"
        + (" (already submitted)" if report.sweep_existed else "")
        + f": {report.new_jobs} new jobs, {report.already_succeeded} already succeeded,"
        f" {report.retried} retried, {report.in_progress} in progress, {len(report.to_enqueue)} ready now"
    )
    if settings.embedded:
        _run_embedded(report.to_enqueue, sweep)
        return
    publish(report, settings)
    console.print(
        f"enqueued {len(report.to_enqueue)} jobs on {mask_url(settings.broker_url)};"
        f" watch with `orchestrator status {sweep.id} --watch`"
    )
    print(sweep.id)


def _print_plan(the_plan: Any) -> None:
    console.print(f"sweep [bold]{the_plan.sweep.name}[/] (hash {the_plan.spec_hash[:12]}): {len(the_plan.drafts)} jobs")
    for draft in the_plan.drafts:
        after = f"  after {', '.join(h[:12] for h in draft.depends_on)}" if draft.depends_on else ""
        console.print(f"  {draft.spec_hash[:12]}  {draft.kind:<5}  {draft.label}{after}", highlight=False)
    for sha256, data in the_plan.data.items():  # local files travel with the sweep (jobs/data/shipped.py)
        console.print(f"  ships local data {sha256[:12]} ({len(data) / 1e6:.2f} MB) in the database", highlight=False)
    console.print("dry run: nothing written, nothing enqueued")


def _run_embedded(job_ids: list[str], sweep: Sweep) -> None:
    from orchestrator.embedded import run_in_process

    final = run_in_process(job_ids, console)
    failed = [job_id for job_id, state in final.items() if state == "failed"]
    _print_leaderboard([sweep.id], Format.table, None)
    if failed:
        raise SweepFailed(_failed_summary(failed, sweep))


def _first_line(error: str | None) -> str:
    return ((error or "").strip().splitlines() or ["no reason recorded"])[0][:200]


def _failed_summary(job_ids: list[str], sweep: Sweep) -> str:
    """`N job(s) failed: <label> (<id>): <first line of its error>; …`: exit 1 names them (issue #17)."""
    from db.models import Job

    with session_scope() as session:
        jobs = [session.get_one(Job, job_id) for job_id in job_ids]
    named = "; ".join(f"{job.label} ({job.id}): {_first_line(job.error)}" for job in jobs[:5])
    more = f"; and {len(jobs) - 5} more" if len(jobs) > 5 else ""
    return f"{len(jobs)} job(s) failed: {named}{more}; see `orchestrator status {sweep.id}`"


@app.command()
@one_line_errors()
def status(
    sweep: str | None = typer.Argument(None, help="Sweep id or name (default: the newest)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until every job has ended."),
    interval: float = typer.Option(2.0, help="Seconds between refreshes with --watch."),
) -> None:
    """Per-job state of a sweep."""
    _connect()
    if not watch:
        console.print(_status_view(sweep)[0])
        return
    from rich.live import Live

    with Live(_status_view(sweep)[0], console=console, refresh_per_second=4) as live:
        while True:
            table, finished = _status_view(sweep)
            live.update(table)
            if finished:
                return
            time.sleep(interval)


def _status_view(sweep_ref: str | None) -> tuple[Any, bool]:
    from db import fleet
    from orchestrator.fleet_view import waiting_reasons

    with session_scope() as session:
        sweep = _find_sweep(session, sweep_ref)
        jobs = crud.sweep_jobs(session, sweep_id=sweep.id)
        table = status_table(f"{sweep.name} ({sweep.id})", jobs, width=console.width)
        waiting = waiting_reasons(jobs, fleet.list_workers(session))
        if waiting:
            # Queued with nowhere to go: say why instead of letting it look stuck.
            table.caption = "\n".join(f"{job_id} waits: {reason}" for job_id, reason in waiting.items())
            table.caption_justify = "left"
        return table, all_finished(jobs)


@app.command()
@one_line_errors()
def leaderboard(
    sweep: str | None = typer.Option(
        None, "--sweep", "-s", help="Sweep id or name (default: every sweep, newest first)."
    ),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table, md or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of the terminal."),
) -> None:
    """Rank runs by pass@1 with 95% intervals."""
    _connect()
    with session_scope() as session:
        if sweep:
            ids = [_find_sweep(session, sweep).id]
        else:
            from sqlmodel import col, select

            ids = list(session.exec(select(Sweep.id).order_by(col(Sweep.created_at).desc())).all())
    _print_leaderboard(ids, fmt, output)


def _print_leaderboard(sweep_ids: list[str], fmt: Format, output: Path | None) -> None:
    with session_scope() as session:
        all_rows = board.rows(session, sweep_ids=sweep_ids)
    if fmt is Format.json:
        text = board.as_json(all_rows)
    elif fmt is Format.md:
        text = board.as_markdown(all_rows)
    else:
        if output:
            raise UsageError("--output needs --format md or json")
        if not all_rows:
            console.print("no results yet")
        for table in board.as_tables(all_rows, width=console.width):
            console.print(table)
        return
    if output:
        try:
            output.write_text(text + "\n", encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--output {output}: {error.strerror or error}") from None
        errors.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


app.command("show")(show_command)  # one run, its comparison and raw generations: orchestrator/show.py
app.command("report")(report_command)  # a sweep's Markdown report: orchestrator/report.py


@app.command()
@one_line_errors()
def cancel(sweep: str = typer.Argument(..., help="Sweep id or name.")) -> None:
    """Cancel every unfinished job of a sweep; running jobs stop at their next heartbeat."""
    _connect()
    with session_scope() as session:
        found = _find_sweep(session, sweep)
        cancelled = crud.cancel_sweep(session, sweep_id=found.id)
    console.print(f"cancelled {len(cancelled)} job(s) of {found.name} ({found.id})")


@app.command("workers")
@one_line_errors()
def workers_command(fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json.")) -> None:
    """The fleet: every registered worker with its GPU and state (idle, busy on job X, paused, gone)."""
    from db import fleet
    from orchestrator.fleet_view import no_workers_note, worker_rows, workers_table

    _connect()
    with session_scope() as session:
        rows = worker_rows(fleet.list_workers(session))
    if fmt is Format.json:
        import json

        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif not rows:
        console.print(no_workers_note(embedded=get_settings().embedded), highlight=False)
    else:
        console.print(workers_table(rows, width=console.width))


@app.command()
@one_line_errors()
def reconcile(
    lost_after: float | None = typer.Option(
        None, "--lost-after", show_default=False,
        help="Seconds without a heartbeat before a running job is lost (default: REASONFLEET_LOST_AFTER_S, else "
        f"{default_of('lost_after_s'):g}).",
    ),
    grace: float | None = typer.Option(
        None, "--grace", show_default=False,
        help="Only re-publish jobs queued longer ago than this (default: REASONFLEET_RECONCILE_GRACE_S, else "
        f"{default_of('reconcile_grace_s'):g}).",
    ),
) -> None:
    """Make Redis match Postgres: requeue jobs of dead workers, re-publish queued jobs whose message vanished."""
    from db.broker import check_broker, make_app
    from db.reconcile import reconcile as run_reconcile

    settings = load_settings(
        {"lost_after_s": lost_after, "reconcile_grace_s": grace},
        options={"lost_after_s": "--lost-after", "reconcile_grace_s": "--grace"},
    )
    if not settings.broker_url:
        raise UsageError("reconcile needs REASONFLEET_BROKER_URL: embedded mode has no queue to reconcile")
    _connect()
    check_broker(settings.broker_url)
    report = run_reconcile(
        make_app(settings), settings.broker_url, lost_after_s=settings.lost_after_s, grace_s=settings.reconcile_grace_s
    )
    console.print(f"reconcile: {report.summary()}")


@app.command()
@one_line_errors()
def flower(
    port: int = typer.Option(5555, help="Port of Flower's web UI and API."),
    address: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 to expose it: keep auth on)."),
) -> None:
    """Celery Flower for the live fleet, with basic auth from REASONFLEET_FLOWER_AUTH=user:password."""
    import os

    settings = get_settings()
    if settings.flower_auth is None:  # its form (user:password) is checked with every other setting
        raise UsageError("set REASONFLEET_FLOWER_AUTH=user:password: Flower shows every job and can control workers")
    if not settings.broker_url:
        raise UsageError("flower needs REASONFLEET_BROKER_URL")
    # Credentials travel in the environment, not the command line (visible to every user in `ps`).
    # Flower is a program of its own: it reads its settings (REASONFLEET_* and FLOWER_BASIC_AUTH) from there.
    env = {**os.environ, "FLOWER_BASIC_AUTH": settings.flower_auth.get_secret_value()}
    errors.print(f"flower on http://{address}:{port} · broker {mask_url(settings.broker_url)}")
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "flower"]
    argv += [f"--address={address}", f"--port={port}"]
    os.execve(sys.executable, argv, env)


app.command("classify")(classify_command)  # failure labels for generations made anywhere: orchestrator/classify.py
app.command("web")(web_command)  # the read-only web site: orchestrator/web/


@data_app.command("list")
@one_line_errors()
def data_list(fmt: Format = typer.Option(Format.table, "--format", "-f", help="table or json.")) -> None:
    """Curated datasets built by curate jobs and trace sets built by traces jobs (newest first): name, sha256,
    items, counts after each filter (a trace set: questions, answered right, kept)."""
    import json

    from sqlmodel import col, select

    from db.models import CuratedDataset

    _connect()
    with session_scope() as session:
        found = session.exec(select(CuratedDataset).order_by(col(CuratedDataset.created_at).desc())).all()
        listed: list[dict[str, Any]] = [
            {"name": d.name, "sha256": d.sha256, "count": d.count, "uri": d.uri, "job_id": d.job_id,
             "created_at": d.created_at.isoformat(), "manifest": d.manifest}
            for d in found
        ]
    if fmt is Format.json:
        sys.stdout.write(json.dumps(listed, indent=2) + "\n")
    elif not listed:
        console.print("no curated datasets yet: add a `curate:` section to a sweep", highlight=False)
    else:
        for d in listed:
            counts = " → ".join(f"{stage} {n}" for stage, n in d["manifest"]["counts"].items())
            kind = "traces " if d["manifest"].get("kind") == "traces" else ""  # a traces job's set
            console.print(f"{kind}{d['name']}  {d['sha256'][:12]}  {d['count']} items  ({counts})  {d['uri'] or ''}",
                          highlight=False)


@db_app.command("upgrade")
@one_line_errors()
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""
    url = get_settings().effective_database_url
    check_database(url)
    revisions = migrate.upgrade(url)
    console.print(f"database {mask_url(url)} is at revision {', '.join(sorted(revisions))}")


def _connect() -> None:
    prepare_database(get_settings())


def _find_sweep(session: Any, sweep_ref: str | None) -> Sweep:
    found = crud.find_sweep(session, sweep_ref=sweep_ref) if sweep_ref else crud.latest_sweep(session)
    if found is None:
        hint = "no sweeps yet: submit one with `orchestrator submit SWEEP.yaml`"
        raise NotFound(f"no sweep {sweep_ref!r}" if sweep_ref else hint)
    return found


if __name__ == "__main__":
    app()
