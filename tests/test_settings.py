"""One settings object for every REASONFLEET_* variable: the README's table matches it, bad values stop both CLIs.

No services needed: an invalid variable stops a command before it reaches any.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from db.settings import Settings, env_name, get_settings, load_settings, markdown_table
from jobs.errors import NotFound, SettingsError, one_line_errors

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "workers", "jobs", "db")


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No REASONFLEET_* variable of the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("REASONFLEET_"):
            monkeypatch.delenv(name)


def readme_rows() -> dict[str, str]:
    """variable -> default cell of the README's configuration table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `(REASONFLEET_[A-Z_]+)` \| .+ \| (.+) \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


# --------------------------------------------------------------------------- the README's table


def test_readme_lists_every_setting_with_its_true_default(clean_env: None) -> None:
    # Given the README's table and the settings object
    rows = readme_rows()
    fields = {env_name(field): field for field in Settings.model_fields}

    # Then they name the same variables
    assert set(rows) == set(fields), (
        f"only in README: {sorted(set(rows) - set(fields))}; only in Settings: {sorted(set(fields) - set(rows))}"
    )
    # And each default in the README is the field's default, read back as the variable's value would be
    for variable, cell in rows.items():
        field = fields[variable]
        default = Settings.model_fields[field].default
        if cell.startswith("unset"):
            assert default is None, f"{variable}: README says unset, Settings says {default!r}"
            continue
        literal = re.fullmatch(r"`([^`]+)`", cell)
        assert literal, f"{variable}: the default cell must be `value` or 'unset…', got {cell!r}"
        parsed = getattr(load_settings({field: literal.group(1)}), field)
        assert parsed == default, f"{variable}: README says {literal.group(1)}, Settings says {default!r}"


def test_readme_table_is_the_generated_one() -> None:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Configuration\n", 1)[1]
    assert markdown_table() in section, "README's configuration table drifted: paste `python -m db.settings`"


def test_no_module_reads_or_writes_our_variables_past_the_settings() -> None:
    # Every REASONFLEET_* variable goes through db/settings.py; nothing writes os.environ to pass it on.
    direct = re.compile(r"(environ|getenv|envvar)[^\n]*REASONFLEET_")
    known = {env_name(field) for field in Settings.model_fields}
    offenders, unknown = [], set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if path != REPO / "db" / "settings.py" and direct.search(text):
                offenders.append(str(path.relative_to(REPO)))
            unknown |= {name for name in re.findall(r"REASONFLEET_[A-Z_]*[A-Z]", text)} - known
    assert offenders == []
    assert unknown == set(), "mentioned in the code but not a setting"


# --------------------------------------------------------------------------- the object


def test_options_override_the_environment_explicitly(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONFLEET_YIELD_MODE", "requeue")
    monkeypatch.setenv("REASONFLEET_HOURS", "01:00-08:00")
    settings = load_settings({"yield_mode": "pause", "hours": None})
    assert settings.yield_mode == "pause" and str(settings.hours_window) == "01:00-08:00"
    assert os.environ["REASONFLEET_YIELD_MODE"] == "requeue"  # the environment is read, never written


def test_get_settings_follows_the_environment(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().heartbeat_s == 3.0
    monkeypatch.setenv("REASONFLEET_HEARTBEAT_S", "0.5")
    assert get_settings().heartbeat_s == 0.5


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("REASONFLEET_HEARTBEAT_S", "abc", "valid number"),
    ("REASONFLEET_RECONCILE_EVERY_S", "-5", "greater than or equal to 0"),
    ("REASONFLEET_YIELD_MODE", "x", "'requeue' or 'pause'"),
    ("REASONFLEET_HOURS", "25:00-", "HH:MM-HH:MM"),
    ("REASONFLEET_GPU_PROBE", "cuda", "nvml, none or file:"),
])
def test_an_invalid_variable_is_named(clean_env: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                       says: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=re.escape(variable)) as caught:
        get_settings()
    assert says in str(caught.value) and caught.value.exit_code == 2


def test_secrets_never_appear_in_errors_or_reprs(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONFLEET_FLOWER_AUTH", "hunter2")  # no user: invalid
    with pytest.raises(SettingsError, match="REASONFLEET_FLOWER_AUTH: expected user:password") as caught:
        get_settings()
    assert "hunter2" not in str(caught.value)
    settings = Settings(
        database_url="postgresql://rf:s3cret@db/rf", broker_url="redis://:pw9@h/0", flower_auth=SecretStr("a:b0b")
    )
    assert "s3cret" not in repr(settings) and "pw9" not in repr(settings) and "b0b" not in repr(settings)


# --------------------------------------------------------------------------- the one wrapper


def test_the_wrapper_turns_our_errors_into_one_line_and_leaves_bugs_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)

    @one_line_errors()
    def missing() -> None:
        raise NotFound("no sweep 'x'")

    with pytest.raises(SystemExit) as exited:
        missing()
    assert exited.value.code == 4 and stderr.getvalue() == "error: no sweep 'x'\n"
    with pytest.raises(KeyError), one_line_errors():
        raise KeyError("a bug keeps its traceback")


# --------------------------------------------------------------------------- through the real CLIs


def run_cli(module: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=120)


SECRET_DB = "postgresql://rf:s3cret@h/rf"


@pytest.mark.parametrize(("module", "args", "env", "named"), [
    ("orchestrator.cli", ["status"], {"REASONFLEET_HEARTBEAT_S": "abc"}, "REASONFLEET_HEARTBEAT_S"),
    ("orchestrator.cli", ["status"], {"REASONFLEET_FLOWER_AUTH": "hunter2"}, "REASONFLEET_FLOWER_AUTH"),
    ("orchestrator.cli", ["reconcile", "--lost-after", "-1"], {"REASONFLEET_BROKER_URL": "redis://h"}, "--lost-after"),
    ("workers.cli", ["start"], {"REASONFLEET_LOST_AFTER_S": "-3"}, "REASONFLEET_LOST_AFTER_S"),
    ("workers.cli", ["start"], {"REASONFLEET_YIELD_MODE": "x"}, "REASONFLEET_YIELD_MODE"),
    ("workers.cli", ["start", "--hours", "25:00-"], {}, "--hours"),
    ("workers.cli", ["start", "--db", SECRET_DB], {"REASONFLEET_HOURS": "8-1"}, "REASONFLEET_HOURS"),
])
def test_an_invalid_setting_stops_the_cli_with_exit_2_naming_it(
    tmp_path: Path, module: str, args: list[str], env: dict[str, str], named: str
) -> None:
    result = run_cli(module, *args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {named}: "), result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout and "s3cret" not in result.stderr + result.stdout
    assert not (tmp_path / "reasonfleet.db").exists()  # stopped before anything was opened
