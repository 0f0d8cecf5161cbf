"""Prometheus multiprocess mode, for a server that runs several worker processes.

prometheus_client picks where metric values live (process memory or mmap'd
files in ``PROMETHEUS_MULTIPROC_DIR``) when it is first imported, so the
directory must be chosen before anything imports it: ``use_private_dir`` is
called by the serve command before it builds the service. The workers then
write their values to files there and the process that serves ``/metrics``
adds them up (``MultiProcessCollector``). When a worker exits, the parent
should call ``prometheus_client.multiprocess.mark_process_dead(pid)`` so its
live gauges (active connections, pool usage) stop counting.

Without the variable everything stays in memory in the one process, which is
the default.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Final

ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def use_private_dir(data_dir: Path) -> Path:
    """Make ``<data_dir>/prometheus`` empty (values from an earlier run must not
    be added to this one's) and point prometheus_client at it."""
    if "prometheus_client" in sys.modules and multiprocess_dir() is None:
        raise RuntimeError("prometheus_client was imported before multiprocess mode was set up")
    path = data_dir / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
    os.environ[ENV] = str(path)
    return path
