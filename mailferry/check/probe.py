"""Connect to a source or target the way the roles do, and report; never fetch or deliver.

Sources reuse the fetchers' own session code (``pop3_fetch.open_session``, ``ImapSession``) so a
check passes exactly when a fetch could log in. Targets reuse ``check_credentials`` of the
delivery targets: EWS logs in and opens the default mailbox's Inbox by impersonation, Graph
gets a token and reads that Inbox, SMTP says EHLO and AUTH.
"""

from __future__ import annotations

from mailferry.check.report import CheckReport, capability_flags, tls_info
from mailferry.config.models import Tenant
from mailferry.config.sources import ImapSource, Pop3Source
from mailferry.consumers.registry import build_target
from mailferry.errors import MailferryError
from mailferry.producers.access import TokenProvider
from mailferry.producers.imap_session import ImapSession
from mailferry.producers.pop3_fetch import open_session


def _pop3(source: Pop3Source, report: CheckReport) -> None:
    client = open_session(source, TokenProvider())
    try:
        report.tls = tls_info(client.socket)
        report.authenticated = True
        report.steps.append(f"logged in as {source.username}")
        report.capabilities = capability_flags(set(client.capabilities))
        count, size = client.command("STAT").split()[:2]
        report.messages, report.size = int(count), int(size)
        client.quit()
    finally:
        client.close()


def _imap(source: ImapSource, report: CheckReport) -> None:
    session = ImapSession(source, TokenProvider())
    try:
        report.tls = tls_info(session.conn.sock)
        report.authenticated = True
        report.steps.append(f"logged in as {source.username}")
        _, data = session.conn.capability()  # what the server offers once logged in, not before
        offered = {word.decode() for line in data if isinstance(line, bytes) for word in line.split()}
        report.capabilities = capability_flags(offered | session.capabilities)
        folder = source.folders[0]
        _, exists = session.select(folder, readonly=True)
        uids = session.search_uids("ALL") if exists else []
        report.messages = len(uids)
        report.size = sum(session.sizes(uids).values()) if uids else 0
        report.steps.append(f"examined {folder} read-only")
        session.logout()
    finally:
        session.close()


def check_source(tenant: Tenant, source: Pop3Source | ImapSource) -> CheckReport:
    report = CheckReport(name=f"{tenant.id}/{source.id}", kind=source.kind)
    try:
        if isinstance(source, Pop3Source):
            _pop3(source, report)
        else:
            _imap(source, report)
        report.ok = True
    except (MailferryError, OSError) as exc:
        report.error = str(exc) or type(exc).__name__
    return report


_TARGET_STEP = {
    "ews": "authenticated and opened {mailbox}'s mailbox",
    "graph": "token issued and {mailbox}'s Inbox read",
    "smtp": "EHLO and AUTH accepted (nothing sent)",
    "maildir": "folder writable",
}


def check_target(tenant: Tenant, name: str) -> CheckReport:
    kind = next(t.kind for t in tenant.targets if t.name == name)
    report = CheckReport(name=f"{tenant.id}/{name}", kind=kind)
    try:
        target = build_target(tenant, name)
        try:
            target.check_credentials()
        finally:
            target.close()
        report.authenticated = True
        report.steps.append(_TARGET_STEP[kind].format(mailbox=tenant.default_mailbox))
        report.ok = True
    except (MailferryError, OSError) as exc:
        report.error = str(exc) or type(exc).__name__
    return report
