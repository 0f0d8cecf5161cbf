"""Reading the server's structured log back: JSON lines and logfmt."""

from __future__ import annotations

import json
from typing import Any

ACCESS_LOGGER = "ldapsrv.access"


def parse_logfmt(line: str) -> dict[str, str]:
    """One logfmt line -> key -> unescaped text (quotes, ``\\"``, ``\\\\``, ``\\n``,
    ``\\uXXXX``), written independently of the server's renderer."""
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        eq = line.index("=", i)
        key, i = line[i:eq], eq + 1
        if i < n and line[i] == '"':
            i += 1
            chars: list[str] = []
            while line[i] != '"':
                if line[i] == "\\":
                    code = line[i + 1]
                    if code == "u":
                        chars.append(chr(int(line[i + 2 : i + 6], 16)))
                        i += 6
                        continue
                    chars.append({"n": "\n", "r": "\r", "t": "\t"}.get(code, code))
                    i += 2
                    continue
                chars.append(line[i])
                i += 1
            out[key] = "".join(chars)
            i += 1
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            out[key] = line[i:end]
            i = end
    return out


def json_access_records(log_text: str) -> list[dict[str, Any]]:
    """The access log lines of a server logging in JSON, in order."""
    records = []
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("logger") == ACCESS_LOGGER:
            records.append(record)
    return records


def logfmt_access_records(log_text: str) -> list[dict[str, str]]:
    """The access log lines of a server logging in logfmt, in order."""
    records = [parse_logfmt(line) for line in log_text.splitlines() if line.startswith("time=")]
    return [r for r in records if r.get("logger") == ACCESS_LOGGER]


def by_connection(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(str(record["conn"]), []).append(record)
    return grouped
