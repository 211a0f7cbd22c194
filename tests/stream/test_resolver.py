"""Recipient resolution over a corpus of header cases (pure, no Kafka)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mailferry.config.models import Tenant
from mailferry.directory import StaticDirectory
from mailferry.errors import PermanentError, TransientError
from mailferry.mail.headers import parse_message_headers
from mailferry.streams.resolver import POSSIBLE_LOST_BCC, Resolution, resolve
from tests.stream.factories import DOMAIN, message, tenant

RECEIVED = "from mx.isp.example by pop.isp.example with ESMTPS id 1x"
POSTMASTER = f"postmaster@{DOMAIN}"


@dataclass(frozen=True)
class Case:
    name: str
    headers: tuple[tuple[str, str], ...]
    expected: tuple[str, ...]
    source: str = "catchall"
    reason: str | None = None  # kind:detail of the first recipient's first reason
    flags: tuple[str, ...] = ()
    envelope: tuple[str, ...] = field(default=())


def _h(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("Received", RECEIVED), *pairs, ("From", "x@sender.example"), ("Subject", "hi"))


CORPUS = [
    Case(
        "delivered-to",
        _h(("Delivered-To", f"bob@{DOMAIN}")),
        (f"bob@{DOMAIN}",),
        reason="envelope:Delivered-To #1",
    ),
    Case(
        "x-original-to",
        _h(("X-Original-To", f"bob@{DOMAIN}")),
        (f"bob@{DOMAIN}",),
        reason="envelope:X-Original-To #1",
    ),
    Case(
        "envelope-to",
        _h(("Envelope-To", f"bob@{DOMAIN}")),
        (f"bob@{DOMAIN}",),
        reason="envelope:Envelope-To #1",
    ),
    Case(
        "x-envelope-to",
        _h(("X-Envelope-To", f"<bob@{DOMAIN}>")),
        (f"bob@{DOMAIN}",),
        reason="envelope:X-Envelope-To #1",
    ),
    Case(
        "x-rcpt-to", _h(("X-RCPT-TO", f"<bob@{DOMAIN}>")), (f"bob@{DOMAIN}",), reason="envelope:X-RCPT-TO #1"
    ),
    Case(
        "received-for",
        (
            (
                "Received",
                f"from a by mx.{DOMAIN} with ESMTP id 7 for <carol@{DOMAIN}>; Mon, 2 Nov 2026 10:00:00 +0000",
            ),
        ),
        (f"carol@{DOMAIN}",),
        reason="envelope:Received #1",
    ),
    Case(
        "order: Delivered-To before X-Original-To",
        _h(("X-Original-To", f"carol@{DOMAIN}"), ("Delivered-To", f"bob@{DOMAIN}")),
        (f"bob@{DOMAIN}",),
    ),
    Case(
        "catch-all account in Delivered-To is skipped for the next header",
        _h(("Delivered-To", "catchall@isp.example"), ("X-Original-To", f"bob@{DOMAIN}")),
        (f"bob@{DOMAIN}",),
        reason="envelope:X-Original-To #1",
    ),
    Case(
        "forged occurrence added by the sender is not trusted",
        (
            ("Delivered-To", f"bob@{DOMAIN}"),
            ("Received", RECEIVED),
            ("Delivered-To", f"ceo@{DOMAIN}"),
            ("From", "x@sender.example"),
        ),
        (f"bob@{DOMAIN}",),
        reason="envelope:Delivered-To #1",
    ),
    Case(
        "trusted occurrence last",
        (("X-Original-To", f"first@{DOMAIN}"), ("X-Original-To", f"last@{DOMAIN}")),
        (f"last@{DOMAIN}",),
        source="last-trusted",
        reason="envelope:X-Original-To #2",
    ),
    Case(
        "Bcc-only recipient: only the envelope knows",
        _h(("Delivered-To", f"dave@{DOMAIN}"), ("To", f"bob@{DOMAIN}")),
        (f"dave@{DOMAIN}",),
    ),
    Case(
        "Bcc-only, no envelope header: default mailbox flagged",
        _h(("To", "someone@elsewhere.example")),
        (POSTMASTER,),
        reason="fallback:nothing resolved: tenant default mailbox",
        flags=(POSSIBLE_LOST_BCC,),
    ),
    Case(
        "mailing list: To names the list, envelope names the member",
        _h(
            ("To", "list@lists.example"),
            ("List-Id", "<dev.lists.example>"),
            ("Delivered-To", f"carol@{DOMAIN}"),
        ),
        (f"carol@{DOMAIN}",),
    ),
    Case(
        "mailing list without envelope, guessing on: list address outside the domains",
        _h(("To", "list@lists.example"), ("List-Id", "<dev.lists.example>")),
        (POSTMASTER,),
        source="guessing",
        flags=(POSSIBLE_LOST_BCC,),
    ),
    Case(
        "guess from To and Cc when opted in",
        _h(("To", f"Bob <bob@{DOMAIN}>, x@elsewhere.example"), ("Cc", f"carol@{DOMAIN}")),
        (f"bob@{DOMAIN}", f"carol@{DOMAIN}"),
        source="guessing",
        reason="header-guess:To #1",
    ),
    Case(
        "no guessing without opt-in",
        _h(("To", f"bob@{DOMAIN}")),
        (POSTMASTER,),
        flags=(POSSIBLE_LOST_BCC,),
    ),
    Case(
        "Resent-To guessed",
        _h(("To", "x@elsewhere.example"), ("Resent-To", f"erin@{DOMAIN}")),
        (f"erin@{DOMAIN}",),
        source="guessing",
        reason="header-guess:Resent-To #1",
    ),
    Case(
        "encoded-word display name",
        _h(("To", f"=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@{DOMAIN}>")),
        (f"juergen@{DOMAIN}",),
        source="guessing",
    ),
    Case(
        "IDN domain in Unicode matches the accepted domain",
        _h(("Delivered-To", "leser@bücher.example")),
        ("leser@xn--bcher-kva.example",),
    ),
    Case(
        "IDN domain in ASCII form",
        _h(("Delivered-To", "leser@xn--bcher-kva.example")),
        ("leser@xn--bcher-kva.example",),
    ),
    Case("case differences", _h(("Delivered-To", f"Bob@{DOMAIN.upper()}")), (f"bob@{DOMAIN}",)),
    Case(
        "plus-addressing stripped",
        _h(("Delivered-To", f"bob+invoices@{DOMAIN}")),
        (f"bob@{DOMAIN}",),
    ),
    Case(
        "outside accepted domains: default mailbox",
        _h(("Delivered-To", "bob@elsewhere.example")),
        (POSTMASTER,),
        flags=(POSSIBLE_LOST_BCC,),
    ),
    Case(
        "invalid address ignored",
        _h(("Delivered-To", "not an address"), ("X-Original-To", f"bob@{DOMAIN}")),
        (f"bob@{DOMAIN}",),
    ),
    Case(
        "personal mailbox ignores headers",
        _h(("Delivered-To", f"bob@{DOMAIN}")),
        (f"alice@{DOMAIN}",),
        source="alice-private",
        reason="personal:alice-private",
    ),
    Case(
        "transport envelope wins over headers",
        _h(("Delivered-To", f"bob@{DOMAIN}")),
        (f"zoe@{DOMAIN}",),
        envelope=(f"Zoe@{DOMAIN}",),
        reason="envelope:transport",
    ),
    Case("no headers at all", (), (POSTMASTER,), flags=(POSSIBLE_LOST_BCC,)),
]


def _resolve(case: Case, the_tenant: Tenant | None = None, **kwargs: object) -> Resolution:
    t = the_tenant or tenant()
    source = next(s for s in t.sources if s.id == case.source)
    headers = parse_message_headers(message(*case.headers))
    return resolve(
        tenant=t,
        source=source,
        headers=headers,
        size=1000,
        envelope_recipients=case.envelope,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus(case: Case) -> None:
    resolution = _resolve(case)
    assert tuple(r.address for r in resolution.recipients) == case.expected
    assert resolution.flags == case.flags
    if case.reason:
        first = resolution.recipients[0].reasons[0]
        assert f"{first.kind}:{first.detail}" == case.reason
    for recipient in resolution.recipients:
        assert recipient.reasons, "every recipient carries its reason"


def test_aliases_address_map_and_directory_with_reasons() -> None:
    t = tenant(
        aliases={f"sales@{DOMAIN}": f"bob@{DOMAIN}"},
        address_map={"bob@old-isp.example": f"bob.smith@{DOMAIN}"},
    )
    directory = StaticDirectory(
        {f"bob@{DOMAIN}": f"Bob.Primary@{DOMAIN}", f"bob.smith@{DOMAIN}": f"bob.smith@{DOMAIN}"}
    )
    case = Case(
        "x",
        (("Delivered-To", f"sales+q4@{DOMAIN}, bob@old-isp.example, ghost@{DOMAIN}"),),
        (),
    )
    resolution = _resolve(case, t, directory=directory)
    assert [r.address for r in resolution.recipients] == [f"bob.primary@{DOMAIN}", f"bob.smith@{DOMAIN}"]
    kinds = [[reason.kind for reason in r.reasons] for r in resolution.recipients]
    assert kinds == [["envelope", "plus-address", "alias", "directory"], ["envelope", "address-map"]]
    assert (f"ghost@{DOMAIN}", "not-in-directory") in resolution.ignored


def test_plus_addressing_kept_when_configured() -> None:
    case = Case("x", (("Delivered-To", f"bob+tag@{DOMAIN}"),), ())
    resolution = _resolve(case, tenant(plus_addressing="keep"))
    assert [r.address for r in resolution.recipients] == [f"bob+tag@{DOMAIN}"]


def _rules(mode: str, *rules: dict[str, object]) -> Tenant:
    return tenant(rules={"mode": mode, "rules": list(rules)})


SUBJECT_INVOICE = {"header": "Subject", "contains": "INVOICE"}


def test_rule_deliver_to_replaces_and_records_rule_id() -> None:
    t = _rules(
        "first-match",
        {
            "id": "invoices",
            "conditions": [SUBJECT_INVOICE],
            "action": "deliver-to",
            "to": [f"ap@{DOMAIN}"],
            "target": "archive",
        },
    )
    case = Case("x", (("Delivered-To", f"bob@{DOMAIN}"), ("Subject", "Your invoice 42")), ())
    resolution = _resolve(case, t)
    assert [(r.address, r.target) for r in resolution.recipients] == [(f"ap@{DOMAIN}", "archive")]
    assert resolution.recipients[0].reasons[0].kind == "rule"
    assert resolution.recipients[0].reasons[0].detail == "invoices"


def test_rule_copy_to_and_add_header_all_match() -> None:
    t = _rules(
        "all-match",
        {
            "id": "copy",
            "conditions": [{"header": "List-Id", "regex": r"dev\.lists"}],
            "action": "copy-to",
            "to": [f"archive@{DOMAIN}"],
        },
        {
            "id": "tag",
            "conditions": [{"size_over": 500}],
            "action": "add-header",
            "header_name": "X-Tag",
            "header_value": "big",
        },
        {"id": "never", "conditions": [{"size_under": 10}], "action": "drop"},
    )
    case = Case("x", (("Delivered-To", f"bob@{DOMAIN}"), ("List-Id", "<DEV.lists.example>")), ())
    resolution = _resolve(case, t)
    assert [r.address for r in resolution.recipients] == [f"bob@{DOMAIN}", f"archive@{DOMAIN}"]
    assert resolution.add_headers == (("X-Tag", "big"),)


def test_first_match_stops_and_drop_drops() -> None:
    t = _rules(
        "first-match",
        {"id": "spam", "conditions": [{"header": "X-Spam-Flag", "contains": "yes"}], "action": "drop"},
        {
            "id": "copy",
            "conditions": [{"header": "X-Spam-Flag", "contains": "YES"}],
            "action": "copy-to",
            "to": [f"a@{DOMAIN}"],
        },
    )
    case = Case("x", (("Delivered-To", f"bob@{DOMAIN}"), ("X-Spam-Flag", "YES")), ())
    resolution = _resolve(case, t)
    assert resolution.dropped_by == "spam"
    assert resolution.recipients == ()


def test_case_sensitive_rule_and_source_filter() -> None:
    t = _rules(
        "all-match",
        {
            "id": "cs",
            "conditions": [{"header": "Subject", "contains": "URGENT", "case_sensitive": True}],
            "action": "copy-to",
            "to": [f"a@{DOMAIN}"],
        },
        {
            "id": "other-source",
            "sources": ["guessing"],
            "conditions": [{"size_over": 1}],
            "action": "copy-to",
            "to": [f"b@{DOMAIN}"],
        },
    )
    case = Case("x", (("Delivered-To", f"bob@{DOMAIN}"), ("Subject", "urgent")), ())
    assert [r.address for r in _resolve(case, t).recipients] == [f"bob@{DOMAIN}"]


def test_thousand_recipients() -> None:
    recipients = ", ".join(f"user{i}@{DOMAIN}" for i in range(1000))
    case = Case("x", (("Envelope-To", recipients),), ())
    resolution = _resolve(case)
    assert len(resolution.recipients) == 1000
    assert resolution.recipients[999].address == f"user999@{DOMAIN}"


def test_same_recipient_twice_is_one_recipient_with_both_reasons() -> None:
    case = Case("x", (("To", f"bob@{DOMAIN}"), ("Cc", f"BOB@{DOMAIN}")), (), source="guessing")
    resolution = _resolve(case)
    assert [r.address for r in resolution.recipients] == [f"bob@{DOMAIN}"]
    assert [r.detail for r in resolution.recipients[0].reasons] == ["To #1", "Cc #1"]


class _Refusing:
    def lookup(self, address: str) -> str | None:
        raise PermanentError("refused", reason_code="access-denied")


class _Down:
    def lookup(self, address: str) -> str | None:
        raise TransientError("server busy", retry_after=2)


def test_directory_refusal_keeps_the_address_and_outage_propagates() -> None:
    case = Case("x", (("Delivered-To", f"bob@{DOMAIN}"),), ())
    resolution = _resolve(case, directory=_Refusing())
    assert [r.address for r in resolution.recipients] == [f"bob@{DOMAIN}"]
    assert resolution.recipients[0].reasons[-1].detail.endswith("look-up failed (access-denied), kept")
    with pytest.raises(TransientError):
        _resolve(case, directory=_Down())
