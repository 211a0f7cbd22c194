"""Long fuzz run of every parser of untrusted mail input: no exception, linear cost.

    .venv/bin/python benchmarks/fuzz_parsers.py [--cases 1000000] [--seed 1] [--sizes 16,64,256,1024]

1. **Fuzz**: ``--cases`` inputs per parser, half mutations of a corpus of real and hostile
   header values (insert, delete, repeat a span, splice two samples, flip a byte), half
   random strings drawn from the characters the parsers branch on plus arbitrary code
   points. Every exception is counted (0 is the goal); the slowest single input is kept.
2. **Growth**: for each parser the adversarial shapes that broke (or could break) a
   backtracking or recursive parser, at each of ``--sizes`` KiB; the worst time per size
   and its ratio to the size before (linear growth: ~4 per 4x).
3. **Side by side**: the previous implementations, kept below only for this comparison,
   on the inputs that were quadratic for them (small sizes: they take minutes at 1 MiB).
4. **One 1 MiB adversarial header** through everything the stream does with a header block.

Prints one table per part (rich). Results: docs/benchmarks/parsers.md.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses

from rich.console import Console
from rich.table import Table

from mailferry.mail import added_headers
from mailferry.mail.addresses import normalise_address, parse_address_list, received_for
from mailferry.mail.block import MAX_HEADER_BYTES, chunks_of, header_block, locate
from mailferry.mail.dates import parse_date
from mailferry.mail.encoded_words import decode_value
from mailferry.mail.headers import field_defects, parse_headers
from mailferry.mail.message_id import lookup_key, message_id_field, normalise_message_id
from mailferry.producers.pop3_wire import parse_list, parse_uidl

CORPUS = [
    '"Smith, Bob" <bob@acme.example>, carol@b.example (Carol), junk',
    "undisclosed-recipients:;",
    "Team: a@x.example, <b@y.example>;, c@z.example",
    "<@route.example,@two.example:bob@acme.example>",
    "((nested (comment)) <a@b.example>",
    "from mx.isp.example by pop.isp.example with ESMTPS id 1x for <Bob@Acme.Example>; Mon, 2 Nov 2026",
    "from a (helo b) by c for bob@acme.example; Tue, 3 Nov 2026 10:00:00 +0100",
    "=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus =?iso-8859-1?b?TfxsbGVy?=",
    "=?utf-8?b?8J+Ygg==?= =?utf-8?b?8J+Y?= =?utf-8?b?gg==?=",
    "=?punycode?q?abc-9zzzzz?= =?idna?q?xn--9zzzzz?= =?unicode_escape?q?=5CN{x?=",
    "=?x-unknown*en?Q?a_b?= =?utf-8?q?broken",
    "<Abc.123@Mail.Example.COM> (comment)",
    "abc@x.example",
    "Mon, 2 Nov 2026 12:00:00 +0000",
    "1 Jan 99999999999 00:00:00",
    "leser@Bücher.example",
    "tenant=acme; mailbox=m; key=acme/bob@x/<m@x>; at=2026-11-02T12:00:00",
    "1 uid-abc",
    "\xb2 uid",
]
ALPHABET = [*'()<>@,;:\\"[]=?_ \t\r\n.-+*!#', "=?", "?=", "for ", "q?", "b?", "\x00", "\xff", "\xe9"]
ODD = ["\u017f", "\u0130", "\u0663", "\xb2", "\udcff", "\ud800", "\xdf", "\ufb00", "\u2028", "\x85", "\ufeff"]


def _mutate(rng: random.Random, value: str) -> str:
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(value))
        kind = rng.randrange(5)
        if kind == 0:
            value = value[:where] + rng.choice(ALPHABET + ODD) + value[where:]
        elif kind == 1 and value:
            value = value[:where] + value[where + rng.randint(1, 8) :]
        elif kind == 2 and value:
            start = rng.randrange(len(value))
            value = (
                value[:start] + value[start : start + rng.randint(1, 6)] * rng.randint(2, 40) + value[start:]
            )
        elif kind == 3:
            other = rng.choice(CORPUS)
            value = value[:where] + other[rng.randint(0, len(other)) :]
        else:
            value = value[:where] + chr(rng.randrange(0x110000)) + value[where:]
    return value


def _random(rng: random.Random) -> str:
    pool = ALPHABET if rng.random() < 0.7 else ODD
    return "".join(
        rng.choice(pool) if rng.random() < 0.8 else chr(rng.randrange(0x30000))
        for _ in range(rng.randint(0, 80))
    )


def case(rng: random.Random) -> str:
    return _mutate(rng, rng.choice(CORPUS)) if rng.random() < 0.5 else _random(rng)


def _bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _block(value: str) -> None:
    lines = value.replace("\x00", "\r\n").split("\n")
    data = _bytes(
        "\r\n".join(f"{('To', 'Subject', 'Received', 'Message-ID')[i % 4]}: {v}" for i, v in enumerate(lines))
    )
    headers = parse_headers(locate(chunks_of(data + b"\r\n\r\nbody", 13)).data)
    field_defects(headers)


PARSERS: dict[str, Callable[[str], object]] = {
    "header block + fields": _block,
    "encoded words": decode_value,
    "address list": parse_address_list,
    "address": normalise_address,
    "Received for": lambda v: received_for(v) or received_for("by x for " + v),
    "Message-ID": lambda v: (normalise_message_id(v), lookup_key(v)),
    "Message-ID field (fetch)": lambda v: message_id_field(_bytes("Message-ID: " + v)),
    "date": parse_date,
    "POP3 UIDL/LIST line": lambda v: (parse_uidl([_bytes(v)]), parse_list([_bytes(v)])),
    "added headers": lambda v: added_headers.prefix([(v, v), ("X-Tag", v)]),
}


def _header(size: int, line: str) -> str:
    return (line * (size // max(1, len(line)) + 1))[:size]


# adversarial shapes per parser, as functions of a size in characters
SHAPES: dict[str, list[Callable[[int], str]]] = {
    "header block + fields": [
        lambda n: "X: " + "a" * n,
        lambda n: "X: x" + "\r\n a" * (n // 4),
        lambda n: "a: b\r\n" * (n // 6),
        lambda n: "To: " + "(" * n,
        lambda n: "Subject: " + "=?a?q?" * (n // 6),
        lambda n: "Received: for " + "@" * n + "<",
    ],
    "encoded words": [
        lambda n: "=?a?q?" * (n // 6),
        lambda n: "=?utf-8?q?a?= " * (n // 14),
        lambda n: "=?" + "a" * n,
        lambda n: "=?utf-8?b?" + "QUFB" * (n // 4) + "?=",
    ],
    "address list": [
        lambda n: "(" * n,
        lambda n: "<" * n,
        lambda n: '"' + "a," * (n // 2),
        lambda n: "a@b.example, " * (n // 13),
        lambda n: "\\" * n,
    ],
    "Received for": [
        lambda n: "for " + "@" * n + "<",
        lambda n: "for " * (n // 4),
        lambda n: "for " + " " * n + "x",
        lambda n: "for <" + "a@b" * (n // 3) + "<",
    ],
    "Message-ID": [
        lambda n: "<" + "@" * n,
        lambda n: "<a" * (n // 2),
        lambda n: "<" + "a@" * (n // 2) + ">",
    ],
}


@dataclass
class Fuzzed:
    cases: int = 0
    exceptions: int = 0
    first: str = ""
    worst: float = 0.0
    worst_input: str = ""
    total: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)


def fuzz(name: str, parse: Callable[[str], object], cases: int, seed: int) -> Fuzzed:
    rng = random.Random(f"{seed}/{name}")
    result = Fuzzed()
    clock = time.process_time  # CPU time: the machine is shared, wall time is the neighbours'
    for _ in range(cases):
        value = case(rng)
        start = clock()
        try:
            parse(value)
        except Exception as exc:
            result.exceptions += 1
            kind = type(exc).__name__
            result.kinds[kind] = result.kinds.get(kind, 0) + 1
            result.first = result.first or f"{kind} on {value[:60]!r}"
        spent = clock() - start
        result.total += spent
        if spent > result.worst:
            result.worst, result.worst_input = spent, value
        result.cases += 1
    return result


def worst_time(parse: Callable[[str], object], shapes: list[Callable[[int], str]], size: int) -> float:
    worst = 0.0
    for shape in shapes:
        value = shape(size)
        start = time.process_time()
        parse(value)
        worst = max(worst, time.process_time() - start)
    return worst


# -- the previous implementations, for the side-by-side comparison only ------------------------

_OLD_RECEIVED_FOR = re.compile(r"\bfor\s+<?\s*([^\s<>;]+@[^\s<>;]+?)\s*>?\s*(?:;|$|\s)", re.IGNORECASE)
_OLD_MESSAGE_ID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def _old_decode(value: str) -> object:
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _old_addresses(value: str) -> object:
    try:
        return getaddresses([value])
    except RecursionError:
        return "RecursionError"


# (label, input shape, previous parser, new parser, sizes in KiB where the old one still ends)
OLD_VS_NEW: list[
    tuple[str, Callable[[int], str], Callable[[str], object], Callable[[str], object], tuple[int, ...]]
] = [
    (
        "Received for: 'for @@@…<'",
        lambda n: "for " + "@" * n + "<",
        _OLD_RECEIVED_FOR.search,
        received_for,
        (2, 4, 8),
    ),
    (
        "Message-ID: '<@@@…'",
        lambda n: "<" + "@" * n,
        _OLD_MESSAGE_ID.search,
        normalise_message_id,
        (4, 8, 16),
    ),
    ("encoded words: '=?a?q?…'", lambda n: "=?a?q?" * (n // 6), _old_decode, decode_value, (64, 256, 1024)),
]


def whole_header(size: int) -> tuple[float, int]:
    """A header block of ``size`` bytes mixing every adversarial shape, through all the
    stream does with one: locate, parse, decode, defects, Received ``for`` on each hop."""
    part = size // 6
    lines = [
        "Received: from x by y for " + "@" * part + "<",
        "To: " + "(" * part,
        "Cc: " + "a@b.example, " * (part // 13),
        "Subject: " + "=?a?q?" * (part // 6),
        "Message-ID: <" + "@" * part,
        "X-Folded: x" + "\r\n a" * (part // 4),
    ]
    data = "\r\n".join(lines).encode()[:size] + b"\r\n\r\nbody"
    start = time.process_time()
    headers = parse_headers(header_block(chunks_of(data)))
    field_defects(headers)
    for received in headers.get_all("Received"):
        received_for(received)
    normalise_message_id(headers.first("Message-ID"))
    return time.process_time() - start, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", default="16,64,256,1024", help="KiB, for the growth table")
    args = parser.parse_args()
    console = Console(width=150)
    sizes = [int(s) * 1024 for s in args.sizes.split(",")]

    table = Table(title=f"fuzz: {args.cases:,} inputs per parser (seed {args.seed})")
    for column in ("parser", "cases", "exceptions", "mean µs", "worst µs", "worst input (start)"):
        table.add_column(column, justify="left" if column in ("parser", "worst input (start)") else "right")
    failures = 0
    for name, parse in PARSERS.items():
        began = time.perf_counter()
        result = fuzz(name, parse, args.cases, args.seed)
        failures += result.exceptions
        table.add_row(
            name,
            f"{result.cases:,}",
            f"{result.exceptions}" + (f" ({result.first})" if result.first else ""),
            f"{result.total / max(1, result.cases) * 1e6:.1f}",
            f"{result.worst * 1e6:,.0f}",
            repr(result.worst_input[:24]),
        )
        took = time.perf_counter() - began
        console.print(f"{name}: {result.cases:,} cases, {result.exceptions} exceptions, {took:.0f} s")
    console.print(table)

    growth = Table(title="worst CPU time over the adversarial shapes, by size (linear: ratio ~4 per 4x)")
    growth.add_column("parser")
    for size in sizes:
        growth.add_column(f"{size // 1024} KiB ms", justify="right")
        growth.add_column("ratio", justify="right")
    for name, shapes in SHAPES.items():
        row, previous = [name], None
        for size in sizes:
            spent = worst_time(PARSERS[name], shapes, size)
            row += [f"{spent * 1000:.2f}", f"{spent / previous:.1f}" if previous else ""]
            previous = spent
        growth.add_row(*row)
    console.print(growth)

    side = Table(title="previous implementation vs mailferry.mail, same input, one run (CPU ms)")
    for column in ("input", "size", "previous", "now", "previous / now"):
        side.add_column(column, justify="left" if column == "input" else "right")
    for label, shape, old, new, kib in OLD_VS_NEW:
        for size in kib:
            before = worst_time(old, [shape], size * 1024)
            after = worst_time(new, [shape], size * 1024)
            ratio = f"{before / after:,.0f}" if after else "-"
            side.add_row(label, f"{size} KiB", f"{before * 1000:,.1f}", f"{after * 1000:.2f}", ratio)
    nested = "(" * 500 + "bob@acme.example"
    side.add_row("address list: 500 '('", "500 B", str(_old_addresses(nested)), "no exception", "")
    console.print(side)

    whole = Table(title="one adversarial header block through the stream's header work")
    for column in ("bytes", "CPU seconds"):
        whole.add_column(column, justify="right")
    for size in (64 * 1024, 256 * 1024, 1024 * 1024, MAX_HEADER_BYTES - 64):
        spent, length = whole_header(size)
        whole.add_row(f"{length:,}", f"{spent:.3f}")
    console.print(whole)
    if failures:
        raise SystemExit(f"{failures} exceptions")


if __name__ == "__main__":
    main()
