"""The EWS operations the EWS EMULATOR (not Microsoft Exchange) answers.

Only what mailferry's EWS target sends through exchangelib: GetFolder (folder look-up),
CreateItem (SaveOnly, from MimeContent, with extended properties), FindItem (restriction on
InternetMessageId), ResolveNames and ConvertId (exchangelib's version probe). Anything else,
or any element in a place the schema does not allow, gets a fault instead of a guess.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from lxml import etree  # type: ignore[import-untyped]

from mailferry.testing.ews_emulator.soap import (
    T_NS,
    EwsFault,
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
from mailferry.testing.ews_emulator.store import (
    FOLDERS,
    Mailbox,
    Store,
    StoredItem,
    folder_id,
    parse_folder_id,
)

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
_ORDER = {name: i for i, name in enumerate(MESSAGE_CHILDREN)}
BASE_SHAPES = ("IdOnly", "Default", "AllProperties")


@dataclass
class Context:
    store: Store
    account: str
    acting: Mailbox | None  # the impersonated mailbox, or the account's own
    impersonated: str | None
    max_message_size: int


Handler = Callable[[Request, Context], etree._Element]


def _children(elem: etree._Element, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> list[str]:
    names = []
    for child in elem:
        if etree.QName(child).namespace is None or local(child) not in allowed:
            raise schema_error(f"unexpected element {child.tag} in {local(elem)}")
        names.append(local(child))
    for name in required:
        if name not in names:
            raise schema_error(f"{local(elem)} requires {name}")
    return names


def _folder(ref: etree._Element, ctx: Context) -> tuple[Mailbox, str]:
    """Mailbox and folder name a FolderId or DistinguishedFolderId points to."""
    if local(ref) == "FolderId":
        address, name = parse_folder_id(ref.get("Id", ""))
        box = ctx.store.primary(address)
        if box is None:
            raise ItemError("ErrorItemNotFound", "The specified object was not found in the store.")
    elif local(ref) == "DistinguishedFolderId":
        name = ref.get("Id", "")
        if name not in FOLDERS:
            raise ItemError("ErrorFolderNotFound", f"The emulator has no distinguished folder {name!r}.")
        email = ref.find(f"{t('Mailbox')}/{t('EmailAddress')}")
        if email is not None:
            found = ctx.store.by_any_address((email.text or "").strip())
            if found is None:
                raise ItemError(
                    "ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it."
                )
            box = found
        elif ctx.acting is not None:
            box = ctx.acting
        else:
            raise ItemError("ErrorMissingEmailAddress", "The account has no mailbox; name one.")
    else:
        raise schema_error(f"{ref.tag} is not a folder reference")
    if ctx.impersonated is not None and ctx.acting is not None and box is not ctx.acting:
        raise ItemError("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    return box, name


def _folder_refs(parent: etree._Element | None) -> list[etree._Element]:
    if parent is None or len(parent) == 0:
        raise schema_error("a folder reference is required")
    for ref in parent:
        if local(ref) not in ("FolderId", "DistinguishedFolderId"):
            raise schema_error(f"unexpected element {ref.tag} among folder ids")
    return list(parent)


def _shape(elem: etree._Element | None) -> None:
    if elem is None:
        raise schema_error("a response shape is required")
    names = _children(elem, ("BaseShape", "AdditionalProperties", "BodyType"), ("BaseShape",))
    if names[0] != "BaseShape":
        raise schema_error("BaseShape must come first")
    base = elem.find(t("BaseShape"))
    if base is None or (base.text or "") not in BASE_SHAPES:
        raise schema_error(f"BaseShape must be one of {BASE_SHAPES}")


# ---- GetFolder -------------------------------------------------------------------------------


def get_folder(req: Request, ctx: Context) -> etree._Element:
    _children(req.body, ("FolderShape", "FolderIds"), ("FolderShape", "FolderIds"))
    _shape(req.body.find(m("FolderShape")))
    resp, messages = response("GetFolder")
    for ref in _folder_refs(req.body.find(m("FolderIds"))):
        try:
            box, name = _folder(ref, ctx)
        except ItemError as exc:
            response_message(messages, "GetFolder", exc)
            continue
        msg = response_message(messages, "GetFolder")
        folders = etree.SubElement(msg, m("Folders"))
        folders.append(_folder_elem(box, name, ctx.store))
    return resp


def _folder_elem(box: Mailbox, name: str, store: Store) -> etree._Element:
    folder = etree.Element(t("Folder"))
    etree.SubElement(folder, t("FolderId"), Id=folder_id(box.primary, name), ChangeKey="AQAAAA==")
    if name != "root":
        parent = "root" if name == "msgfolderroot" else "msgfolderroot"
        etree.SubElement(folder, t("ParentFolderId"), Id=folder_id(box.primary, parent), ChangeKey="AQAAAA==")
    if name == "inbox":
        etree.SubElement(folder, t("FolderClass")).text = "IPF.Note"
    display = {"root": "", "msgfolderroot": "Top of Information Store", "inbox": "Inbox"}[name]
    etree.SubElement(folder, t("DisplayName")).text = display
    total, unread = store.count(box.primary, name)
    etree.SubElement(folder, t("TotalCount")).text = str(total)
    etree.SubElement(folder, t("ChildFolderCount")).text = "1" if name != "inbox" else "0"
    rights = etree.SubElement(folder, t("EffectiveRights"))
    for right in ("CreateAssociated", "CreateContents", "CreateHierarchy", "Delete", "Modify", "Read"):
        etree.SubElement(rights, t(right)).text = "true"
    etree.SubElement(folder, t("DistinguishedFolderId")).text = name
    etree.SubElement(folder, t("UnreadCount")).text = str(unread)
    return folder


# ---- CreateItem ------------------------------------------------------------------------------


def create_item(req: Request, ctx: Context) -> etree._Element:
    body = req.body
    disposition = body.get("MessageDisposition")
    if disposition != "SaveOnly":
        raise schema_error(f"the emulator stores messages only: MessageDisposition={disposition!r}")
    names = _children(body, ("SavedItemFolderId", "Items"), ("SavedItemFolderId", "Items"))
    if names != ["SavedItemFolderId", "Items"]:
        raise schema_error("CreateItem children must be SavedItemFolderId then Items")
    refs = _folder_refs(body[0])
    if len(refs) != 1:
        raise schema_error("SavedItemFolderId holds exactly one folder")
    resp, messages = response("CreateItem")
    try:
        box, folder = _folder(refs[0], ctx)
    except ItemError as exc:
        for _ in body[1]:
            response_message(messages, "CreateItem", exc)
        return resp
    for elem in body[1]:
        if elem.tag != t("Message"):
            raise schema_error(f"the emulator creates t:Message items only, got {elem.tag}")
        try:
            item = _message(elem, box, folder, ctx)
        except ItemError as exc:
            response_message(messages, "CreateItem", exc)
            continue
        ctx.store.add_item(item)
        msg = response_message(messages, "CreateItem")
        items = etree.SubElement(msg, m("Items"))
        created = etree.SubElement(items, t("Message"))
        etree.SubElement(created, t("ItemId"), Id=item.item_id, ChangeKey="CQAAAA==")
    return resp


def _message(elem: etree._Element, box: Mailbox, folder: str, ctx: Context) -> StoredItem:
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
    try:
        mime = base64.b64decode((mime_elem.text or "").encode(), validate=True)
    except binascii.Error:
        raise schema_error("t:MimeContent is not base64") from None
    if len(mime) > ctx.max_message_size:
        raise ItemError(
            "ErrorMessageSizeExceeded",
            f"The message exceeds the maximum supported size ({ctx.max_message_size} bytes).",
        )
    headers = BytesHeaderParser(policy=compat32).parsebytes(mime)
    if not mime.strip() or not headers.keys():
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
        tag, kind = uri.get("PropertyTag"), uri.get("PropertyType")
        if not tag or not kind:
            raise schema_error("the emulator understands PropertyTag extended properties only")
        key = (hex(int(tag, 16)), kind)
        if kind == "Integer":
            try:
                int(value.text or "")
            except ValueError:
                raise schema_error(f"ExtendedProperty {tag}: {value.text!r} is not an Integer") from None
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


# ---- FindItem --------------------------------------------------------------------------------


def find_item(req: Request, ctx: Context) -> etree._Element:
    body = req.body
    if body.get("Traversal") != "Shallow":
        raise schema_error("the emulator supports Traversal='Shallow' only")
    allowed = ("ItemShape", "IndexedPageItemView", "Restriction", "SortOrder", "ParentFolderIds")
    _children(body, allowed, ("ItemShape", "ParentFolderIds"))
    _shape(body.find(m("ItemShape")))
    wanted = _restriction(body.find(m("Restriction")))
    limit = None
    view = body.find(m("IndexedPageItemView"))
    if view is not None:
        if view.get("BasePoint") not in ("Beginning", "End") or view.get("Offset") is None:
            raise schema_error("IndexedPageItemView needs Offset and BasePoint")
        limit = int(view.get("MaxEntriesReturned", "0")) or None
    resp, messages = response("FindItem")
    for ref in _folder_refs(body.find(m("ParentFolderIds"))):
        try:
            box, folder = _folder(ref, ctx)
        except ItemError as exc:
            response_message(messages, "FindItem", exc)
            continue
        if wanted is None:
            found = [i for i in ctx.store.items(box.primary) if i.folder == folder]
        else:
            found = ctx.store.find_by_message_id(box.primary, folder, wanted)
        shown = found[:limit] if limit else found
        msg = response_message(messages, "FindItem")
        root = etree.SubElement(
            msg,
            m("RootFolder"),
            IndexedPagingOffset=str(len(shown)),
            TotalItemsInView=str(len(found)),
            IncludesLastItemInRange="true" if len(shown) == len(found) else "false",
        )
        items = etree.SubElement(root, t("Items"))
        for item in shown:
            etree.SubElement(
                etree.SubElement(items, t("Message")), t("ItemId"), Id=item.item_id, ChangeKey="CQ=="
            )
    return resp


def _restriction(elem: etree._Element | None) -> str | None:
    if elem is None:
        return None
    equal = elem[0] if len(elem) == 1 else None
    if equal is None or equal.tag != t("IsEqualTo"):
        raise schema_error("the emulator supports a single IsEqualTo restriction only")
    uri, const_parent = (equal[0], equal[1]) if len(equal) == 2 else (None, None)
    if uri is None or uri.tag != t("FieldURI") or uri.get("FieldURI") != "message:InternetMessageId":
        raise schema_error("the emulator restricts on message:InternetMessageId only")
    const = const_parent.find(t("Constant")) if const_parent is not None else None
    if const is None or const_parent is None or const_parent.tag != t("FieldURIOrConstant"):
        raise schema_error("IsEqualTo needs FieldURIOrConstant/Constant")
    return str(const.get("Value", ""))


# ---- ResolveNames ----------------------------------------------------------------------------


def resolve_names(req: Request, ctx: Context) -> etree._Element:
    body = req.body
    full = parse_bool(body.get("ReturnFullContactData"), "ReturnFullContactData")
    names = _children(body, ("UnresolvedEntry",), ("UnresolvedEntry",))
    if len(names) != 1:
        raise schema_error("ResolveNames takes exactly one UnresolvedEntry")
    entry = (body[0].text or "").strip()
    proxies = entry.lower().startswith("smtp:")
    found = ctx.store.search(entry[5:] if proxies else entry, proxies=proxies)
    resp, messages = response("ResolveNames")
    if not found:
        response_message(messages, "ResolveNames", ItemError("ErrorNameResolutionNoResults", "No results."))
        return resp
    msg = response_message(messages, "ResolveNames", warning=len(found) > 1)
    result = etree.SubElement(
        msg,
        m("ResolutionSet"),
        TotalItemsInView=str(len(found)),
        IncludesLastItemInRange="true",
    )
    for box in found[:100]:
        resolution = etree.SubElement(result, t("Resolution"))
        mailbox = etree.SubElement(resolution, t("Mailbox"))
        etree.SubElement(mailbox, t("Name")).text = box.display_name
        etree.SubElement(mailbox, t("EmailAddress")).text = box.primary
        etree.SubElement(mailbox, t("RoutingType")).text = "SMTP"
        etree.SubElement(mailbox, t("MailboxType")).text = "Mailbox"
        if full:
            contact = etree.SubElement(resolution, t("Contact"))
            etree.SubElement(contact, t("DisplayName")).text = box.display_name
            addresses = etree.SubElement(contact, t("EmailAddresses"))
            # Exchange lists at most three addresses here: the primary first.
            listed = [f"SMTP:{box.primary}", *(f"smtp:{a}" for a in box.aliases)][:3]
            for i, address in enumerate(listed, start=1):
                etree.SubElement(addresses, t("Entry"), Key=f"EmailAddress{i}").text = address
            etree.SubElement(contact, t("ContactSource")).text = "ActiveDirectory"
    return resp


# ---- ConvertId (exchangelib's version probe) -------------------------------------------------


def convert_id(req: Request, ctx: Context) -> etree._Element:
    if not req.body.get("DestinationFormat"):
        raise schema_error("ConvertId needs DestinationFormat")
    _children(req.body, ("SourceIds",), ("SourceIds",))
    resp, messages = response("ConvertId")
    for _ in req.body[0]:
        response_message(messages, "ConvertId", ItemError("ErrorInvalidIdMalformed", "Id is malformed."))
    return resp


OPERATIONS: dict[str, Handler] = {
    "GetFolder": get_folder,
    "CreateItem": create_item,
    "FindItem": find_item,
    "ResolveNames": resolve_names,
    "ConvertId": convert_id,
}


def single_error(operation: str, error: ItemError) -> etree._Element:
    """An injected per-item failure, shaped as the operation's one response message."""
    resp, messages = response(operation)
    response_message(messages, operation, error)
    return resp


def unsupported(operation: str) -> EwsFault:
    return schema_error(f"operation m:{operation} is not implemented by the EWS emulator")
