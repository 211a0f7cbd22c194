"""The tenant fence at run time: the resolver keeps every mailbox inside its tenant, and what
it routes passes the delivery worker's check (issue 11 item 4)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mailferry.blobs import LocalBlobStore
from mailferry.config.fence import fence_problems
from mailferry.config.models import MailferryConfig, Tenant
from mailferry.directory import Directory, LookupDirectory, StaticDirectory
from mailferry.fence import CrossTenantError, TenantFence, address_domain, tenant_domains
from mailferry.mail.headers import parse_message_headers
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.streams.resolver import resolve
from mailferry.streams.router import Rejected, Routed, route_raw
from tests.stream.factories import DOMAIN, TRACE_KEY, message, tenant

POSTMASTER = f"postmaster@{DOMAIN}"


def test_a_directory_answer_outside_the_tenant_goes_to_the_default_mailbox() -> None:
    directory = StaticDirectory({f"sales@{DOMAIN}": "ceo@globex.example", f"bob@{DOMAIN}": f"bob@{DOMAIN}"})
    headers = parse_message_headers(message(("Delivered-To", f"sales@{DOMAIN}, bob@{DOMAIN}")))
    resolution = resolve(
        tenant=tenant(), source=tenant().sources[0], headers=headers, size=10, directory=directory
    )
    by_address = {r.address: r for r in resolution.recipients}
    assert sorted(by_address) == [f"bob@{DOMAIN}", POSTMASTER]
    kinds = [(r.kind, r.detail) for r in by_address[POSTMASTER].reasons]
    assert ("directory", f"sales@{DOMAIN} -> ceo@globex.example") in kinds
    assert (
        "outside-tenant",
        "ceo@globex.example is outside tenant acme: its default mailbox instead",
    ) in kinds
    assert ("ceo@globex.example", "outside-tenant") in resolution.ignored


def test_an_unvalidated_alias_outside_the_tenant_goes_to_the_default_mailbox() -> None:
    """The config check refuses this alias; the resolver does not rely on that check alone."""
    headers = parse_message_headers(message(("Delivered-To", f"info@{DOMAIN}")))
    leaky = tenant(aliases={f"info@{DOMAIN}": "info@globex.example"})
    resolution = resolve(tenant=leaky, source=leaky.sources[0], headers=headers, size=10)
    assert [r.address for r in resolution.recipients] == [POSTMASTER]
    assert resolution.recipients[0].reasons[-1].kind == "outside-tenant"


def test_the_worker_check_accepts_its_tenant_and_refuses_others() -> None:
    config = MailferryConfig.model_validate({"tenants": [tenant().model_dump(mode="json")]})
    fence = TenantFence(config)
    fence.check({"tenant": "acme", "recipient": "Bob@ACME.example"})
    fence.check({"tenant": "acme", "recipient": "bob@xn--bcher-kva.example"})  # bücher.example
    for tenant_id, recipient in [
        ("acme", "bob@globex.example"),
        ("acme", "bob@sub.acme.example"),
        ("acme", "bob@acme.example.evil"),
        ("acme", "bob@acme.example@globex.example"),
        ("acme", ""),
        ("globex", "bob@acme.example"),
    ]:
        try:
            fence.check({"tenant": tenant_id, "recipient": recipient})
        except CrossTenantError as exc:
            assert exc.reason_code == "cross-tenant-refused"
        else:
            raise AssertionError(f"{recipient} for {tenant_id} was not refused")


# -- property: no routed delivery ever crosses a tenant --------------------------------------------

DOMAINS = ["a.example", "b.example", "c.example", "bücher.example", "xn--bcher-kva.example", "d.example"]
LOCALS = ["bob", "alice", "sales", "ceo", "info", "bob+tag"]
ADDRESSES = st.builds(
    lambda local, domain: f"{local}@{domain}", st.sampled_from(LOCALS), st.sampled_from(DOMAINS)
)
SUBJECTS = ["invoice", "hello", "Re: invoice"]


@st.composite
def tenant_documents(draw: st.DrawFn, index: int) -> dict[str, Any]:
    domains = draw(st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=2, unique=True))
    rules = [
        {
            "id": f"r{r}",
            "action": draw(st.sampled_from(["deliver-to", "copy-to"])),
            "to": draw(st.lists(ADDRESSES, min_size=1, max_size=2)),
            "conditions": [{"header": "Subject", "contains": draw(st.sampled_from(SUBJECTS))}],
        }
        for r in range(draw(st.integers(0, 2)))
    ]
    password = {"kind": "password", "password": "env:NOPE"}
    return {
        "id": f"t{index}",
        "accepted_domains": domains,
        "default_mailbox": f"postmaster@{domains[0]}",
        "default_target": "box",
        "aliases": draw(st.dictionaries(ADDRESSES, ADDRESSES, max_size=3)),
        "address_map": draw(st.dictionaries(ADDRESSES, ADDRESSES, max_size=3)),
        "plus_addressing": draw(st.sampled_from(["strip", "keep"])),
        "targets": [{"kind": "maildir", "name": "box", "path": "/tmp/mailferry-fence-box"}],
        "rules": {"mode": draw(st.sampled_from(["first-match", "all-match"])), "rules": rules},
        "sources": [
            {
                "kind": "pop3",
                "id": "catchall",
                "mode": "global",
                "host": "pop.isp.example",
                "username": "c",
                "guess_from_headers": draw(st.booleans()),
                "auth": password,
            },
            {
                "kind": "pop3",
                "id": "personal",
                "mode": "personal",
                "host": "pop.isp.example",
                "username": "p",
                "deliver_to": draw(ADDRESSES),
                "auth": password,
            },
        ],
    }


@st.composite
def configs(draw: st.DrawFn) -> MailferryConfig:
    count = draw(st.integers(2, 4))
    documents = [draw(tenant_documents(i)) for i in range(count)]
    return MailferryConfig.model_validate({"tenants": documents})  # the config fence is NOT applied


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    names = ["Delivered-To", "X-Original-To", "To", "Cc", "Received"]
    headers = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(names))
        addresses = draw(st.lists(ADDRESSES, min_size=1, max_size=3))
        value = f"from mx by pop for <{addresses[0]}>; x" if name == "Received" else ", ".join(addresses)
        headers.append((name, value))
    headers.append(("Subject", draw(st.sampled_from(SUBJECTS))))
    return message(*headers)


def _directory(answers: dict[str, str | None]) -> Directory:
    return LookupDirectory(lambda address: answers.get(address, address))


def _overlap(config: MailferryConfig) -> bool:
    seen: set[str] = set()
    for t in config.tenants:
        domains = tenant_domains(t)
        if seen & domains:
            return True
        seen |= domains
    return False


@settings(max_examples=300, deadline=None)
@given(
    config=configs(),
    data=messages(),
    answers=st.dictionaries(ADDRESSES, st.one_of(st.none(), ADDRESSES), max_size=4),
    which=st.integers(0, 3),
    source=st.sampled_from(["catchall", "personal"]),
    envelope=st.lists(ADDRESSES, max_size=2),
)
def test_no_routed_delivery_ever_crosses_a_tenant(
    config: MailferryConfig,
    data: bytes,
    answers: dict[str, str | None],
    which: int,
    source: str,
    envelope: list[str],
) -> None:
    owner: Tenant = config.tenants[which % len(config.tenants)]
    with tempfile.TemporaryDirectory() as folder:
        blobs = LocalBlobStore(Path(folder))
        _key, raw = build_raw_record(
            RawSource(owner.id, source, "pop3"), data, blobs=blobs, inline_threshold=1 << 20
        )
        raw["envelope_recipients"] = envelope
        routed = route_raw(
            raw,
            config=config,
            blobs=blobs,
            origin="p.raw/0/1",
            now=datetime.now(UTC),
            trace_key=TRACE_KEY,
            directory_for=lambda _tenant: _directory(answers),
        )
    assert not isinstance(routed, Rejected), routed
    assert isinstance(routed, Routed)
    domains = tenant_domains(owner)
    fence = TenantFence(config)
    for candidate in routed.candidates:
        delivery = candidate.delivery
        assert delivery["tenant"] == owner.id
        assert address_domain(delivery["recipient"]) in domains, (
            delivery["recipient"],
            owner.accepted_domains,
        )
        fence.check(delivery)  # what the stream routes, the worker accepts
    if _overlap(config):
        assert any("already accepted by tenant" in text for _loc, text in fence_problems(config))
