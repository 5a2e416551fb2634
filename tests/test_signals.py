"""The CLI boundary reaps the child processes a command started, and only those: a caller's own processes
(a test session's vLLM engine, a notebook's server) are not the command's to end.

Run: .venv/bin/pytest -q tests/test_signals.py
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.signals import children, reap_children

ROOT = Path(__file__).resolve().parents[1]


def test_a_command_leaves_processes_that_were_there_before_alone():
    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        res = CliRunner().invoke(app, ["seeds", "validate", str(ROOT / "seeds"), "--json"])
        assert res.exit_code == 0, res.output
        assert mine.poll() is None, "the command ended a process it did not start"
    finally:
        mine.kill()
        mine.wait()


def test_reap_children_ends_only_the_new_ones():
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = children()
        new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        reap_children(keep=before, timeout=5)
        assert new.wait(timeout=5) is not None
        assert old.poll() is None
    finally:
        old.kill()
        old.wait()


def test_a_script_in_the_boundary_stops_on_sigterm_and_leaves_no_child(tmp_path):
    """bench/*.py run their main inside `script_boundary`: killed, they used to leave a vLLM engine running."""
    import signal
    import time

    import psutil

    script = tmp_path / "long.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "from selfinstruct.signals import script_boundary\n"
        "with script_boundary():\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "    print(child.pid, flush=True)\n"
        "    try:\n"
        "        time.sleep(600)\n"
        "    finally:\n"
        "        print('cleanup ran', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    child = int(proc.stdout.readline())
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "cleanup ran" in out and "stopped by SIGTERM" in err
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


PARENT = """
import multiprocessing as mp, sys, time
import selfinstruct

def sleep():
    time.sleep(120)

if __name__ == "__main__":
    kids = [mp.get_context("spawn").Process(target=sleep) for _ in range(2)]  # as vLLM starts its engine core
    for k in kids:
        k.start()
    time.sleep(3)  # a child's watch starts once it has imported this file again
    print(" ".join(str(k.pid) for k in kids), flush=True)
    time.sleep(120)
"""


def test_children_die_with_a_parent_killed_outright(tmp_path):
    """kill -9 runs no code in the killed process, and vLLM's engine core (a child started by multiprocessing's
    spawn) and its worker stayed alive for good, holding the engine's memory: they now end."""
    import os
    import signal

    import psutil

    (tmp_path / "parent.py").write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py")], stdout=subprocess.PIPE, text=True
    )
    kids = [psutil.Process(int(pid)) for pid in parent.stdout.readline().split()]
    assert len(kids) == 2 and all(k.is_running() for k in kids)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    gone, alive = psutil.wait_procs(kids, timeout=15)
    for k in alive:
        k.kill()
    assert not alive, [k.cmdline() for k in alive]


HOST = """
import multiprocessing as mp, os, sys, time

def engine_process():  # what vLLM's engine core and workers do first
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    print(os.getpid(), flush=True)
    time.sleep(600)

if __name__ == "__main__":
    from selfinstruct.vllm_plugin import hosting  # not at the top, as a user's script may: never rerun

    with hosting():  # as VLLMBackend starts its engine
        child = mp.get_context("spawn").Process(target=engine_process)
        child.start()
    time.sleep(600)
"""


def test_an_engine_stops_with_its_host_whatever_the_hosts_main_module_imports(tmp_path):
    """vLLM's engine processes run the host's main module again, and only a module that imported selfinstruct
    at its top armed their watch: a user's script that imported it inside a function, killed outright, left
    the engine core running for good. vLLM now arms it itself, through our entry point in its plugin group."""
    import os

    import psutil

    (tmp_path / "host.py").write_text(HOST)
    host = subprocess.Popen([sys.executable, str(tmp_path / "host.py")], stdout=subprocess.PIPE, text=True)
    line = host.stdout.readline()
    while not line.strip().isdigit():  # vLLM may log to stdout first
        assert line, "the host ended before its engine process loaded vLLM's plugins"
        line = host.stdout.readline()
    engine = psutil.Process(int(line))  # its plugins are loaded
    os.kill(host.pid, signal.SIGKILL)
    host.wait()
    gone, alive = psutil.wait_procs([engine], timeout=15)
    for p in alive:
        p.kill()
    assert not alive, "the engine process outlived its host"


def test_every_bench_script_arms_die_with_parent_in_the_engines_it_spawns():
    """vLLM's engine core and worker are spawned processes that run the script's module again; if that module
    imports selfinstruct at its top they watch for their parent's end (above) whoever started the engine, the
    guard beside vllm_plugin's. bench/engine_dtype.py imported it inside a function: stopped while its child
    started an engine, the engine core lived on (before vllm_plugin)."""
    import ast

    for script in sorted((ROOT / "bench").glob("*.py")):
        tree = ast.parse(script.read_text(encoding="utf-8"))
        top = [n.names[0].name for n in tree.body if isinstance(n, ast.Import)]
        top += [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert any(m.split(".")[0] == "selfinstruct" for m in top), (
            f"{script.name}: no top-level selfinstruct import"
        )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_the_command_starts_ends_it_quietly(signum):
    """A SIGINT while the CLI was still importing printed a KeyboardInterrupt traceback (rc -2); a SIGTERM then
    ended it with no word and rc -15. The command's first module (the console script's) now exits 128 + signal."""
    code = f"import selfinstruct.entry, os, time; os.kill(os.getpid(), {int(signum)}); time.sleep(10)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (128 + signum, "", "")


def test_the_console_script_starts_at_the_entry_module():
    """pyproject's script must point at selfinstruct.entry, or the handlers above come too late."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"selfinstruct": "selfinstruct.entry:main"}
