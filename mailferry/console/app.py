"""The console's ASGI app: routes, the login and CSRF checks, and rendering.

Reads and actions block on Kafka, so they run in Starlette's thread pool; a page is a
fresh read each time (the pages reload themselves every ``console.refresh_seconds``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from mailferry.config import MailferryConfig
from mailferry.console import readers
from mailferry.console.access import Gate, LoginThrottle, csrf_matches, is_loopback, new_csrf_token
from mailferry.consumers.dlq import DeadLetterEntry, DeadLetterQueue, Filter

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger(__name__)


class Console:
    def __init__(
        self, config: MailferryConfig, servers: list[str], gate: Gate, throttle: LoginThrottle | None = None
    ) -> None:
        self.config = config
        self.servers = servers
        self.gate = gate
        self.throttle = throttle or LoginThrottle()

    def actor(self, request: Request) -> str | None:
        if not self.gate.required:
            return self.gate.local_actor()
        user = request.session.get("actor")
        return user if isinstance(user, str) else None

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        session = request.session
        if "csrf" not in session:
            session["csrf"] = new_csrf_token()
        context |= {
            "actor": self.actor(request),
            "csrf": session["csrf"],
            "flash": session.pop("flash", None),
            "refresh": self.config.console.refresh_seconds,
            "login_required": self.gate.required,
        }
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)

    def queue(self, actor: str) -> DeadLetterQueue:
        return DeadLetterQueue(self.config, self.servers, actor=actor)

    async def overview(self, request: Request) -> Response:
        data = await run_in_threadpool(readers.overview, self.config, self.servers)
        chart = await run_in_threadpool(readers.throughput, self.config, self.servers)
        return self.render(request, "overview.html", data=data, chart=chart, auto_refresh=True)

    async def dead_letters(self, request: Request) -> Response:
        everything = request.query_params.get("all") == "1"
        entries = await run_in_threadpool(self.queue("reader").find, Filter(include_done=everything))
        rows = [entry.summary() for entry in entries]
        return self.render(request, "dlq.html", rows=rows, everything=everything, auto_refresh=True)

    async def _entry(self, dead_letter_id: str) -> DeadLetterEntry | None:
        found = await run_in_threadpool(self.queue("reader").find, Filter(ids=frozenset({dead_letter_id})))
        return found[0] if found else None

    async def dead_letter(self, request: Request) -> Response:
        entry = await self._entry(request.path_params["id"])
        if entry is None:
            return self.render(request, "missing.html", status_code=404, what=request.path_params["id"])
        try:
            targets = [t.name for t in self.config.tenant(str(entry.record["tenant"])).targets]
        except KeyError:
            targets = []
        shown = entry.shown()
        return self.render(
            request,
            "letter.html",
            entry=entry,
            shown=shown,
            text=json.dumps(shown, default=str, indent=2),
            targets=targets,
        )

    async def act(self, request: Request) -> Response:
        """Requeue or discard one dead letter: a logged-in actor and the session's CSRF token needed."""
        if request.path_params["action"] not in ("requeue", "discard"):
            return PlainTextResponse("no such action", status_code=404)
        form = await request.form()
        actor = self.actor(request)
        if actor is None:
            return PlainTextResponse("log in first", status_code=403)
        if not csrf_matches(request.session.get("csrf"), form.get("csrf")):
            return PlainTextResponse("refused: missing or wrong CSRF token", status_code=403)
        entry = await self._entry(request.path_params["id"])
        if entry is None or entry.status != "dead":
            request.session["flash"] = f"dead letter {request.path_params['id']} is not waiting any more"
            return RedirectResponse("/dlq", status_code=303)
        queue = self.queue(actor)
        if request.path_params["action"] == "requeue":
            target = str(form.get("target") or "") or None
            await run_in_threadpool(partial(queue.requeue, [entry], target=target))
            request.session["flash"] = f"requeued {entry.id}" + (f" to {target}" if target else "")
        else:
            await run_in_threadpool(partial(queue.discard, [entry], note=str(form.get("note") or "")))
            request.session["flash"] = f"discarded {entry.id}"
        return RedirectResponse("/dlq", status_code=303)

    async def trace(self, request: Request) -> Response:
        wanted = request.query_params.get("message_id", "").strip()
        result = await run_in_threadpool(readers.trace, self.config, self.servers, wanted) if wanted else None
        return self.render(request, "trace.html", wanted=wanted, result=result)

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.render(request, "login.html")
        form = await request.form()
        if not csrf_matches(request.session.get("csrf"), form.get("csrf")):
            return PlainTextResponse("refused: missing or wrong CSRF token", status_code=403)
        client = request.client.host if request.client else "unknown"
        wait = self.throttle.retry_after(client)
        if wait is not None:
            return PlainTextResponse(
                f"too many failed logins from {client}: try again in {math.ceil(wait)} s",
                status_code=429,
                headers={"Retry-After": str(math.ceil(wait))},
            )
        actor = await run_in_threadpool(self.gate.login, str(form.get("secret") or ""))
        if actor is None:
            self.throttle.failed(client)
            log.warning("console: failed login from %s", client)
            return self.render(request, "login.html", status_code=401, failed=True)
        self.throttle.succeeded(client)
        request.session.clear()
        request.session["actor"] = actor
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if csrf_matches(request.session.get("csrf"), form.get("csrf")):
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    def guarded(self, handler: Handler) -> Handler:
        async def page(request: Request) -> Response:
            if self.actor(request) is None:
                return RedirectResponse("/login", status_code=303)
            return await handler(request)

        return page


def build_app(
    config: MailferryConfig,
    servers: list[str],
    host: str,
    *,
    session_key: str | None = None,
    throttle: LoginThrottle | None = None,
) -> Starlette:
    """The console for a bind on ``host``; ``ConfigError`` when that bind would be open to anyone."""
    import secrets

    gate = Gate.for_bind(config.console, host)
    console = Console(config, servers, gate, throttle)
    hosts = ["127.0.0.1", "localhost", "[::1]", "::1"] if is_loopback(host) else ["*"]
    routes = [
        Route("/", console.guarded(console.overview)),
        Route("/dlq", console.guarded(console.dead_letters)),
        Route("/dlq/{id}", console.guarded(console.dead_letter)),
        Route("/dlq/{id}/{action:str}", console.act, methods=["POST"]),
        Route("/trace", console.guarded(console.trace)),
        Route("/login", console.login, methods=["GET", "POST"]),
        Route("/logout", console.logout, methods=["POST"]),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts),  # no DNS rebinding onto a loopback console
        Middleware(
            SessionMiddleware,
            secret_key=session_key or secrets.token_urlsafe(32),
            session_cookie="mailferry_console",
            same_site="strict",
            https_only=False,
        ),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.console = console
    return app
