"""Importing selfinstruct must not load numba: vLLM's CPU workers re-import the parent's `__main__` and then
scan every loaded module for Triton kernels to replace, and that scan fails on llvmlite's FFI objects
("'_lib_fn_wrapper' object has no attribute 'get'"). A script that imports our modules at the top and then
starts an engine (bench/paper.py, any user's) could not start one while `filters.rouge` loaded numba."""

from __future__ import annotations

import subprocess
import sys

MODULES = (
    "selfinstruct.config",
    "selfinstruct.filters",
    "selfinstruct.generate",
    "selfinstruct.bootstrap",
    "selfinstruct.pipeline",
    "selfinstruct.evaluation.ifeval_paired",
    "selfinstruct.llm.vllm_engine",
)


def test_importing_selfinstruct_loads_no_numba_until_the_index_probes():
    """One fresh interpreter: the pytest process has loaded numba long before, so only a new one can tell."""
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "loaded = lambda: sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite'))[:3]\n"
        + "print(loaded())\n"
        + "from selfinstruct.filters.rouge import RougeIndex\n"
        + "index = RougeIndex(0.7)\n"
        + "index.add('a', 'write a poem about the sea')\n"
        + "hit = index.top('write a poem about the sea today')\n"
        + "print(hit is not None and hit.score >= 0.7, 'numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "True True"], out
