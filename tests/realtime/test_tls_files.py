"""TLS settings as plain values: which combinations are accepted (the files themselves and the
endpoint string are exercised by a real server in tests/e2e/test_tls.py)."""

from __future__ import annotations

import pytest

from realtime.daphne.tls import TLSError, TLSFiles


def test_off_unless_both_files_are_given() -> None:
    assert TLSFiles.from_settings("", "") is None
    for cert, key, chain in (("c.pem", "", ""), ("", "k.pem", ""), ("", "", "chain.pem")):
        with pytest.raises(TLSError):
            TLSFiles.from_settings(cert, key, chain)
