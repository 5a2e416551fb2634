"""Reading the YAML a user hands us (recipes, SFT configs): bounded, strict, and with line numbers kept.

PyYAML's safe loader still lets a few bytes stand for millions of values (aliases of aliases: a 0.7 KB recipe
with six levels expanded to 19.8 MB, issue 11), takes the last of two equal keys without a word, and raises
tracebacks for deep nesting or huge integers. Here the document is composed first, its size with every alias
expanded is counted (refused past MAX_VALUES), equal keys are refused with both lines, and each dotted key's
line is kept so a later validation error can name the line too.

This module knows nothing of what a recipe holds; config.py validates the values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from selfinstruct.errors import InputError
from selfinstruct.jsonl import decode, read_bounded

MAX_BYTES = 2**20  # our recipes are about 2 KB
MAX_VALUES = 10_000  # values after expanding aliases; a full recipe has about 120
MAX_DEPTH = 64  # a recipe nests 4 levels; what reads it later (flatten, json.dumps) recurses per level
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as e:  # int("9" * 5000) and friends: name the value's line
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({str(e).split(':')[0]})", node.start_mark
            ) from None


def read_yaml(path: str | Path, what: str) -> tuple[Any, dict[str, int]]:
    """The document in `path` and the 1-based line of each dotted key ("loop.target") in it."""
    text = decode(path, read_bounded(path, MAX_BYTES, what))
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[str, int] = {}
        _Walk(path, lines).size(node, "")
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "cannot be read"
        raise InputError(path, f"malformed YAML ({problem})", line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise InputError(path, f"malformed YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise InputError(path, "malformed YAML (nested too deeply)") from None
    finally:
        loader.dispose()


class _Walk:
    """Counts a composed document's values with aliases expanded, memoised per node (aliases share nodes),
    refusing cycles, sizes over MAX_VALUES and repeated keys; records each key's line on the way."""

    def __init__(self, path: str | Path, lines: dict[str, int]):
        self.path, self.lines = path, lines
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()

    def size(self, node: Node, at: str, depth: int = 1) -> int:
        if depth > MAX_DEPTH:
            raise InputError(
                self.path, f"nested deeper than {MAX_DEPTH} levels (the nesting limit)", line=_line(node)
            )
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.open:
            raise InputError(self.path, "an alias refers to itself (a recursive structure)", line=_line(node))
        self.open.add(key)
        n = 1
        if isinstance(node, SequenceNode):
            for i, child in enumerate(node.value):
                n += self.size(child, f"{at}[{i}]", depth + 1)
        elif isinstance(node, MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                name = k.value if isinstance(k, ScalarNode) else None
                if name is not None and k.tag != _MERGE:
                    if name in seen:
                        raise InputError(
                            self.path,
                            f"duplicate key (first at line {seen[name]})",
                            line=_line(k),
                            field=f"{at}.{name}".lstrip("."),
                        )
                    seen[name] = _line(k)
                    self.lines.setdefault(f"{at}.{name}".lstrip("."), _line(k))
                value_at = f"{at}.{name}".lstrip(".") if name else at
                n += self.size(k, at, depth + 1) + self.size(v, value_at, depth + 1)
        self.open.discard(key)
        if n > MAX_VALUES:
            raise InputError(
                self.path,
                f"holds more than {MAX_VALUES:,} values once aliases are expanded (refused: an alias bomb?)",
                line=_line(node),
                field=at or None,
            )
        self.sizes[key] = n
        return n


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def line_of(lines: dict[str, int], field: str) -> int | None:
    """The line of `field` or of its nearest parent that is in the file (a missing key's section)."""
    parts = field.split(".")
    while parts:
        if (line := lines.get(".".join(parts))) is not None:
            return line
        parts.pop()
    return None
