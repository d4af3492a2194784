"""`orchestrator web` in a real browser: Debian's chromium (headless, through chromedriver) against the site
served by uvicorn over a real database (SQLite and Postgres) holding a real sweep.

The sweep: a tiny random Llama evaluated by the embedded executor with greedy and self-consistency, before and
after a LoRA fine-tune trained on CPU (5 jobs, the code path of `orchestrator submit`). It gets nothing right,
so the comparisons come from the constructed sweeps of tests/test_report_show.py (`quick`, whose adapter
regresses on 10 questions and fixes 2, with labelled failures), recorded beside it; a third sweep of no-op jobs
stays queued so that the test can move its jobs through the state machine while the page is open.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from db.migrate import upgrade
from db.session import session_scope
from tests.fleet_helpers import noop_drafts, record
from tests.model_fixtures import TinyModel
from tests.test_report_show import ADAPTER, BASE, record_all
from tests.web_fixtures import Site, chromium, full_page_screenshot, run_sweep_in_process, serve, tiny_sweep_file

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = os.environ.get("REASONFLEET_WEB_SCREENSHOTS")  # keep them (docs/); else under pytest's tmp
FLOWER = "http://127.0.0.1:5555/"


@dataclass
class World:
    kind: str
    site: Site
    directory: Path
    sweep_id: str  # the real tiny sweep
    quick: dict[str, str]  # run label -> job id, in the constructed `quick` sweep
    live_id: str  # the no-op sweep whose jobs stay queued
    live_jobs: list[str]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model: TinyModel
) -> Iterator[World]:
    from db.session import get_engine
    from db.settings import reload_settings
    from tests.service_fixtures import scratch_database

    directory = tmp_path_factory.mktemp(f"web-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{directory / 'reasonfleet.db'}"
        else:
            url = stack.enter_context(scratch_database("rf_web"))
        upgrade(url)
        # After the environment is restored (callbacks run last in, first out): get_engine() caches the default
        # URL's engine under None, so it is forgotten with the settings.
        stack.callback(get_engine.cache_clear)
        stack.callback(reload_settings)
        env = stack.enter_context(pytest.MonkeyPatch.context())
        for name in [k for k in os.environ if k.startswith("REASONFLEET_")]:
            env.delenv(name)
        env.setenv("REASONFLEET_DATABASE_URL", url)
        env.setenv("REASONFLEET_ARTIFACTS", str(directory / "artifacts"))
        env.setenv("REASONFLEET_FLOWER_URL", FLOWER)
        reload_settings()
        get_engine.cache_clear()
        sweep_id = run_sweep_in_process(tiny_sweep_file(directory, tiny_model.path))
        quick = record_all(url, directory).quick
        live_id, live_jobs = record(f"live-{request.param}", noop_drafts(3, tag=request.param))
        site = stack.enter_context(serve(url))
        yield World(request.param, site, directory, sweep_id, quick, live_id, live_jobs)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(SCREENSHOTS) if SCREENSHOTS else tmp_path_factory.mktemp("screenshots")


def get(site: Site, path: str, auth: tuple[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(site.base + path)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def api(site: Site, path: str) -> Any:
    status, body, _ = get(site, path)
    assert status == 200, body
    return json.loads(body)


def cli(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    env |= {"REASONFLEET_DATABASE_URL": url, "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def wait(browser: Any, condition: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition)


def css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


# --------------------------------------------------------------------------- sweeps and the leaderboard


def test_the_sweeps_page_lists_every_sweep_with_its_jobs_by_state(world: World, browser: Any, shots: Path) -> None:
    browser.get(world.site.base + "/")
    listed = {tr.get_attribute("data-sweep"): tr for tr in css(browser, "#sweeps tbody tr")}
    sweeps = api(world.site, "/api/sweeps")
    assert list(listed) == [s["id"] for s in sweeps]  # newest first, as the JSON twin
    assert {world.sweep_id, world.live_id} <= listed.keys()
    assert "5/5 ended · 5 succeeded" in listed[world.sweep_id].text
    quick = next(s for s in sweeps if s["name"] == "quick")
    assert (quick["runs"], quick["best"]["run"]) == (3, "M + base · self_consistency")
    assert "M + base · self_consistency 64.0% of 50" in listed[quick["id"]].text  # the leaderboard's first row
    if world.kind == "sqlite":
        full_page_screenshot(browser, shots / "web-sweeps.png")


def _expected_cells(row: dict[str, Any]) -> dict[str, str]:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    return {
        "run": row["run"],
        "n": str(row["n"]),
        "pass@1 [95% CI]": f"{pct(row['pass_at_1'])}% [{pct(row['ci_low'])}, {pct(row['ci_high'])}]",
        "tok/s": f"{row['tokens_per_s']:.1f}",
        "peak memory": f"{row['peak_memory_mb']:.0f} MB ({row['memory_kind']})",
        "latency s": "–" if row["mean_latency_s"] is None else f"{row['mean_latency_s']:.2f}",
        "RES": "–" if row["res"] is None else f"{row['res']:.4f}",
        "flags": ", ".join(row["flags"]) or "–",
    }


@pytest.mark.parametrize("which", ["tiny", "quick"])
def test_the_leaderboard_shows_the_numbers_of_the_cli_json(world: World, browser: Any, which: str) -> None:
    sweep = world.sweep_id if which == "tiny" else "quick"
    printed = cli("leaderboard", "--sweep", sweep, "--format", "json", url=world.site.url, cwd=world.directory)
    assert printed.returncode == 0, printed.stderr
    expected = json.loads(printed.stdout)
    assert len(expected) >= 3
    assert api(world.site, f"/api/sweeps/{sweep}/leaderboard") == expected  # the JSON twin is the CLI's JSON

    browser.get(f"{world.site.base}/sweeps/{sweep}")
    rows = css(browser, "#leaderboard tbody tr")
    assert [tr.get_attribute("data-job") for tr in rows] == [row["job_id"] for row in expected]
    for tr, row in zip(rows, expected, strict=True):
        cells = {td.get_attribute("data-key"): td for td in tr.find_elements("css selector", "td[data-key]")}
        assert {key: cells[key].text for key in _expected_cells(row)} == _expected_cells(row)
        assert float(cells["pass@1 [95% CI]"].get_attribute("data-sort")) == row["pass_at_1"]  # not rounded
        assert float(cells["peak memory"].get_attribute("data-sort")) == row["peak_memory_mb"]
    if which == "quick":  # the comparison columns, as the terminal writes them
        adapter = _cells(browser, ADAPTER)
        assert adapter["reg/fix"] == "10/2"
        assert adapter["Δ vs reference [95% CI]"].startswith("-16.0 [")
        assert adapter["top failure"].startswith("other")
        base = _cells(browser, BASE)
        assert base["Δ vs reference [95% CI]"] == "reference"


def _cells(browser: Any, run: str) -> dict[str, str]:
    return {td.get_attribute("data-key"): td.text for td in css(browser, f"tr[data-run='{run}'] td[data-key]")}


def test_a_header_click_sorts_the_leaderboard(world: World, browser: Any) -> None:
    browser.get(f"{world.site.base}/sweeps/quick")
    header = next(th for th in css(browser, "#leaderboard thead th") if th.text.startswith("pass@1"))
    runs = lambda: [tr.get_attribute("data-run") for tr in css(browser, "#leaderboard tbody tr")]  # noqa: E731
    best_first = runs()
    header.click()  # descending first
    assert runs() == best_first
    header.click()
    assert runs() == best_first[::-1]


# --------------------------------------------------------------------------- plots


def _drawn(browser: Any, name: str) -> list[dict[str, Any]]:
    script = "return document.getElementById(arguments[0]).data.map(t => ({x: t.x, y: t.y, z: t.z || null}))"
    return list(browser.execute_script(script, f"plot-{name}"))


def _marks(figure: dict[str, Any]) -> int:
    """SVG marks plotly draws for the figure: a point per marker or bar."""
    return sum(len(t["y"]) for t in figure["data"] if t["type"] == "bar" or "markers" in t.get("mode", ""))


def test_every_plot_of_a_sweep_is_drawn_with_its_data_points(world: World, browser: Any, shots: Path) -> None:
    figures = api(world.site, f"/api/sweeps/{world.sweep_id}/plots")
    assert set(figures) == {"accuracy", "res", "taxonomy", "loss", "complexity"}
    browser.get(f"{world.site.base}/sweeps/{world.sweep_id}")
    wait(browser, lambda b: len(css(b, ".js-plotly-plot")) == len(figures))
    for name, figure in figures.items():
        drawn = _drawn(browser, name)
        assert [(t["x"], t["y"]) for t in drawn] == [(t["x"], t["y"]) for t in figure["data"]], name
        assert len(css(browser, f"#plot-{name} .point")) == _marks(figure), name
    runs = api(world.site, f"/api/sweeps/{world.sweep_id}/leaderboard")
    assert sorted(figures["accuracy"]["data"][0]["customdata"]) == sorted(r["run"] for r in runs)
    assert len(css(browser, "#plot-accuracy .errorbar")) == len(runs)  # every run with its interval
    (curve,) = figures["loss"]["data"]
    assert len(curve["y"]) >= 2 and len(css(browser, "#plot-loss path.js-line")) == 1
    assert {p for t in figures["complexity"]["data"] for p in t["x"]} == {1, 2, 3}
    if world.kind == "sqlite":
        full_page_screenshot(browser, shots / "web-sweep.png")


def test_the_comparison_plots_carry_the_regressions_labels(world: World, browser: Any) -> None:
    figures = api(world.site, "/api/sweeps/quick/plots")
    # Horizontal bars: a run a row (y), its count along x.
    regressions = {t["name"]: dict(zip(t["y"], t["x"], strict=True)) for t in figures["regressions"]["data"]}
    assert {label: by_run[ADAPTER] for label, by_run in regressions.items()} == {
        "relationship": 5, "arithmetic": 4, "unit": 1,
    }
    # The Pareto front of the constructed sweep: all its runs have 10 tokens, so the best alone is on it.
    assert figures["accuracy"]["data"][1]["customdata"] == ["M + base · self_consistency"]
    browser.get(f"{world.site.base}/sweeps/quick")
    wait(browser, lambda b: len(css(b, ".js-plotly-plot")) == len(figures))
    assert len(css(browser, "#plot-regressions .point")) == _marks(figures["regressions"])


# --------------------------------------------------------------------------- a run


def test_a_run_page_shows_its_comparison_and_filters_raw_generations(world: World, browser: Any, shots: Path) -> None:
    from selenium.webdriver.support.ui import Select

    job_id = world.quick[ADAPTER]  # also a run of `quick-ref`, whose reference is self-consistency
    browser.get(f"{world.site.base}/runs/{job_id}?sweep=quick")
    wait(browser, lambda b: len(css(b, ".js-plotly-plot")) == 2)
    assert _drawn(browser, "transitions")[0]["z"] == [[20, 10], [2, 18]]
    assert "10 regressions, 2 fixes" in css(browser, "#comparison")[0].text
    assert len(css(browser, "article.question")) == 50

    Select(css(browser, "#show")[0]).select_by_value("regressions")  # submits the filter
    wait(browser, lambda b: "show=regressions" in b.current_url)
    shown = css(browser, "article.question")
    assert [a.get_attribute("data-question") for a in shown] == [f"q{i}" for i in range(20, 30)]
    assert all("reference run (right" in a.text for a in shown)  # the reference's own generation beside it
    if world.kind == "sqlite":
        full_page_screenshot(browser, shots / "web-run.png")

    Select(css(browser, "#show")[0]).select_by_value("relationship")
    wait(browser, lambda b: "show=relationship" in b.current_url)
    assert {a.get_attribute("data-label") for a in css(browser, "article.question")} == {"relationship"}
    assert css(browser, "#question-count")[0].text == "5 of 5"
    browser.get(f"{world.site.base}/runs/{job_id}?sweep=quick&show=fixes")
    assert [a.get_attribute("data-question") for a in css(browser, "article.question")] == ["q30", "q31"]
    twin = api(world.site, f"/api/runs/{job_id}/questions?sweep=quick&show=fixes")
    assert [q["question_id"] for q in twin["questions"]] == ["q30", "q31"] and twin["total"] == 2


# --------------------------------------------------------------------------- live progress


def _bar(browser: Any) -> tuple[str, dict[str, str]]:
    (element,) = css(browser, ".progress")
    counts = {seg.get_attribute("data-state"): seg.get_attribute("data-count") for seg in css(browser, ".seg")}
    return element.find_element("css selector", "[data-progress-text]").text, counts


def test_the_progress_bar_moves_while_jobs_run_without_a_reload(world: World, browser: Any) -> None:
    from db import crud

    browser.get(f"{world.site.base}/sweeps/{world.live_id}")
    assert _bar(browser)[0] == "0/3 ended · 3 queued"
    marker = browser.execute_script("return window.rfMarker = Math.random()")  # gone if the page reloads
    with session_scope(world.site.url) as session:  # a worker claims a job: queued -> running
        assert crud.claim(session, job_id=world.live_jobs[0], worker="web-test", stale_after_s=60) is not None
    wait(browser, lambda b: _bar(b)[0] == "0/3 ended · 2 queued · 1 running")
    with session_scope(world.site.url) as session:  # and finishes it: running -> succeeded
        assert crud.succeed_running(session, job_id=world.live_jobs[0]) == []
    wait(browser, lambda b: _bar(b)[0] == "1/3 ended · 2 queued · 1 succeeded")
    assert _bar(browser)[1]["succeeded"] == "1"
    width = browser.execute_script("return document.querySelector('.seg.succeeded').style.width")
    assert float(width.rstrip("%")) == pytest.approx(100 / 3, abs=0.01)  # the browser keeps 6 digits
    assert browser.execute_script("return window.rfMarker") == marker
    assert not css(browser, "#new-results")[0].get_attribute("hidden")  # says that a reload shows more


# --------------------------------------------------------------------------- the fleet


def test_the_fleet_page_shows_workers_queued_jobs_and_flower(world: World, browser: Any, shots: Path) -> None:
    from db import fleet
    from db.models import Worker

    browser.get(f"{world.site.base}/fleet")
    if not api(world.site, "/api/fleet")["workers"]:
        assert "Workers exist only with a broker" in css(browser, "#no-workers")[0].text
    with session_scope(world.site.url) as session:
        fleet.register(session, worker=Worker(
            name="reasonfleet@pc-of-ana", host="pc-of-ana", gpu_name="NVIDIA GeForce RTX 3060", vram_total_mb=12288,
            vram_free_mb=11000, version="0.1.0", memory_class="rf-12gb", queues="reasonfleet,rf-4gb,rf-8gb,rf-12gb",
        ))
        fleet.set_paused(session, name="reasonfleet@pc-of-ana", reason="the owner is gaming (game.exe)")
    browser.get(f"{world.site.base}/fleet")
    (row,) = css(browser, "tr[data-worker='reasonfleet@pc-of-ana']")
    assert "paused: the owner is gaming (game.exe)" in row.text and "RTX 3060" in row.text and "rf-12gb" in row.text
    queued = {j["id"] for j in api(world.site, "/api/fleet")["queued"]}
    assert queued >= set(world.live_jobs[1:])
    assert {tr.get_attribute("data-job") for tr in css(browser, "#queued tbody tr")} == queued
    assert css(browser, "#flower")[0].get_attribute("href") == FLOWER
    if world.kind == "sqlite":
        full_page_screenshot(browser, shots / "web-fleet.png")


# --------------------------------------------------------------------------- bad input, auth


def test_unknown_ids_give_a_404_page_naming_them(world: World, browser: Any, shots: Path) -> None:
    browser.get(f"{world.site.base}/sweeps/no-such-sweep")
    assert css(browser, "h1")[0].text == "Not found"
    assert css(browser, "#error-message")[0].text == "no sweep 'no-such-sweep' (give a sweep id or name)"
    if world.kind == "sqlite":
        full_page_screenshot(browser, shots / "web-404.png")
    status, body, _ = get(world.site, "/runs/nope123")
    assert status == 404 and "no eval run &#39;nope123&#39;" in body
    status, body, _ = get(world.site, "/api/sweeps/no-such-sweep/leaderboard")
    assert (status, json.loads(body)) == (404, {"error": "no sweep 'no-such-sweep' (give a sweep id or name)"})
    status, body, _ = get(world.site, f"/api/runs/{world.quick[ADAPTER]}/questions?show=drop+table&limit=0")
    assert status == 422
    assert "show: String should match pattern" in json.loads(body)["error"] and "limit:" in json.loads(body)["error"]


def test_off_loopback_every_page_asks_for_basic_auth(tmp_path: Path, browser: Any) -> None:
    url = f"sqlite:///{tmp_path / 'reasonfleet.db'}"  # the auth layer does not depend on the database
    upgrade(url)
    quick = record_all(url, tmp_path).quick
    with serve(url, auth=("ana", "s3cret-pw")) as guarded:
        for path in ("/", "/sweeps/quick", f"/runs/{quick[ADAPTER]}", "/static/app.js", "/no-such-page"):
            status, body, headers = get(guarded, path)
            assert status == 401 and "<h1>Authentication required</h1>" in body, path
            assert "REASONFLEET_WEB_AUTH" in body and "s3cret" not in body and quick[ADAPTER] not in body
            assert headers["www-authenticate"] == 'Basic realm="ReasonFleet", charset="UTF-8"'
        assert get(guarded, "/api/sweeps")[:2] == (401, '{"error":"authentication required"}')
        assert get(guarded, "/", auth=("ana", "wrong"))[0] == 401
        assert get(guarded, "/", auth=("bob", "s3cret-pw"))[0] == 401
        assert get(guarded, "/api/sweeps", auth=("ana", "s3cret-pw"))[0] == 200
        # A browser without the password sees nothing of the site (headless chromium shows no login dialog)...
        browser.get(guarded.base + "/fleet")
        assert not css(browser, "h1") or css(browser, "h1")[0].text != "Fleet"
        assert "Fleet" not in browser.page_source
        # ...and with it, the page.
        browser.get(guarded.base.replace("://", "://ana:s3cret-pw@") + "/fleet")
        assert css(browser, "h1")[0].text == "Fleet" and "s3cret-pw" not in browser.page_source
