"""Masking secret values in text shown to people (targets, debug detail, tables, logs).

A secret is masked where it stands as a value, not wherever its characters happen to
appear: with ``PGPASSWORD=festivals``, ``password=festivals`` and ``:festivals@`` are
masked while ``festivals-db.festivals.svc`` is left alone. A match counts when the
characters on both sides cannot continue a word, host name or URL token. Long secrets
(tokens, keys) are masked anywhere: no host name contains one by chance. The URL-encoded
form of a secret is masked too, since secrets travel in query strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote

MASK = "<redacted>"
# At this length a value is a token, not a word: mask every occurrence.
_ANYWHERE_LENGTH = 16
# Characters that continue a word, host name or URL token. A dot continues one only when
# a word character follows ("festivals.svc"), not at the end of a sentence.
_BEFORE = r"(?<![\w~%.-])"
_AFTER = r"(?![\w~%-]|\.\w)"


@lru_cache(maxsize=4096)
def _pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for value in values:
        if value:
            forms.add(value)
            forms.add(quote(value, safe=""))
    if not forms:
        return None
    # Longest first, so a secret that contains another is masked whole.
    alternatives = []
    for form in sorted(forms, key=len, reverse=True):
        escaped = re.escape(form)
        alternatives.append(
            escaped if len(form) >= _ANYWHERE_LENGTH else f"{_BEFORE}{escaped}{_AFTER}"
        )
    return re.compile("|".join(alternatives))


def redact(text: str, values: Iterable[str]) -> str:
    """``text`` with every standing occurrence of ``values`` replaced by ``<redacted>``."""
    pattern = _pattern(values if isinstance(values, frozenset) else frozenset(values))
    return text if pattern is None else pattern.sub(MASK, text)
