"""The exchangelib Message class an EWS delivery creates.

It carries PR_MESSAGE_FLAGS (0x0E07 = 1, "not a draft") and PR_MESSAGE_DELIVERY_TIME
(0x0E06): without them a MIME import shows up as an unsent draft dated now. What the item
shows (delivery time, Internet Message-ID) is worked out in ``targets.exchange_item``,
which the Graph target shares.
"""

from __future__ import annotations

from exchangelib import Message
from exchangelib.extended_properties import ExtendedProperty

# PR_MESSAGE_FLAGS at creation: 1 (MSGFLAG_READ) without MSGFLAG_UNSENT (8) makes a received
# item, not a draft; IsRead=false in the same request then marks it unread.
MESSAGE_FLAGS_DELIVERED = 1


class MessageFlags(ExtendedProperty):  # type: ignore[misc]
    property_tag = 0x0E07
    property_type = "Integer"


class DeliveryTime(ExtendedProperty):  # type: ignore[misc]
    property_tag = 0x0E06
    property_type = "SystemTime"


class InboxMessage(Message):  # type: ignore[misc]
    """A Message with the two properties a received (not draft) item needs at creation."""


InboxMessage.register("mf_message_flags", MessageFlags)
InboxMessage.register("mf_delivery_time", DeliveryTime)
