"""Reading mail that anyone may have written: the one place every stage parses headers.

Each stage (fetch, stream, deliver) looks at the same bytes for different reasons; before
this package each located the header block with its own size limit and normalised the
Message-ID its own way, so the audit topic held two shapes of one id. Now:

| module | what it answers |
|---|---|
| ``block`` | where the header block ends (``MAX_HEADER_BYTES``, the one limit), read lazily |
| ``headers`` | the fields of a block, decoded, with the defects met on the way |
| ``encoded_words`` | one header value as text: unfolding, 8-bit bytes, RFC 2047 words |
| ``addresses`` | address lists, the canonical ``local@domain``, ``Received: ... for <...>`` |
| ``message_id`` | the canonical Message-ID (dedup keys, audit events, ``audit trace``) |
| ``dates`` | a Date/Received timestamp |
| ``added_headers`` | the bytes of the header fields mailferry prepends on delivery |

The contract of every parser here, on untrusted input: it never raises and its cost grows
linearly with the input. A field that cannot be parsed counts as absent and leaves a defect
(``<field>:<kind>``) that the caller puts on the audit record. No regular expression here
has a nested or adjacent overlapping quantifier; ``benchmarks/fuzz_parsers.py`` checks both
properties on a million inputs per parser (docs/benchmarks/parsers.md).
"""
