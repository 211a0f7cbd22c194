"""mailferry's delivery marker on an EWS item, and the look-up that finds it again.

The marker (``DeliveryItem.marker``) is a named MAPI property in mailferry's own property
set, set in the CreateItem that creates the item, so it exists exactly when the item does.
``find`` is FindItem in the Inbox restricted to InternetMessageId (indexed, so Exchange
answers it cheaply) AND the marker: a copy of the same message that arrived some other way,
or an earlier bypass-dedup replay, is not mistaken for this delivery. A message without a
Message-ID is found by the marker alone.
"""

from __future__ import annotations

from exchangelib.extended_properties import ExtendedProperty
from exchangelib.folders import BaseFolder

from mailferry.consumers.targets.ews.items import InboxMessage

__all__ = ["DeliveryMarker", "InboxMessage", "find"]

MARKER_PROPERTY_SET = "6b3a1e0c-3f4d-4c1b-9a5e-6d61696c6665"  # mailferry's own property set
MARKER_NAME = "MailferryDelivery"


class DeliveryMarker(ExtendedProperty):  # type: ignore[misc]
    property_set_id = MARKER_PROPERTY_SET
    property_name = MARKER_NAME
    property_type = "String"


InboxMessage.register("mf_delivery_marker", DeliveryMarker)


def find(inbox: BaseFolder, message_id: str | None, marker: str) -> bool:
    """Is the item of this delivery in ``inbox``? (raises what exchangelib raises)"""
    query = inbox.filter(mf_delivery_marker=marker)
    if message_id is not None:
        query = inbox.filter(message_id=message_id, mf_delivery_marker=marker)
    return bool(query.only("id").exists())
