"""SOAP envelopes for the EWS EMULATOR — not Microsoft Exchange.

Parsing is strict on purpose: a client that sends the wrong namespace, a missing
``RequestServerVersion`` or an element the emulator does not know gets a SOAP fault, the
way a schema-validating Exchange server would answer. That is what makes the emulator
worth testing against: it refuses what real Exchange would refuse instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree  # type: ignore[import-untyped]

from mailferry_testkit.ews_emulator.body import MimeText, parse_chunks

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
M_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
T_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
E_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": SOAP_NS, "m": M_NS, "t": T_NS}

# Values the RequestServerVersion/@Version attribute may take on an Exchange 2016 server.
KNOWN_API_VERSIONS = frozenset(
    {
        "Exchange2007",
        "Exchange2007_SP1",
        "Exchange2010",
        "Exchange2010_SP1",
        "Exchange2010_SP2",
        "Exchange2013",
        "Exchange2013_SP1",
        "Exchange2016",
    }
)
ALLOWED_HEADERS = frozenset(
    {
        "RequestServerVersion",
        "ExchangeImpersonation",
        "TimeZoneContext",
        "MailboxCulture",
        "DateTimePrecision",
    }
)
CONNECTING_SID_KINDS = ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName", "SID")


class EwsFault(Exception):
    """A request-level failure, answered as a SOAP fault (HTTP 500) like Exchange does."""

    def __init__(self, code: str, message: str, *, back_off_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.text = message
        self.back_off_ms = back_off_ms


class ItemError(Exception):
    """A failure of one response message (ResponseClass="Error"), not of the whole request."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.text = message


def t(name: str) -> str:
    return f"{{{T_NS}}}{name}"


def m(name: str) -> str:
    return f"{{{M_NS}}}{name}"


def local(elem: etree._Element) -> str:
    return str(etree.QName(elem).localname)


def schema_error(message: str) -> EwsFault:
    return EwsFault("ErrorSchemaValidation", f"The request failed schema validation: {message}")


@dataclass
class Request:
    """A parsed, validated EWS request."""

    operation: str
    body: etree._Element  # the m:<Operation> element
    api_version: str
    impersonate: tuple[str, str] | None = None  # (ConnectingSID kind, value)
    headers: dict[str, etree._Element] = field(default_factory=dict)
    mime: dict[etree._Element, MimeText] = field(default_factory=dict)  # decoded t:MimeContent


def parse_request(data: bytes | Iterable[bytes], *, mime_limit: int = 1 << 40) -> Request:
    """Parse and validate the envelope; raises ``EwsFault`` for anything Exchange would refuse.

    ``data`` may be the body in chunks (see ``body``): MimeContent is decoded as it arrives
    and kept up to ``mime_limit`` bytes.
    """
    try:
        root, mime = parse_chunks([data] if isinstance(data, bytes) else data, mime_limit=mime_limit)
    except etree.XMLSyntaxError as exc:
        raise schema_error(f"malformed XML ({exc})") from None
    except ValueError as exc:
        raise schema_error(str(exc)) from None
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise schema_error(f"root element is {root.tag}, expected the SOAP 1.1 Envelope")
    children = list(root)
    names = [c.tag for c in children]
    if names not in ([f"{{{SOAP_NS}}}Header", f"{{{SOAP_NS}}}Body"], [f"{{{SOAP_NS}}}Body"]):
        raise schema_error(f"Envelope must hold an optional Header then a Body, got {names}")
    headers: dict[str, etree._Element] = {}
    if len(children) == 2:
        for elem in children[0]:
            if etree.QName(elem).namespace != T_NS or local(elem) not in ALLOWED_HEADERS:
                raise schema_error(f"unexpected SOAP header {elem.tag}")
            if local(elem) in headers:
                raise schema_error(f"duplicate SOAP header {local(elem)}")
            headers[local(elem)] = elem
    version_elem = headers.get("RequestServerVersion")
    if version_elem is None:
        raise schema_error("the RequestServerVersion header is required")
    api_version = version_elem.get("Version", "")
    if api_version not in KNOWN_API_VERSIONS:
        raise EwsFault(
            "ErrorInvalidServerVersion", f"The specified server version {api_version!r} is invalid."
        )
    body = children[-1]
    ops = list(body)
    if len(ops) != 1:
        raise schema_error(f"the Body must hold exactly one operation, got {len(ops)}")
    op = ops[0]
    if etree.QName(op).namespace != M_NS:
        raise schema_error(f"operation {op.tag} is not in the messages namespace")
    return Request(
        operation=local(op),
        body=op,
        api_version=api_version,
        impersonate=_impersonation(headers.get("ExchangeImpersonation")),
        headers=headers,
        mime=mime,
    )


