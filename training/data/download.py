"""Fetch a dataset file from a list of mirrors and verify its checksum before anyone sees it."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Sequence

CONNECT_TIMEOUT_S = 15


class DownloadFailed(RuntimeError):
    pass


def fetch_verified(filename: str, md5: str, mirrors: Sequence[str]) -> bytes:
    """The bytes of `filename` from the first mirror that serves it with the right MD5."""
    failures: list[str] = []
    for base in mirrors:
        url = f"{base.rstrip('/')}/{filename}"
        try:
            with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            failures.append(f"{url}: {reason}")
            continue
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if digest != md5:
            failures.append(f"{url}: checksum mismatch (md5 {digest}, expected {md5})")
            continue
        return data
    raise DownloadFailed("; ".join(failures) or "no mirror to download from")
