"""selfinstruct: seeds -> prompts -> llm -> parse -> filters -> store -> sft."""

__version__ = "0.1.0"

import sys as _sys


def spawned_rerun() -> bool:
    """Whether this is a process multiprocessing spawned from ours (vLLM's engine core) running our main module
    again: then "__mp_main__" is that run and "__main__" still the child's own bootstrap; in any other process
    they are one module, or there is no "__mp_main__"."""
    rerun = _sys.modules.get("__mp_main__")
    return rerun is not None and rerun is not _sys.modules.get("__main__")


# Such a child must not outlive us (signals.die_with_parent).
if spawned_rerun():
    from selfinstruct.signals import die_with_parent

    die_with_parent()
