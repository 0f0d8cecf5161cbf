"""contrib/systemd/ldapsrv.service: sandboxed, binds 389/636 without root, and
``systemd-analyze verify`` accepts it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "ldapsrv.service"


def _settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {line!r}"
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_is_sandboxed_with_only_the_bind_capability() -> None:
    settings = _settings(UNIT.read_text())
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "ldapsrv",
        "RuntimeDirectory": "ldapsrv",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    }
    for key, value in expected.items():
        assert settings.get(key) == [value], key
    assert "@system-service" in settings["SystemCallFilter"]
    assert "LDAPSRV_SERVER_CONTROL_SOCKET=/run/ldapsrv/control.sock" in settings["Environment"]
    assert any(" serve --config " in command for command in settings["ExecStart"])


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt package systemd)")
    # verify checks that ExecStart exists: point it at this environment's ldapsrv.
    ldapsrv = Path(sys.executable).parent / "ldapsrv"
    assert ldapsrv.exists()
    unit = tmp_path / "ldapsrv.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/ldapsrv", str(ldapsrv)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
