"""What a diagnosis finds: one line per check, with the fix for a failed one. Made by
`shoal doctor` (shoal.doctor) and by each network driver's `diagnose`."""

from __future__ import annotations

from .records import Record

OK, FAIL, NOTE = "ok", "FAIL", "note"


class Check(Record):
    status: str
    what: str
    fix: str = ""
