"""Extended MAPI properties in the EWS EMULATOR (not Microsoft Exchange): how an
``ExtendedFieldURI`` names one, checked as strictly as the EWS schema and Exchange do.

A property is named either by its tag (``PropertyTag``) or, for a named property, by a
property set (``PropertySetId`` GUID or ``DistinguishedPropertySetId``) plus ``PropertyName``
or ``PropertyId``; ``PropertyType`` is always required. The key identifies the property the
way the store does: tags and GUIDs are case-insensitive, names are not.
"""

from __future__ import annotations

import uuid

from lxml import etree  # type: ignore[import-untyped]

from mailferry_testkit.ews_emulator.soap import schema_error

DISTINGUISHED_SETS = {
    "Meeting",
    "Appointment",
    "Common",
    "PublicStrings",
    "Address",
    "InternetHeaders",
    "CalendarAssistant",
    "UnifiedMessaging",
    "Task",
    "Sharing",
}
TYPES = {"Integer", "SystemTime", "String", "Boolean", "Long", "Double", "Binary", "Short"}
ATTRIBUTES = {
    "DistinguishedPropertySetId",
    "PropertySetId",
    "PropertyTag",
    "PropertyName",
    "PropertyId",
    "PropertyType",
}


def property_key(uri: etree._Element) -> tuple[str, str]:
    """``(name, type)`` of the property an ``ExtendedFieldURI`` names."""
    unknown = set(uri.attrib) - ATTRIBUTES
    if unknown:
        raise schema_error(f"ExtendedFieldURI: unknown attributes {sorted(unknown)}")
    kind = uri.get("PropertyType")
    if kind not in TYPES:
        raise schema_error(f"ExtendedFieldURI: PropertyType {kind!r} is not a MapiPropertyTypeType")
    tag = uri.get("PropertyTag")
    distinguished, set_id = uri.get("DistinguishedPropertySetId"), uri.get("PropertySetId")
    name, prop_id = uri.get("PropertyName"), uri.get("PropertyId")
    if tag is not None:
        if distinguished or set_id or name or prop_id:
            raise schema_error("ExtendedFieldURI: PropertyTag cannot be combined with a property set")
        try:
            return hex(int(tag, 16)), kind
        except ValueError:
            raise schema_error(f"ExtendedFieldURI: PropertyTag {tag!r} is not a number") from None
    if (distinguished is None) == (set_id is None):
        raise schema_error(
            "ExtendedFieldURI needs PropertyTag, or one of DistinguishedPropertySetId and PropertySetId"
        )
    if (name is None) == (prop_id is None):
        raise schema_error("ExtendedFieldURI: a named property needs one of PropertyName and PropertyId")
    if distinguished is not None:
        if distinguished not in DISTINGUISHED_SETS:
            raise schema_error(f"ExtendedFieldURI: unknown DistinguishedPropertySetId {distinguished!r}")
        space = distinguished
    else:
        try:
            space = "{" + str(uuid.UUID(str(set_id))) + "}"
        except ValueError:
            raise schema_error(f"ExtendedFieldURI: PropertySetId {set_id!r} is not a GUID") from None
    if name is not None:
        if not name:
            raise schema_error("ExtendedFieldURI: empty PropertyName")
        return f"{space}:{name}", kind
    return f"{space}#{int(str(prop_id), 0)}", kind
