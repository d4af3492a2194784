"""`orchestrator web`: check what the site needs before it listens, then serve it with uvicorn."""

from __future__ import annotations

import ipaddress

import typer
from rich.console import Console

from db.services import prepare_database
from db.settings import Settings, get_settings, mask_url
from jobs.errors import UsageError, one_line_errors

errors = Console(stderr=True, soft_wrap=True)
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Only this machine can reach an address that is loopback (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def web_auth(settings: Settings, host: str) -> tuple[str, str] | None:
    """The basic-auth credentials the site asks for: none on loopback unless set, required anywhere else."""
    if settings.web_auth is None:
        if not is_loopback(host):
            raise UsageError(
                f"--host {host} is reachable from other machines: set REASONFLEET_WEB_AUTH=user:password "
                "(the site then asks for it), or keep the default --host 127.0.0.1"
            )
        return None
    user, _, password = settings.web_auth.get_secret_value().partition(":")
    return user, password


@one_line_errors()
def web_command(
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; any other than loopback needs REASONFLEET_WEB_AUTH=user:password."
    ),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
) -> None:
    """A read-only web site over the database: sweeps with live progress, leaderboards, plots, runs, the fleet."""
    import uvicorn

    from orchestrator.web.app import create_app

    settings = get_settings()
    auth = web_auth(settings, host)
    url = prepare_database(settings)  # unreachable or not migrated: one line naming the masked URL, exit 3
    shown = f"[{host}]" if ":" in host else host
    errors.print(
        f"web on http://{shown}:{port} · database {mask_url(url)}" + (" · basic auth on" if auth else ""),
        highlight=False,
    )
    uvicorn.run(create_app(url, auth=auth), host=host, port=port, log_level="warning", access_log=False)
