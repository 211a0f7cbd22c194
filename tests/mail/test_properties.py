"""Properties of every parser of untrusted input: never raises, and parses what it should.

Example counts come from the ``mail-ci`` profile (tests/mail/conftest.py).
"""

from __future__ import annotations

from email.header import Header
from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import example, given
from hypothesis import strategies as st

from mailferry.mail import added_headers
from mailferry.mail.addresses import normalise_address, parse_address_list, plainly_valid, received_for
from mailferry.mail.block import chunks_of, header_block, locate
from mailferry.mail.dates import parse_date
from mailferry.mail.encoded_words import decode_value
from mailferry.mail.headers import field_defects, parse_headers
from mailferry.mail.message_id import lookup_key, message_id_field, normalise_message_id
from mailferry.producers.pop3_wire import parse_list, parse_uidl
from tests.mail.strategies import ADDRESS, DOMAIN, LOCAL, ODD, PROFILE, SPECIALS, raw_bytes, text


@PROFILE
@given(text)
def test_text_parsers_never_raise(value: str) -> None:
    decode_value(value)
    parse_address_list(value)
    received_for(value)
    received_for("for " + value)
    normalise_message_id(value)
    lookup_key(value)
    parse_date(value)
    added_headers.prefix([(value, value), ("X-V", value)])


@PROFILE
@given(raw_bytes, st.lists(raw_bytes, max_size=5))
def test_byte_parsers_never_raise(data: bytes, lines: list[bytes]) -> None:
    headers = parse_headers(locate(chunks_of(data, 7)).data)
    field_defects(headers)
    message_id_field(data)
    parse_uidl([*lines, data])
    parse_list([*lines, data])


@PROFILE
@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z-]{0,10}", fullmatch=True), text), max_size=6))
def test_blocks_split_anywhere_locate_the_same(fields: list[tuple[str, str]]) -> None:
    data = b"".join(f"{n}: {v}\r\n".encode("utf-8", "surrogatepass") for n, v in fields) + b"\r\nbody\r\n\r\n"
    whole = locate([data])
    assert locate(chunks_of(data, 1)) == locate(chunks_of(data, 5)) == whole
    assert whole.complete


@PROFILE
@given(st.lists(ADDRESS, min_size=1, max_size=5), st.data())
def test_address_lists_in_every_style(addresses: list[str], data: st.DataObject) -> None:
    styles = [
        "{a}",
        "<{a}>",
        "Name <{a}>",
        '"Last, First (x)" <{a}>',
        "{a} (comment, with <angle> and \\) escape)",
        "((nested) comment) <{a}>",
        "group: {a};",
    ]
    written = [data.draw(st.sampled_from(styles)).format(a=a) for a in addresses]
    parsed = parse_address_list(", ".join(written))
    assert list(parsed.addresses) == [normalise_address(a) for a in addresses]
    assert not parsed.damaged


PLAIN_STYLES = ["{a}", "<{a}>", " {a} ", "Name <{a}>", "=?utf-8?q?J=C3=BCrgen?= <{a}>", "Jürgen Ünal <{a}>"]


@PROFILE
@given(st.lists(ADDRESS, min_size=1, max_size=4), st.data())
def test_plain_address_lists_take_the_short_way(addresses: list[str], data: st.DataObject) -> None:
    value = ",".join(data.draw(st.sampled_from(PLAIN_STYLES)).format(a=a) for a in addresses)
    assert plainly_valid(value)
    assert not parse_address_list(value).damaged


@PROFILE
@given(
    st.lists(ADDRESS, min_size=1, max_size=4),
    st.lists(
        st.tuples(
            st.integers(0, 400), st.one_of(st.sampled_from(SPECIALS), st.sampled_from(ODD), st.characters())
        ),
        min_size=1,
        max_size=4,
    ),
    st.data(),
)
def test_a_plainly_valid_list_is_never_one_the_splitter_finds_damaged(
    addresses: list[str], edits: list[tuple[int, str]], data: st.DataObject
) -> None:
    value = ", ".join(data.draw(st.sampled_from(PLAIN_STYLES)).format(a=a) for a in addresses)
    for position, piece in edits:
        position %= len(value) + 1
        value = value[:position] + piece + value[position:]
    if plainly_valid(value):
        assert not parse_address_list(value).damaged, value


