"""Input generators shared by the property tests and ``benchmarks/fuzz_parsers.py``.

Random text alone rarely reaches the interesting paths, so the alphabet is weighted toward
the characters the parsers branch on (specials, ``=?``, ``for``, digits of other scripts).
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st

PROFILE = settings.get_profile(os.environ.get("MAILFERRY_HYPOTHESIS", "mail-ci"))

SPECIALS = [*'()<>@,;:\\"[]=?_ \t\r\n.-+*', "=?", "?=", "for ", "q?", "b?", "\x00", "\xff"]
ODD = ["é", "\u017f", "İ", "٣", "²", "\udcff", "\ud800", "ß", "ﬀ", "\u2028", "\x85", "\ufeff"]
text = st.lists(
    st.one_of(st.sampled_from(SPECIALS), st.sampled_from(ODD), st.characters(), st.text(max_size=4)),
    max_size=60,
).map("".join)
raw_bytes = st.one_of(st.binary(max_size=300), text.map(lambda t: t.encode("utf-8", "surrogatepass")))

LOCAL = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._+-]{0,15}", fullmatch=True)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
DOMAIN = st.lists(LABEL, min_size=2, max_size=4).map(".".join)
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
