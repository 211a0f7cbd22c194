"""The console in a real headless Chromium against the real pipeline: a dead letter made by the
real delivery worker (SMTP 550 from an aiosmtpd sink), requeued from the page and delivered."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.dlq import DeadLetterQueue, Filter
from mailferry.status import write_snapshot
from tests.deliver.conftest import RunningWorker, audit_events, dead_letters, delivery_record, publish
from tests.deliver.smtp_sink import LoopbackCA, SmtpSink

from .conftest import ServedConsole, on_page, screenshot, smtp_config

pytestmark = pytest.mark.integration
MESSAGE = (
    b"From: sender@example.org\r\nTo: gone@acme.example\r\nSubject: console test\r\n"
    b"Message-ID: <console-1@test.example>\r\n\r\nbody\r\n"
)


def _texts(browser: webdriver.Chrome, css: str) -> list[str]:
    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, css)]


@dataclass
class Refused:
    """A dead letter made by the real worker: the SMTP sink refused its recipient with a 550."""

    config: MailferryConfig
    worker: RunningWorker
    letter: dict[str, Any]


@pytest.fixture
def refused(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    sink: SmtpSink,
    ca: LoopbackCA,
    start_worker: Callable[..., RunningWorker],
) -> Refused:
    config = smtp_config(tmp_path, kafka_config, sink, ca)
    sink.handler.replies["gone@acme.example"] = "550 5.1.1 no such user here"
    publish(config, [delivery_record("gone@acme.example", MESSAGE, message_id="<console-1@test.example>")])
    worker = start_worker(config)
    worker.wait_for(lambda: bool(dead_letters(config)))
    [letter] = dead_letters(config)
    return Refused(config, worker, letter)


def test_pages_render_and_a_requeue_from_the_page_delivers(
    refused: Refused,
    sink: SmtpSink,
    serve: Callable[..., ServedConsole],
    browser: webdriver.Chrome,
) -> None:
    config, worker, letter = refused.config, refused.worker, refused.letter
    # what a fetch role reports about its mailboxes (the writer `mailferry status` reads)
    write_snapshot(
        config.state_dir,
        "fetch",
        {
            "mailboxes": {
                "acme/catchall": {
                    "last_poll": "2026-12-03T10:00:00+00:00",
                    "fetched": 3,
                    "errors": 1,
                    "last_error": "pop3: server busy",
                }
            }
        },
    )
    console = serve(config)
    browser.delete_all_cookies()

    browser.get(console.url + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    assert browser.find_element(By.ID, "tenant-acme").text == "acme"
    [row] = [r for r in _texts(browser, "table.mailboxes tr") if r.startswith("catchall")]
    assert "pop3: server busy" in row and "2026-12-03T10:00:00" in row
    assert browser.find_element(By.ID, "throughput").tag_name == "svg"
    assert any(".deliver" in line for line in _texts(browser, "#lag tr"))
    assert browser.find_element(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]')

    browser.get(console.url + "/dlq")
    link = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{letter["dead_letter_id"]}"] a')
    assert "recipient-refused" in browser.find_element(By.ID, "dead-letters").text
    screenshot(browser, "dead-letters")
    link.click()
    on_page(browser, f"Dead letter {letter['dead_letter_id']}")
    assert browser.find_element(By.ID, "status").text == "dead"
    assert "no such user here" in browser.find_element(By.ID, "record").text
    screenshot(browser, "dead-letter")

    # a POST carrying the browser's own session cookie but no CSRF token is refused, and changes nothing
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    action = f"{console.url}/dlq/{letter['dead_letter_id']}/discard"
    assert httpx.post(action, cookies=cookies, data={}).status_code == 403
    assert httpx.post(action, cookies=cookies, data={"csrf": "guessed"}).status_code == 403
    queue = DeadLetterQueue(config, list(config.kafka.bootstrap_servers))
    assert [e.status for e in queue.find(Filter(ids=frozenset({letter["dead_letter_id"]})))] == ["dead"]

    del sink.handler.replies["gone@acme.example"]  # the mailbox was created
    browser.find_element(By.ID, "requeue").click()
    on_page(browser, "Dead letters")
    assert browser.find_element(By.ID, "flash").text == f"requeued {letter['dead_letter_id']}"
    worker.wait_for(lambda: sink.handler.count() == 1)
    worker.shutdown()
    assert sink.handler.accepted[0].rcpt_tos == ["gone@acme.example"]
    assert queue.find(Filter()) == []
    [retried] = [e for e in audit_events(config, timeout_ms=1000) if e["stage"] == "dlq"]
    assert retried["details"]["actor"] == f"console:{getpass.getuser()}"
    assert retried["details"]["dead_letter_id"] == letter["dead_letter_id"]

    browser.get(console.url + "/trace")
    browser.find_element(By.NAME, "message_id").send_keys("<console-1@test.example>")
    browser.find_element(By.ID, "search").click()
    WebDriverWait(browser, 60).until(lambda b: "message_id=" in b.current_url)
    events = _texts(browser, "#events tr")
    assert any("dead-lettered" in e for e in events)
    assert any("retried" in e and f"actor=console:{getpass.getuser()}" in e for e in events)
    assert any(" delivered " in f" {e} " for e in events)
    screenshot(browser, "trace")

    browser.get(console.url + "/")
    assert browser.find_element(By.ID, "total-delivered").text == "1"
    assert browser.find_elements(By.CSS_SELECTOR, "#throughput rect.bar.delivered")
    screenshot(browser, "overview")


def test_a_discard_from_the_page_takes_the_letter_off_the_list_and_is_audited(
    refused: Refused,
    sink: SmtpSink,
    serve: Callable[..., ServedConsole],
    browser: webdriver.Chrome,
) -> None:
    config, letter = refused.config, refused.letter
    refused.worker.shutdown()
    console = serve(config)
    browser.delete_all_cookies()

    browser.get(f"{console.url}/dlq/{letter['dead_letter_id']}")
    browser.find_element(By.NAME, "note").send_keys("spam, nobody wants it")
    browser.find_element(By.ID, "discard").click()
    on_page(browser, "Dead letters")
    assert browser.find_element(By.ID, "flash").text == f"discarded {letter['dead_letter_id']}"
    assert browser.find_element(By.ID, "no-dead-letters")
    browser.get(console.url + "/dlq?all=1")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{letter["dead_letter_id"]}"]')
    assert "discarded" in row.text
    [skipped] = [e for e in audit_events(config, timeout_ms=1000) if e["stage"] == "dlq"]
    assert (skipped["event"], skipped["details"]["action"]) == ("skipped", "discarded")
    assert skipped["details"]["actor"] == f"console:{getpass.getuser()}"
    assert skipped["details"]["note"] == "spam, nobody wants it"
    assert sink.handler.count() == 0
