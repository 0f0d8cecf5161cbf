"""The one table from domain errors to LDAP result codes: database faults."""

from __future__ import annotations

from ldapsrv import errors
from ldapsrv.ldap import results as rc


def test_a_locked_database_is_busy_and_a_missing_one_unavailable() -> None:
    busy = rc.result_for(errors.StoreBusy("database busy: database is locked"))
    down = rc.result_for(errors.StoreUnavailable("database unavailable: connection refused"))
    assert (busy.code, down.code) == (rc.BUSY, rc.UNAVAILABLE)
    # The driver's words (paths, hosts, SQL) stay in the server log.
    assert "locked" not in busy.message and "refused" not in down.message
    assert isinstance(errors.StoreBusy("x"), errors.StoreUnavailable)  # caught alike
