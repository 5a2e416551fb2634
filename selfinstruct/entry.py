"""The `selfinstruct` command's first module: until the CLI's own handlers are in place (`signals`, from the
command's start) and after they are gone, SIGINT and SIGTERM end the process quietly with 128 + the signal.
Python's defaults printed a KeyboardInterrupt traceback from whichever import was running (rc -2), or died
without a word (rc -15); there is nothing to clean up then."""

from __future__ import annotations

import os
import signal
import sys

from selfinstruct import spawned_rerun


def _exit_quietly(signum, frame) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - a write the signal cut; exiting anyway
            pass
    os._exit(128 + signum)


if not spawned_rerun():  # vLLM's engine core runs our main module again; its signals are its own
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, _exit_quietly)


def main() -> None:
    from selfinstruct.cli import main as cli

    cli()
