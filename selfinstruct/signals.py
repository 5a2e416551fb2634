"""Clean stops on SIGINT and SIGTERM for every long-running command.

A process started from a non-interactive background job inherits SIGINT *ignored*, and Python's default
SIGTERM action kills it on the spot, skipping every `finally` (so a vLLM engine or server child outlives it).
`stop_on_signals()` installs handlers for both, whatever was inherited, that raise `Stopped` in the main thread
once; the command unwinds through its `finally` blocks (closing engines, writing the manifest) and the CLI
boundary exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report it.
`reap_children()` is the last resort at that boundary: no child process of ours outlives the command.
A kill -9 runs no code at all, so the children see to it themselves: `die_with_parent()` (module end).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Stopped(BaseException):
    """A stop asked for by a signal. A BaseException, so `except Exception` in library code cannot swallow it."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {NAMES.get(signum, signum)}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_critical = 0  # depth of `critical()` blocks: a signal arriving inside one waits for the block's end
_pending: int | None = None
_fired = False


@contextmanager
def critical() -> Iterator[None]:
    """A block a signal must not cut in two (a record and its fsync, a journal line and the records it implies):
    a stop asked for inside it is raised when the block ends."""
    global _critical, _pending
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
        if _critical == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise Stopped(signum)


def _handler(signum, frame) -> None:
    global _fired, _pending
    if _fired:  # unwinding already: let the cleanup finish
        return
    _fired = True
    if _critical:
        _pending = signum
        return
    loop = asyncio._get_running_loop()
    if loop is not None:
        # Raised inside an event loop, the exception could be swallowed by a callback's handler or wrapped by
        # a task group; cancel the loop's tasks instead, and `unwrap_stop` turns the cancellation into Stopped.
        _pending = signum
        for task in asyncio.all_tasks(loop):
            task.cancel()
        return
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `Stopped` (once; a second signal while unwinding is ignored
    so cleanup finishes). Outside the main thread this does nothing: only it may install handlers."""
    global _fired, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _fired, _pending = False, None

    old = {s: signal.signal(s, _handler) for s in NAMES}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stop_in(group: BaseExceptionGroup) -> Stopped | None:
    for e in group.exceptions:
        if isinstance(e, Stopped):
            return e
        if isinstance(e, BaseExceptionGroup) and (found := _stop_in(e)):
            return found
    return None


@contextmanager
def unwrap_stop() -> Iterator[None]:
    """A signal that lands inside an event loop (the HTTP backend's) comes out as the loop's cancellation, or
    wrapped in an exception group by the task group it interrupted; give it back as the plain `Stopped`."""
    global _pending
    try:
        yield
    except (asyncio.CancelledError, BaseExceptionGroup) as e:
        if _pending is not None and not _critical:
            signum, _pending = _pending, None
            raise Stopped(signum) from None
        stop = _stop_in(e) if isinstance(e, BaseExceptionGroup) else None
        if stop is None:
            raise
        raise stop from None


def children() -> set[int]:
    """The pids of every living descendant of this process."""
    try:
        import psutil
    except ImportError:  # psutil is a dependency; without it there is nothing to reap with
        return set()
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}


def reap_children(keep: set[int] = frozenset(), timeout: float = 10.0) -> None:
    """Terminate (then kill) every descendant still alive except `keep`: engines and servers a command started
    must not outlive it, while processes that were there before it (a caller's own) are left alone."""
    try:
        import psutil
    except ImportError:
        return
    kids = [p for p in psutil.Process(os.getpid()).children(recursive=True) if p.pid not in keep]
    for p in kids:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(kids, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)


@contextmanager
def owned_stop() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Stopped` inside; on the way out, every process started inside is reaped, while
    processes that were there before (a test session's engine, a caller's own) are left alone."""
    before = children()
    try:
        with stop_on_signals(), unwrap_stop():
            yield
    finally:
        reap_children(keep=before)


@contextmanager
def script_boundary() -> Iterator[None]:
    """The CLI's boundary for a long-running script (the benchmarks): a stop exits 128 + signal after its
    finally blocks ran, and no process it started outlives it."""
    try:
        with owned_stop():
            yield
    except Stopped as e:
        print(e, file=sys.stderr, flush=True)
        raise SystemExit(e.exit_code) from None


def die_with_parent(grace_s: float = 10.0) -> None:
    """In a child process (vLLM's engine core and its workers): once the process that started it is gone, stop
    (SIGTERM, so vLLM shuts its engine down; SIGKILL if that takes over `grace_s`). After a kill -9 of the
    command, the engine kept gigabytes and a server its port, for good. Polled, not PR_SET_PDEATHSIG, which
    follows the parent *thread*: it would fire when a thread that started an engine ends. Started by this
    package's __init__ in a process multiprocessing spawned (vLLM starts its engine core so) when that child runs
    our main module again, and by vLLM itself in the processes of an engine we host (vllm_plugin.py); once a
    process."""
    if any(t.name == "die-with-parent" for t in threading.enumerate()):
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
