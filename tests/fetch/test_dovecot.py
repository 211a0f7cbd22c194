"""The test Dovecot itself: it starts, serves POP3 and IMAP, and TLS verifies against its CA."""

from __future__ import annotations

import imaplib
import poplib
import ssl
from pathlib import Path

import pytest

from mailferry_testkit.certs import make_test_pki
from mailferry_testkit.dovecot import DovecotServer

MESSAGES = [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\nsecond\r\n"]


def test_pop3s_and_stls_serve_seeded_mail(dovecot: DovecotServer) -> None:
    dovecot.add_user("pop-user", "secret")
    dovecot.seed("pop-user", MESSAGES)
    ctx = ssl.create_default_context(cafile=str(dovecot.ca_file))

    pop = poplib.POP3_SSL("127.0.0.1", dovecot.pop3s_port, context=ctx)
    pop.user("pop-user")
    pop.pass_("secret")
    assert pop.stat()[0] == 2
    assert b"first" in b"\r\n".join(pop.retr(1)[1])
    pop.quit()

    pop = poplib.POP3("127.0.0.1", dovecot.pop3_port)
    pop.stls(ctx)
    pop.user("pop-user")
    pop.pass_("secret")
    assert len(pop.uidl()[1]) == 2
    pop.quit()
    assert dovecot.message_count("pop-user") == 2


def test_imaps_starttls_and_uidvalidity_change(dovecot: DovecotServer) -> None:
    dovecot.add_user("imap-user", "secret")
    dovecot.seed("imap-user", MESSAGES, folder="Archive")
    ctx = ssl.create_default_context(cafile=str(dovecot.ca_file))

    imap = imaplib.IMAP4_SSL("127.0.0.1", dovecot.imaps_port, ssl_context=ctx)
    imap.login("imap-user", "secret")
    assert imap.select("Archive")[1] == [b"2"]
    before = int(imap.response("UIDVALIDITY")[1][0])
    imap.logout()

    assert dovecot.change_uidvalidity("imap-user", "Archive") != before
    imap = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    imap.starttls(ctx)
    imap.login("imap-user", "secret")
    imap.select("Archive")
    assert int(imap.response("UIDVALIDITY")[1][0]) == dovecot.uidvalidity("imap-user", "Archive") != before
    imap.logout()


def test_wrong_ca_is_refused(dovecot: DovecotServer, tmp_path: Path) -> None:
    other = make_test_pki(tmp_path / "other")
    ctx = ssl.create_default_context(cafile=str(other.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL("127.0.0.1", dovecot.pop3s_port, context=ctx)
