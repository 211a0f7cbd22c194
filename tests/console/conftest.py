"""The console under test: served by uvicorn on a loopback port, driven by Debian's headless
Chromium through Selenium (no browser download: /usr/bin/chromium and its chromedriver)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from mailferry.config import MailferryConfig
from mailferry.console.app import build_app
from tests.deliver.conftest import ca, sink, start_worker
from tests.deliver.test_worker_outcomes import smtp_config

__all__ = ["ca", "sink", "smtp_config", "start_worker"]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServedConsole:
    """``mailferry console``'s app under uvicorn in a thread of the test process."""

    def __init__(self, config: MailferryConfig) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = build_app(config, list(config.kafka.bootstrap_servers), "127.0.0.1")
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServedConsole:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the console did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def serve() -> Iterator[Callable[[MailferryConfig], ServedConsole]]:
    running: list[ServedConsole] = []

    def start(config: MailferryConfig) -> ServedConsole:
        served = ServedConsole(config).__enter__()
        running.append(served)
        return served

    yield start
    for served in running:
        served.__exit__()


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    if not (os.access(CHROMIUM, os.X_OK) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are not installed: run scripts/setup")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    driver.implicitly_wait(20)  # a loaded shared machine: elements may come late
    yield driver
    driver.quit()


def screenshot(browser: webdriver.Chrome, name: str) -> None:
    """Saved under ``$MAILFERRY_CONSOLE_SCREENSHOTS`` when set (how docs/console/*.png were made)."""
    folder = os.environ.get("MAILFERRY_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


def on_page(browser: webdriver.Chrome, title: str, timeout: float = 60) -> None:
    """Wait until the browser shows the page titled ``title`` (after a click that navigates)."""
    WebDriverWait(browser, timeout).until(lambda b: b.title.startswith(title + " ·"))
