"""CreateItem in the EWS EMULATOR (not Microsoft Exchange): SaveOnly, from MimeContent,
with extended properties, the t:Message children checked against the schema's order."""

from __future__ import annotations

from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from lxml import etree  # type: ignore[import-untyped]

from mailferry_testkit.ews_emulator.common import Context, children, folder, folder_refs
from mailferry_testkit.ews_emulator.extended import property_key
from mailferry_testkit.ews_emulator.soap import (
    T_NS,
    ItemError,
    Request,
    local,
    m,
    parse_bool,
    response,
    response_message,
    schema_error,
    t,
)
from mailferry_testkit.ews_emulator.store import Mailbox, StoredItem

# Order of the ItemType then MessageType children in the EWS schema (the prefix exchangelib can send).
MESSAGE_CHILDREN = [
    "MimeContent",
    "ItemId",
    "ParentFolderId",
    "ItemClass",
    "Subject",
    "Sensitivity",
    "Body",
    "Attachments",
    "DateTimeReceived",
    "Size",
    "Categories",
    "Importance",
    "InReplyTo",
    "IsSubmitted",
    "IsDraft",
    "IsFromMe",
    "IsResend",
    "IsUnmodified",
    "InternetMessageHeaders",
    "DateTimeSent",
    "DateTimeCreated",
    "ResponseObjects",
    "ReminderDueBy",
    "ReminderIsSet",
    "ReminderNextTime",
    "ReminderMinutesBeforeStart",
    "DisplayCc",
    "DisplayTo",
    "HasAttachments",
    "ExtendedProperty",
    "Culture",
    "Sender",
    "ToRecipients",
    "CcRecipients",
    "BccRecipients",
    "IsReadReceiptRequested",
    "IsDeliveryReceiptRequested",
    "ConversationIndex",
    "ConversationTopic",
    "From",
    "InternetMessageId",
    "IsRead",
    "IsResponseRequested",
    "References",
    "ReplyTo",
    "ReceivedBy",
    "ReceivedRepresenting",
]
HEAD_LIMIT = 1 << 20
_ORDER = {name: i for i, name in enumerate(MESSAGE_CHILDREN)}


def create_item(req: Request, ctx: Context) -> etree._Element:
    body = req.body
    disposition = body.get("MessageDisposition")
    if disposition != "SaveOnly":
        raise schema_error(f"the emulator stores messages only: MessageDisposition={disposition!r}")
    names = children(body, ("SavedItemFolderId", "Items"), ("SavedItemFolderId", "Items"))
    if names != ["SavedItemFolderId", "Items"]:
        raise schema_error("CreateItem children must be SavedItemFolderId then Items")
    refs = folder_refs(body[0])
    if len(refs) != 1:
        raise schema_error("SavedItemFolderId holds exactly one folder")
    resp, messages = response("CreateItem")
    try:
        box, target = folder(refs[0], ctx)
    except ItemError as exc:
        for _ in body[1]:
            response_message(messages, "CreateItem", exc)
        return resp
    for elem in body[1]:
        if elem.tag != t("Message"):
            raise schema_error(f"the emulator creates t:Message items only, got {elem.tag}")
        try:
            item = _message(req, elem, box, target, ctx)
        except ItemError as exc:
            response_message(messages, "CreateItem", exc)
            continue
        ctx.store.add_item(item)
        msg = response_message(messages, "CreateItem")
        items = etree.SubElement(msg, m("Items"))
        created = etree.SubElement(items, t("Message"))
        etree.SubElement(created, t("ItemId"), Id=item.item_id, ChangeKey="CQAAAA==")
    return resp


def _message(req: Request, elem: etree._Element, box: Mailbox, folder: str, ctx: Context) -> StoredItem:
    last = -1
    for child in elem:
        name = local(child)
        if etree.QName(child).namespace != T_NS or name not in _ORDER:
            raise schema_error(f"unexpected element {child.tag} in t:Message")
        if _ORDER[name] < last:
            raise schema_error(f"element t:{name} is out of schema order in t:Message")
        last = _ORDER[name]
    mime_elem = elem.find(t("MimeContent"))
    if mime_elem is None:
        raise schema_error("the emulator creates items from t:MimeContent only")
    decoded = req.mime[mime_elem]
    if decoded.over_limit or decoded.size > ctx.max_message_size:
        raise ItemError(
            "ErrorMessageSizeExceeded",
            f"The message exceeds the maximum supported size ({ctx.max_message_size} bytes).",
        )
    mime = decoded.value()
    head = mime[:HEAD_LIMIT]  # the header block; parsing a 150 MB body would copy it twice
    headers = BytesHeaderParser(policy=compat32).parsebytes(head)
    if not head.strip() or not headers.keys():
        raise ItemError("ErrorMimeContentConversionFailed", "Content conversion failed: no MIME headers.")
    extended = _extended_properties(elem)
    is_read_elem = elem.find(t("IsRead"))
    flags = extended.get(("0xe07", "Integer"))
    delivered = extended.get(("0xe06", "SystemTime"))
    message_id = headers.get("Message-ID")
    return StoredItem(
        item_id=ctx.store.new_item_id(box.primary),
        mailbox=box.primary,
        folder=folder,
        mime=mime,
        is_read=parse_bool(is_read_elem.text, "IsRead") if is_read_elem is not None else False,
        message_flags=int(flags) if flags is not None else None,
        delivery_time=_system_time(delivered) if delivered is not None else None,
        internet_message_id=str(message_id).strip() if message_id else None,
        impersonated_as=ctx.impersonated,
        written_by=ctx.account,
        extended=extended,
    )


def _extended_properties(elem: etree._Element) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for prop in elem.findall(t("ExtendedProperty")):
        uri = prop.find(t("ExtendedFieldURI"))
        value = prop.find(t("Value"))
        if uri is None or value is None or len(prop) != 2:
            raise schema_error("ExtendedProperty needs ExtendedFieldURI then Value")
        key = property_key(uri)
        kind = key[1]
        if kind == "Integer":
            try:
                int(value.text or "")
            except ValueError:
                raise schema_error(f"ExtendedProperty {key[0]}: {value.text!r} is not an Integer") from None
        elif kind == "SystemTime":
            _system_time(value.text or "")
        found[key] = value.text or ""
    return found


def _system_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise schema_error(f"{text!r} is not an xs:dateTime") from None
    if when.tzinfo is None:
        raise schema_error(f"{text!r} has no time zone")
    return when
