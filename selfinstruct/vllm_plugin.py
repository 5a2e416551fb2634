"""A vLLM general plugin (entry point `vllm.general_plugins` in pyproject.toml): vLLM calls `arm` first thing
in each process of its engine (the engine core, each worker). In an engine that `VLLMBackend` started, it arms
`signals.die_with_parent`, so the engine stops once the process hosting it is gone, kill -9 included.

Without it, only a spawned process that runs our main module again armed itself (this package's __init__): a
user's script that imported selfinstruct inside a function left vLLM's engine core running for good when it was
killed. `hosting()` names the hosting process in the environment the engine's processes inherit; in any other
process that loads vLLM's plugins (someone else's engine, the host itself) `arm` does nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

HOST = "SELFINSTRUCT_ENGINE_HOST"


@contextmanager
def hosting() -> Iterator[None]:
    """While an engine starts: its processes (started now, inheriting the environment) arm their watch, the
    engine core on this process, each worker on the engine core."""
    before = os.environ.get(HOST)
    os.environ[HOST] = str(os.getpid())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HOST, None)
        else:
            os.environ[HOST] = before


def arm() -> None:
    """vLLM's entry point: in a process of an engine we host, stop when its parent is gone."""
    host = os.environ.get(HOST, "")
    if not host.isdigit() or int(host) == os.getpid():
        return
    try:
        os.kill(int(host), 0)
    except ProcessLookupError:  # the host died while this process was starting: nobody will use it
        os.kill(os.getpid(), signal.SIGTERM)
        return
    from selfinstruct.signals import die_with_parent

    die_with_parent()
