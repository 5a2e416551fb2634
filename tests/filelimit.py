"""A real file size limit on a child process, standing in for a full disk: a write past it fails with EFBIG (as
a full disk fails with ENOSPC), and Python's OSError names no file, as on a full disk."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from collections.abc import Callable


def small_files(limit: int) -> Callable[[], None]:
    """A `preexec_fn` for subprocess: files the child writes stop at `limit` bytes."""

    def pre() -> None:
        # the write past the limit fails instead of SIGXFSZ killing the child
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


def failed_write(body: str, limit: int = 1 << 20) -> list[str]:
    """Run the Python statements `body` in a child under `limit`: the errno and file name of the OSError they
    raised (nothing if none)."""
    script = "try:\n" + "".join(f"    {ln}\n" for ln in body.strip().splitlines())
    script += "except OSError as e:\n    print(e.errno, e.filename)\n"
    res = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files(limit),
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.split()