def _impersonation(elem: etree._Element | None) -> tuple[str, str] | None:
    if elem is None:
        return None
    sids = list(elem)
    if len(sids) != 1 or sids[0].tag != t("ConnectingSID"):
        raise schema_error("ExchangeImpersonation must hold exactly one ConnectingSID")
    ids = list(sids[0])
    if len(ids) != 1 or etree.QName(ids[0]).namespace != T_NS or local(ids[0]) not in CONNECTING_SID_KINDS:
        raise schema_error(f"ConnectingSID must hold exactly one of {CONNECTING_SID_KINDS}")
    value = (ids[0].text or "").strip()
    if not value:
        raise schema_error("ConnectingSID value is empty")
    return local(ids[0]), value


def parse_bool(value: str | None, what: str) -> bool:
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise schema_error(f"{what}: {value!r} is not an xs:boolean")


# ---- responses -------------------------------------------------------------------------------


def envelope(content: etree._Element, *, server_version: tuple[int, int, int, int]) -> bytes:
    """Wrap a response element with the ServerVersionInfo header exchangelib reads the build from."""
    env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"s": SOAP_NS})
    header = etree.SubElement(env, f"{{{SOAP_NS}}}Header")
    major, minor, major_build, minor_build = server_version
    etree.SubElement(
        header,
        t("ServerVersionInfo"),
        nsmap={"h": T_NS},
        MajorVersion=str(major),
        MinorVersion=str(minor),
        MajorBuildNumber=str(major_build),
        MinorBuildNumber=str(minor_build),
        Version="V2017_07_11",
    )
    body = etree.SubElement(env, f"{{{SOAP_NS}}}Body")
    body.append(content)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))


def fault(exc: EwsFault) -> bytes:
    """A SOAP fault carrying an EWS ResponseCode in its detail, as Exchange sends it."""
    env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"s": SOAP_NS})
    body = etree.SubElement(env, f"{{{SOAP_NS}}}Body")
    flt = etree.SubElement(body, f"{{{SOAP_NS}}}Fault")
    code = etree.SubElement(flt, "faultcode", nsmap={"a": E_NS})
    code.text = f"a:{exc.code}"
    etree.SubElement(flt, "faultstring").text = exc.text
    detail = etree.SubElement(flt, "detail")
    etree.SubElement(detail, f"{{{E_NS}}}ResponseCode", nsmap={"e": E_NS}).text = exc.code
    etree.SubElement(detail, f"{{{E_NS}}}Message", nsmap={"e": E_NS}).text = exc.text
    if exc.back_off_ms is not None:
        xml = etree.SubElement(detail, t("MessageXml"), nsmap={"t": T_NS})
        value = etree.SubElement(xml, t("Value"), Name="BackOffMilliseconds")
        value.text = str(exc.back_off_ms)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))


def response(operation: str) -> tuple[etree._Element, etree._Element]:
    """``(m:<Op>Response, m:ResponseMessages)`` ready for response messages to be appended."""
    resp = etree.Element(m(f"{operation}Response"), nsmap={"m": M_NS, "t": T_NS})
    return resp, etree.SubElement(resp, m("ResponseMessages"))


def response_message(
    parent: etree._Element, operation: str, error: ItemError | None = None, *, warning: bool = False
) -> etree._Element:
    klass = "Error" if error else ("Warning" if warning else "Success")
    msg = etree.SubElement(parent, m(f"{operation}ResponseMessage"), ResponseClass=klass)
    if error is not None:
        etree.SubElement(msg, m("MessageText")).text = error.text
        etree.SubElement(msg, m("ResponseCode")).text = error.code
        etree.SubElement(msg, m("DescriptiveLinkKey")).text = "0"
    elif warning:
        etree.SubElement(msg, m("MessageText")).text = "Multiple results were found."
        etree.SubElement(msg, m("ResponseCode")).text = "ErrorNameResolutionMultipleResults"
        etree.SubElement(msg, m("DescriptiveLinkKey")).text = "0"
    else:
        etree.SubElement(msg, m("ResponseCode")).text = "NoError"
    return msg
