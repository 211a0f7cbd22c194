"""The EWS EMULATOR (not Microsoft Exchange) refuses what a schema-validating Exchange would."""

from __future__ import annotations

import base64

import pytest
import requests
from lxml import etree

from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.ews_emulator.soap import E_NS

from .conftest import SERVICE_PASSWORD, SERVICE_USER

ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    "<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
)
VERSION = '<t:RequestServerVersion Version="Exchange2016"/>'
IMPERSONATE = (
    "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{who}</t:PrimarySmtpAddress>"
    "</t:ConnectingSID></t:ExchangeImpersonation>"
)
MIME = base64.b64encode(b"Subject: hi\r\nMessage-ID: <m1@x>\r\n\r\nbody\r\n").decode()


def create_item(message: str, disposition: str = "SaveOnly") -> str:
    return (
        f'<m:CreateItem MessageDisposition="{disposition}"><m:SavedItemFolderId>'
        '<t:DistinguishedFolderId Id="inbox"/></m:SavedItemFolderId>'
        f"<m:Items><t:Message>{message}</t:Message></m:Items></m:CreateItem>"
    )


def post(emulator: EwsEmulator, body: str, header: str = VERSION, auth: bool = True) -> requests.Response:
    data = ENVELOPE.format(header=header, body=body).encode()
    return requests.post(
        emulator.url,
        data=data,
        auth=(SERVICE_USER, SERVICE_PASSWORD) if auth else None,
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=5,
    )


def test_labelled_as_an_emulator(emulator: EwsEmulator) -> None:
    reply = post(
        emulator,
        '<m:ResolveNames ReturnFullContactData="false"><m:UnresolvedEntry>bob'
        "</m:UnresolvedEntry></m:ResolveNames>",
    )
    assert reply.status_code == 200
    assert "EMULATOR" in reply.headers["Server"]
    assert "not Microsoft Exchange" in reply.headers["Server"]
    assert EwsEmulator.__doc__ is not None and "EMULATOR" in EwsEmulator.__doc__


def test_without_credentials_401(emulator: EwsEmulator) -> None:
    assert post(emulator, "<m:ResolveNames/>", auth=False).status_code == 401


@pytest.mark.parametrize(
    ("header", "body", "code"),
    [
        (
            "",
            '<m:ResolveNames ReturnFullContactData="false"><m:UnresolvedEntry>b</m:UnresolvedEntry>'
            "</m:ResolveNames>",
            "ErrorSchemaValidation",
        ),
        (
            '<t:RequestServerVersion Version="Exchange2099"/>',
            "<m:ResolveNames/>",
            "ErrorInvalidServerVersion",
        ),
        (VERSION + "<t:Bogus/>", "<m:ResolveNames/>", "ErrorSchemaValidation"),
        (VERSION, "<m:SendItem/>", "ErrorSchemaValidation"),
        (VERSION, "<t:CreateItem/>", "ErrorSchemaValidation"),
        (
            VERSION + IMPERSONATE.format(who="alice@contoso.example"),
            create_item(f"<t:MimeContent>{MIME}</t:MimeContent>", "SendAndSaveCopy"),
            "ErrorSchemaValidation",
        ),
        (
            VERSION + IMPERSONATE.format(who="alice@contoso.example"),
            create_item(f"<t:IsRead>false</t:IsRead><t:MimeContent>{MIME}</t:MimeContent>"),
            "ErrorSchemaValidation",
        ),
        (
            VERSION + IMPERSONATE.format(who="alice@contoso.example"),
            create_item("<t:Subject>no mime</t:Subject>"),
            "ErrorSchemaValidation",
        ),
        (
            VERSION + IMPERSONATE.format(who="a.smith@contoso.example"),
            create_item(f"<t:MimeContent>{MIME}</t:MimeContent>"),
            "ErrorNonExistentMailbox",
        ),
    ],
    ids=[
        "no-version",
        "bad-version",
        "unknown-header",
        "unknown-operation",
        "wrong-namespace",
        "send-disposition",
        "out-of-order",
        "no-mime",
        "impersonate-alias",
    ],
)
def test_refuses_with_a_soap_fault(emulator: EwsEmulator, header: str, body: str, code: str) -> None:
    reply = post(emulator, body, header=header)
    assert reply.status_code == 500
    codes = etree.fromstring(reply.content).findall(f".//{{{E_NS}}}ResponseCode")
    assert [c.text for c in codes] == [code]
    assert emulator.items("alice@contoso.example") == []


def test_accepts_a_well_formed_create_item(emulator: EwsEmulator) -> None:
    message = (
        f'<t:MimeContent>{MIME}</t:MimeContent><t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x0E07" '
        'PropertyType="Integer"/><t:Value>1</t:Value></t:ExtendedProperty><t:IsRead>true</t:IsRead>'
    )
    reply = post(
        emulator, create_item(message), header=VERSION + IMPERSONATE.format(who="alice@contoso.example")
    )
    assert reply.status_code == 200, reply.text
    assert 'ResponseClass="Success"' in reply.text
    [stored] = emulator.items("a.smith@contoso.example")
    assert (stored.message_flags, stored.is_read, stored.internet_message_id) == (1, True, "<m1@x>")
