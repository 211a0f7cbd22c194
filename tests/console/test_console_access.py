"""Who may use the console: a bind beyond loopback without a secret is refused; with a token or
an argon2 password hash (from a secret reference) the pages ask for a login, in a real Chromium."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from selenium import webdriver
from selenium.webdriver.common.by import By
from typer.testing import CliRunner

from mailferry.cli.main import app
from mailferry.config import parse_config
from mailferry.config.kafka import KafkaConfig
from mailferry.console.access import is_loopback
from mailferry.console.app import build_app
from mailferry.errors import ConfigError

from .conftest import ServedConsole, on_page


def _config_text(kafka: KafkaConfig, tmp_path: Path, console: str = "") -> str:
    return f'state_dir = "{tmp_path / "state"}"\n' + kafka.connection_toml() + f"[console]\n{console}"


def test_a_non_loopback_bind_without_a_secret_is_refused(tmp_path: Path) -> None:
    kafka = KafkaConfig(bootstrap_servers=["127.0.0.1:9"], topic_prefix="t")
    config_file = tmp_path / "mailferry.toml"
    config_file.write_text(_config_text(kafka, tmp_path))
    refused = CliRunner().invoke(app, ["-c", str(config_file), "console", "--host", "0.0.0.0"])
    assert refused.exit_code != 0
    assert "not loopback" in refused.output and "console.token" in refused.output
    with pytest.raises(ConfigError, match="not loopback"):
        build_app(parse_config(_config_text(kafka, tmp_path)), ["127.0.0.1:9"], "192.0.2.10")
    (tmp_path / "token").write_text("s3cret")
    guarded = parse_config(_config_text(kafka, tmp_path, f'token = "file:{tmp_path}/token"\n'))
    assert build_app(guarded, ["127.0.0.1:9"], "0.0.0.0") is not None


def test_loopback_names() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.10")
    assert not is_loopback("no-such-host.invalid")


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["token", "password_hash"])
def test_a_console_with_a_secret_asks_for_it_in_the_browser(
    kind: str,
    tmp_path: Path,
    kafka_config: KafkaConfig,
    serve: Callable[..., ServedConsole],
    browser: webdriver.Chrome,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "correct horse battery"
    if kind == "token":
        monkeypatch.setenv("MAILFERRY_TEST_CONSOLE_TOKEN", secret)
        line = 'token = "env:MAILFERRY_TEST_CONSOLE_TOKEN"\n'
    else:
        (tmp_path / "console.hash").write_text(PasswordHasher().hash(secret))
        os.chmod(tmp_path / "console.hash", 0o600)
        line = f'password_hash = "file:{tmp_path / "console.hash"}"\nuser = "ops"\n'
    config = parse_config(_config_text(kafka_config, tmp_path, line))
    console = serve(config)
    browser.delete_all_cookies()

    browser.get(console.url + "/dlq")
    assert browser.current_url == console.url + "/login"
    browser.find_element(By.ID, "secret").send_keys("wrong")
    browser.find_element(By.ID, "login").click()
    on_page(browser, "Log in")
    assert browser.find_element(By.ID, "login-failed")
    browser.get(console.url + "/")
    assert browser.current_url == console.url + "/login"

    browser.find_element(By.ID, "secret").send_keys(secret)
    browser.find_element(By.ID, "login").click()
    on_page(browser, "Overview")
    expected = "console:admin" if kind == "token" else "console:ops"
    assert expected in browser.find_element(By.CSS_SELECTOR, "header .who").text
