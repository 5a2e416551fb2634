"""selfinstruct: seeds -> prompts -> llm -> parse -> filters -> store -> sft."""

__version__ = "0.1.0"

import sys as _sys

# A process that multiprocessing spawned from ours (vLLM's engine core) imports this package again with our main
# module: it must not outlive us (signals.die_with_parent).
# While a spawned child runs our main module again, "__mp_main__" is that run and "__main__" is still the child's
# own bootstrap; in any other process they are one module, or there is no "__mp_main__".
_rerun = _sys.modules.get("__mp_main__")
if _rerun is not None and _rerun is not _sys.modules.get("__main__"):
    from selfinstruct.signals import die_with_parent

    die_with_parent()
