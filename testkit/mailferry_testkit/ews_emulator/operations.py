"""The EWS operations the EWS EMULATOR (not Microsoft Exchange) answers.

Only what mailferry's EWS target sends through exchangelib: GetFolder (folder look-up),
CreateItem (SaveOnly, from MimeContent, with extended properties), FindItem (IsEqualTo, or an
And of them, on InternetMessageId and extended properties), ResolveNames and ConvertId
(exchangelib's version probe). Anything else, or any element in a place the schema does not
allow, gets a fault instead of a guess.
"""

from __future__ import annotations

from lxml import etree  # type: ignore[import-untyped]

from mailferry_testkit.ews_emulator.common import (
    Context,
    Handler,
    children,
    folder,
    folder_refs,
    shape,
)
from mailferry_testkit.ews_emulator.create_item import create_item
from mailferry_testkit.ews_emulator.extended import property_key
from mailferry_testkit.ews_emulator.soap import (
    EwsFault,
    ItemError,
    Request,
    m,
    parse_bool,
    response,
    response_message,
    schema_error,
    t,
)
from mailferry_testkit.ews_emulator.store import Mailbox, Store, folder_id

# ---- GetFolder -------------------------------------------------------------------------------


def get_folder(req: Request, ctx: Context) -> etree._Element:
    children(req.body, ("FolderShape", "FolderIds"), ("FolderShape", "FolderIds"))
    shape(req.body.find(m("FolderShape")))
    resp, messages = response("GetFolder")
    for ref in folder_refs(req.body.find(m("FolderIds"))):
        try:
            box, name = folder(ref, ctx)
        except ItemError as exc:
            response_message(messages, "GetFolder", exc)
            continue
        msg = response_message(messages, "GetFolder")
        folders = etree.SubElement(msg, m("Folders"))
        folders.append(_folder_elem(box, name, ctx.store))
    return resp


def _folder_elem(box: Mailbox, name: str, store: Store) -> etree._Element:
    elem = etree.Element(t("Folder"))
    etree.SubElement(elem, t("FolderId"), Id=folder_id(box.primary, name), ChangeKey="AQAAAA==")
    if name != "root":
        parent = "root" if name == "msgfolderroot" else "msgfolderroot"
        etree.SubElement(elem, t("ParentFolderId"), Id=folder_id(box.primary, parent), ChangeKey="AQAAAA==")
    if name == "inbox":
        etree.SubElement(elem, t("FolderClass")).text = "IPF.Note"
    display = {"root": "", "msgfolderroot": "Top of Information Store", "inbox": "Inbox"}[name]
    etree.SubElement(elem, t("DisplayName")).text = display
    total, unread = store.count(box.primary, name)
    etree.SubElement(elem, t("TotalCount")).text = str(total)
    etree.SubElement(elem, t("ChildFolderCount")).text = "1" if name != "inbox" else "0"
    rights = etree.SubElement(elem, t("EffectiveRights"))
    for right in ("CreateAssociated", "CreateContents", "CreateHierarchy", "Delete", "Modify", "Read"):
        etree.SubElement(rights, t(right)).text = "true"
    etree.SubElement(elem, t("DistinguishedFolderId")).text = name
    etree.SubElement(elem, t("UnreadCount")).text = str(unread)
    return elem


# ---- FindItem --------------------------------------------------------------------------------


def find_item(req: Request, ctx: Context) -> etree._Element:
    body = req.body
    if body.get("Traversal") != "Shallow":
        raise schema_error("the emulator supports Traversal='Shallow' only")
    allowed = ("ItemShape", "IndexedPageItemView", "Restriction", "SortOrder", "ParentFolderIds")
    children(body, allowed, ("ItemShape", "ParentFolderIds"))
    shape(body.find(m("ItemShape")))
    wanted = _restriction(body.find(m("Restriction")))
    limit = None
    view = body.find(m("IndexedPageItemView"))
    if view is not None:
        if view.get("BasePoint") not in ("Beginning", "End") or view.get("Offset") is None:
            raise schema_error("IndexedPageItemView needs Offset and BasePoint")
        limit = int(view.get("MaxEntriesReturned", "0")) or None
    resp, messages = response("FindItem")
    for ref in folder_refs(body.find(m("ParentFolderIds"))):
        try:
            box, name = folder(ref, ctx)
        except ItemError as exc:
            response_message(messages, "FindItem", exc)
            continue
        if wanted is None:
            found = [i for i in ctx.store.items(box.primary) if i.folder == name]
        else:
            found = ctx.store.find(box.primary, name, wanted)
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


def _restriction(elem: etree._Element | None) -> list[tuple[object, str]] | None:
    """The conditions of a Restriction, all of which an item must meet (None: no restriction).

    The emulator understands one IsEqualTo, or an And of IsEqualTo, each on
    message:InternetMessageId or on an extended property; anything else is refused.
    """
    if elem is None:
        return None
    if len(elem) != 1:
        raise schema_error("Restriction holds exactly one search expression")
    expr = elem[0]
    if expr.tag == t("And"):
        if len(expr) < 2:
            raise schema_error("And needs at least two search expressions")
        return [_is_equal_to(child) for child in expr]
    return [_is_equal_to(expr)]


def _is_equal_to(equal: etree._Element) -> tuple[object, str]:
    if equal.tag != t("IsEqualTo"):
        raise schema_error("the emulator supports IsEqualTo (alone or under And) only")
    if len(equal) != 2:
        raise schema_error("IsEqualTo needs a property path then FieldURIOrConstant")
    uri, const_parent = equal[0], equal[1]
    if uri.tag == t("FieldURI"):
        if uri.get("FieldURI") != "message:InternetMessageId":
            raise schema_error(
                "the emulator restricts on message:InternetMessageId or extended properties only"
            )
        what: object = "message-id"
    elif uri.tag == t("ExtendedFieldURI"):
        what = property_key(uri)
    else:
        raise schema_error(f"unexpected property path {uri.tag} in IsEqualTo")
    const = const_parent.find(t("Constant"))
    if const_parent.tag != t("FieldURIOrConstant") or const is None or len(const_parent) != 1:
        raise schema_error("IsEqualTo needs FieldURIOrConstant/Constant")
    if const.get("Value") is None:
        raise schema_error("Constant needs a Value")
    return what, str(const.get("Value"))


# ---- ResolveNames ----------------------------------------------------------------------------


def resolve_names(req: Request, ctx: Context) -> etree._Element:
    body = req.body
    full = parse_bool(body.get("ReturnFullContactData"), "ReturnFullContactData")
    names = children(body, ("UnresolvedEntry",), ("UnresolvedEntry",))
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
    children(req.body, ("SourceIds",), ("SourceIds",))
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