ADDRESS_PIECES = st.one_of(
    ADDRESS,
    LOCAL,
    DOMAIN,
    st.sampled_from(["@", "<", ">", ",", " ", '"', "(", ")", ".", ":", ";", "\\", "[", "]", "\r\n "]),
    st.sampled_from(["a" * 64, "b" * 63, ".".join(["c" * 63] * 4), "x" * 330]),
    st.sampled_from(ODD),
)


@PROFILE
@given(st.one_of(text, st.lists(ADDRESS_PIECES, max_size=12).map("".join)))
@example("a@@b.example")
@example("x@" + ".".join(["b" * 63] * 4))
@example("Name <a@b.example> <c@d.example>")
def test_plainly_valid_text_is_never_damaged(value: str) -> None:
    if plainly_valid(value):
        assert not parse_address_list(value).damaged, value


@PROFILE
@given(ADDRESS, text)
def test_received_for(address: str, noise: str) -> None:
    value = f"from mx by pop with ESMTPS id {noise.replace(';', '')} for <{address}>; Mon, 2 Nov 2026"
    expected = normalise_address(address)
    found = received_for(value)
    assert found == expected or "for" in noise.lower()  # noise may hold an earlier 'for' clause


@PROFILE
@given(text)
def test_canonical_forms_are_fixed_points(value: str) -> None:
    address = normalise_address(value)
    if address is not None:
        assert normalise_address(address) == address
    message_id = normalise_message_id(value)
    if message_id is not None:
        assert normalise_message_id(message_id) == message_id
        local, _, domain = message_id[1:-1].rpartition("@")
        assert domain == domain.lower() and local in value
        assert lookup_key(message_id) == lookup_key(value)


@PROFILE
@given(
    st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=80).filter(
        lambda t: t == t.strip() and "\x1c" not in t
    ),
    st.sampled_from(["utf-8", "iso-8859-1", "iso-2022-jp", "koi8-r", "windows-1252", "gb2312"]),
)
def test_encoded_words_round_trip(value: str, charset: str) -> None:
    try:
        value.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    encoded = Header(value, charset).encode()
    assert decode_value(encoded) == (value, True)


@PROFILE
@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z-]{0,8}", fullmatch=True), text), max_size=5))
def test_message_id_field_agrees_with_the_email_parser(fields: list[tuple[str, str]]) -> None:
    safe = [(n, " ".join(v.encode("ascii", "ignore").decode().split())) for n, v in fields]
    block = "".join(f"{n}: {v}\r\n" for n, v in [*safe, ("Message-ID", "<a1@x.example>")]).encode()
    expected = BytesHeaderParser(policy=compat32).parsebytes(block + b"\r\n").get("Message-ID")
    assert message_id_field(block) == " ".join(str(expected).split())


@PROFILE
@given(st.lists(st.tuples(text, text), max_size=6))
def test_added_headers_are_exactly_one_field_each(fields: list[tuple[str, str]]) -> None:
    prefix = added_headers.prefix(fields)
    written = [n for n, _ in fields if added_headers.field_line(n, "") is not None]
    parsed = parse_headers(header_block([prefix + b"\r\nbody"]))
    assert [name for name, _ in parsed.fields] == [n.lower() for n in written]
    assert prefix.count(b"\n") == len(written) and b"\r\n\r\n" not in prefix


@PROFILE
@given(st.dictionaries(st.integers(1, 10**6), st.from_regex(r"[!-~]{1,70}", fullmatch=True), max_size=8))
def test_pop3_listing_round_trip(listing: dict[int, str]) -> None:
    unique = {n: f"{uid}-{n}"[-70:] for n, uid in listing.items()}
    lines = [f"{n} {uid}".encode() for n, uid in unique.items()]
    found, problems = parse_uidl(lines)
    assert found == unique and problems == []
    assert parse_list([f"{n} {n * 3}".encode() for n in unique]) == {n: n * 3 for n in unique}
