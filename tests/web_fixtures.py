"""The web site under test: a real sweep recorded in a real database, the site served by uvicorn on a free port,
and Debian's chromium driven headless through chromedriver (Selenium)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.model_fixtures import require

CHROMIUM = os.environ.get("REASONFLEET_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("REASONFLEET_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def tiny_sweep_file(directory: Path, model_dir: Path) -> Path:
    """Two strategies on the base model and on a LoRA adapter trained on CPU: 5 jobs, seconds on 2 cores."""
    spec = {
        "name": "web-demo",
        "seed": 1,
        "model": {"id": str(model_dir), "name": "tiny"},
        "dataset": {"name": "synthetic", "n": 8, "complexity": [1, 3], "seed": 0},
        "train": {"method": "lora", "lora_rank": [4], "traces": [16], "batch_size": 4, "max_length": 512},
        "eval": {"strategies": ["greedy", {"self_consistency": {"n": 2}}], "max_new_tokens": 12, "batch_size": 8},
    }
    path = directory / "web-demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_sweep_in_process(path: Path) -> str:
    """`orchestrator submit` in embedded mode, through the same functions (plan, record, run in process);
    the database is the one the settings name. Returns the sweep id."""
    from rich.console import Console

    from db.settings import get_settings
    from orchestrator.embedded import run_in_process
    from orchestrator.submit import plan, record

    report = record(plan(path), get_settings())
    assert report.new_jobs == 5 and len(report.to_enqueue) == 3, (report, get_settings())
    with open(os.devnull, "w") as quiet:
        final = run_in_process(report.to_enqueue, Console(file=quiet))
    assert set(final.values()) == {"succeeded"}, final
    return report.sweep.id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Site:
    base: str
    url: str  # the database
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve(url: str, *, auth: tuple[str, str] | None = None, poll_ms: int = 300) -> Iterator[Site]:
    """The site over `url`, served by uvicorn in a thread of this process (so it sees this process's settings)."""
    import uvicorn

    from orchestrator.web.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(url, auth=auth, poll_ms=poll_ms), host="127.0.0.1", port=port, log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    site = Site(f"http://127.0.0.1:{port}", url, server, thread)
    try:
        yield site
    finally:
        site.stop()


def require_browser() -> None:
    require(
        shutil.which(CHROMIUM) is not None and shutil.which(CHROMEDRIVER) is not None,
        f"chromium ({CHROMIUM}) or chromedriver ({CHROMEDRIVER}) missing: apt-get install chromium chromium-driver",
    )


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless chromium driven by Debian's chromedriver; never Selenium Manager (it would download one)."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
        f"--window-size={width},{height}", "--hide-scrollbars", "--lang=en-US",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def full_page_screenshot(driver: Any, path: Path, width: int = 1400) -> Path:
    """The whole page (not only the window) as a PNG: the window grows to the page's height, then shrinks back."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 20, 600), 6000))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(width, 1000)
    return path
