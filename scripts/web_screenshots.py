"""Screenshots of the web site's pages over a database, for the README (docs/web-*.png).

    PYTHONPATH=. python scripts/web_screenshots.py sqlite:///path/to/reasonfleet.db SWEEP [--run JOB] [-o docs]

Serves the site in this process (as tests/test_web.py does) and drives Debian's chromium headless.
The run page shows the sweep's run with the most regressions (or --run), filtered to them.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

from tests.web_fixtures import chromium, full_page_screenshot, serve


def _json(base: str, path: str) -> object:
    with urllib.request.urlopen(base + path, timeout=60) as response:
        return json.loads(response.read())


def _wait_for_plots(browser: object, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    script = "return document.querySelectorAll('.plot-area:not(.js-plotly-plot)').length"
    while browser.execute_script(script) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.2)
    time.sleep(0.5)  # plotly's transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("sweep")
    parser.add_argument("--run", help="job id of the run page (default: the run with the most regressions)")
    parser.add_argument("-o", "--output", default="docs", type=Path)
    args = parser.parse_args()
    with serve(args.url) as site, chromium() as browser:
        rows = _json(site.base, f"/api/sweeps/{args.sweep}/leaderboard")
        assert isinstance(rows, list) and rows, f"sweep {args.sweep} has no results"
        run = args.run or max(rows, key=lambda r: (r["vs_base"] or {}).get("regressions") or 0)["job_id"]
        pages = {
            "web-sweeps.png": "/",
            "web-sweep.png": f"/sweeps/{args.sweep}",
            "web-run.png": f"/runs/{run}?sweep={rows[0]['sweep_id']}&show=regressions&limit=3",
            "web-fleet.png": "/fleet",
            "web-404.png": "/sweeps/no-such-sweep",
        }
        for name, path in pages.items():
            browser.get(site.base + path)
            _wait_for_plots(browser)
            print(full_page_screenshot(browser, args.output / name))


if __name__ == "__main__":
    main()
