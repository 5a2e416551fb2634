"""Command line: one module per command group, each thin (parse flags, call one function, print).

Modules register themselves on `app` when imported; heavy libraries (vllm, torch, transformers) are
imported inside the command bodies so `selfinstruct --help` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

from selfinstruct.cli.app import app, replace_unencodable

# Data-flow order: the help lists commands in the order a user meets them.
_ORDER = [
    "model",
    "seeds",
    "serve",
    "generate",
    "filter",
    "export",
    "audit",
    "readmit",
    "train",
    "eval",
    "run",
]


def _register() -> None:
    found = {m.name for m in pkgutil.iter_modules(__path__) if m.name != "app"}
    for name in [n for n in _ORDER if n in found] + sorted(found - set(_ORDER)):
        importlib.import_module(f"{__name__}.{name}")


_register()


def main() -> None:
    replace_unencodable()
    app()
