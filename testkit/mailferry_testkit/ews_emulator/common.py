"""Shared pieces of the EWS EMULATOR's (not Microsoft Exchange) operations: the request
context, strict child-element checks, folder references and response shapes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree  # type: ignore[import-untyped]

from mailferry_testkit.ews_emulator.soap import ItemError, Request, local, schema_error, t
from mailferry_testkit.ews_emulator.store import FOLDERS, Mailbox, Store, parse_folder_id

BASE_SHAPES = ("IdOnly", "Default", "AllProperties")


@dataclass
class Context:
    store: Store
    account: str
    acting: Mailbox | None  # the impersonated mailbox, or the account's own
    impersonated: str | None
    max_message_size: int


Handler = Callable[[Request, Context], etree._Element]


def children(elem: etree._Element, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> list[str]:
    names = []
    for child in elem:
        if etree.QName(child).namespace is None or local(child) not in allowed:
            raise schema_error(f"unexpected element {child.tag} in {local(elem)}")
        names.append(local(child))
    for name in required:
        if name not in names:
            raise schema_error(f"{local(elem)} requires {name}")
    return names


def folder(ref: etree._Element, ctx: Context) -> tuple[Mailbox, str]:
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


def folder_refs(parent: etree._Element | None) -> list[etree._Element]:
    if parent is None or len(parent) == 0:
        raise schema_error("a folder reference is required")
    for ref in parent:
        if local(ref) not in ("FolderId", "DistinguishedFolderId"):
            raise schema_error(f"unexpected element {ref.tag} among folder ids")
    return list(parent)


def shape(elem: etree._Element | None) -> None:
    if elem is None:
        raise schema_error("a response shape is required")
    names = children(elem, ("BaseShape", "AdditionalProperties", "BodyType"), ("BaseShape",))
    if names[0] != "BaseShape":
        raise schema_error("BaseShape must come first")
    base = elem.find(t("BaseShape"))
    if base is None or (base.text or "") not in BASE_SHAPES:
        raise schema_error(f"BaseShape must be one of {BASE_SHAPES}")
