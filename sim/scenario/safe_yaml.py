"""Bounded YAML: scenario files and `--set` values parsed with size, depth and duplicate-key limits.

PyYAML's safe loader builds Python objects only (no tags that run code), but it accepts
what no scenario needs and a hostile file exploits: megabytes of text (a 24 MB list takes
minutes and gigabytes to build), nesting thousands of levels deep (a RecursionError), aliases
that expand a few lines into billions of values, and repeated keys, of which the last
silently wins. `load` refuses each with a one-line `YAMLLimitError` naming the line.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "YAMLLimitError", "load", "one_line"]

MAX_BYTES = 1 << 20  # a scenario is a few kB; traces and data live in their own files
MAX_DEPTH = 32  # a scenario nests 5 levels (fleet.groups[].battery.recharge.windows[])
MAX_VALUES = 100_000  # scalars, lists and mappings after expanding aliases


class YAMLLimitError(ValueError):
    """The text breaks one of the limits above, or is not valid YAML ("not valid YAML: ..."); one line."""


def one_line(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line error as `line L, column C: problem (context)`."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return f"{where}{exc.problem or exc.context}{context}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.position + 1}: {exc.reason} (#x{exc.character:04x} is not allowed in YAML)"
    return " ".join(str(exc).split())


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts nesting while composing and refuses repeated mapping keys."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YAMLLimitError(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if seen:
                raise YAMLLimitError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first on line {first[key] + 1}); "
                    "the second would silently replace the first: merge them into one"
                )
            first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _joined_surrogates(loader: yaml.SafeLoader, node: ScalarNode) -> str:
    """A string scalar, with JSON-style surrogate pairs ("\\ud83d\\ude00") joined into one character."""
    text = loader.construct_scalar(node)
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise YAMLLimitError(f"line {node.start_mark.line + 1}: a string holds an unpaired UTF-16 surrogate") from None


_Loader.add_constructor("tag:yaml.org,2002:str", _joined_surrogates)


def _check_size(root: Node) -> None:
    """Refuse a document that expands (through aliases) to more than MAX_VALUES values, or refers to itself."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_VALUES:
                raise YAMLLimitError(
                    f"line {node.start_mark.line + 1}: expands to more than {MAX_VALUES:,} values "
                    "(through anchors and aliases); a scenario needs far fewer"
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YAMLLimitError(f"line {node.start_mark.line + 1}: an alias refers to the node that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    assert isinstance(node, ScalarNode)
    return []


def load(text: str) -> Any:
    """Parse one YAML document within the limits; YAMLLimitError (one line) otherwise."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise YAMLLimitError(
            f"{size / 2**20:.1f} MiB is more than a scenario may hold ({MAX_BYTES // 2**20} MiB); "
            "bandwidth and solar traces go in their own files (link_overrides.bandwidth_trace, recharge.trace_path)"
        )
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YAMLLimitError(f"not valid YAML: {one_line(exc)}") from None
    except RecursionError:  # e.g. deep nesting inside one scalar's construction; never expected
        raise YAMLLimitError(f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()
