"""Guessing the console's token or password is slowed to ``limit`` tries per window and client;
the console's own Host check lets an IPv6 loopback bind be reached by its address."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.testclient import TestClient

from mailferry.config import parse_config
from mailferry.console.access import LoginThrottle
from mailferry.console.app import build_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config_text(tmp_path: Path) -> str:
    (tmp_path / "token").write_text("right")
    return (
        f'state_dir = "{tmp_path / "state"}"\n'
        '[kafka]\nbootstrap_servers = ["127.0.0.1:9"]\ntopic_prefix = "t"\n'
        f'[console]\ntoken = "file:{tmp_path}/token"\n'
    )


def _login(client: TestClient, secret: str) -> int:
    page = client.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    answer = client.post("/login", data={"csrf": found.group(1), "secret": secret}, follow_redirects=False)
    return answer.status_code


def test_failures_past_the_limit_are_refused_until_the_window_passes() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("192.0.2.1") is None
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 60
    assert throttle.retry_after("192.0.2.2") is None  # another client is not held
    clock.now += 59
    assert throttle.retry_after("192.0.2.1") == 1
    clock.now += 1
    assert throttle.retry_after("192.0.2.1") is None


def test_a_success_forgets_the_failures() -> None:
    throttle = LoginThrottle(limit=2, window=60, clock=Clock())
    throttle.failed("c")
    throttle.succeeded("c")
    throttle.failed("c")
    assert throttle.retry_after("c") is None


def test_the_login_page_refuses_a_guesser_even_with_the_right_secret(tmp_path: Path) -> None:
    clock = Clock()
    app = build_app(
        parse_config(_config_text(tmp_path)),
        ["127.0.0.1:9"],
        "0.0.0.0",
        throttle=LoginThrottle(limit=5, window=300, clock=clock),
    )
    with TestClient(app, base_url="http://192.0.2.10") as client:
        assert [_login(client, f"guess-{n}") for n in range(5)] == [401] * 5
        assert _login(client, "right") == 429
        clock.now += 300
        assert _login(client, "right") == 303


def test_an_ipv6_loopback_bind_answers_to_its_address_and_refuses_other_hosts(tmp_path: Path) -> None:
    text = _config_text(tmp_path).split("[console]")[0]
    app = build_app(parse_config(text), ["127.0.0.1:9"], "::1")
    with TestClient(app, base_url="http://[::1]:8025") as client:
        assert client.get("/login").status_code == 200
        assert client.get("/login", headers={"Host": "localhost:8025"}).status_code == 200
        assert client.get("/login", headers={"Host": "rebound.example:8025"}).status_code == 400
