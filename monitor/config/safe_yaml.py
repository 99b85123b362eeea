"""YAML that cannot expand into more than a configuration needs.

Aliases (``*name``) make PyYAML's ``safe_load`` share one object between the places that
refer to it, so a short document of nested aliases (a "billion laughs") loads quickly but
stands for billions of values, and whatever walks it afterwards (validation, printing
the effective configuration) takes minutes and gigabytes. ``monitor.yaml`` often lives in
a ConfigMap edited by many hands; :func:`load_yaml` composes the document first, counts
the nodes it would have with every alias expanded (each node once, so the count is
cheap) and refuses a document over :data:`MAX_NODES` or with more than
:data:`MAX_ALIASES` aliases, before anything is built.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_ALIASES", "MAX_NODES", "YAMLLimitError", "load_yaml"]

# A full monitor.yaml with every section and a hundred columns is a few thousand nodes.
MAX_NODES = 100_000
MAX_ALIASES = 1_000


class YAMLLimitError(ValueError):
    """A document that would expand past the limits; the message says which."""


class _Loader(yaml.SafeLoader):
    """The safe loader, counting the aliases it composes."""

    def __init__(self, stream: str, max_aliases: int) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.max_aliases = max_aliases

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.max_aliases:
                raise YAMLLimitError(
                    f"the document uses more than {self.max_aliases:,} aliases (*name); "
                    "write the values out"
                )
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


def load_yaml(text: str, *, max_nodes: int = MAX_NODES, max_aliases: int = MAX_ALIASES) -> Any:
    """``yaml.safe_load(text)``, refusing documents that expand past the limits.

    Raises :class:`YAMLLimitError` for too many nodes or aliases, a recursive alias or
    nesting too deep to compose, and ``yaml.YAMLError`` for invalid YAML.
    """
    loader = _Loader(text, max_aliases)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YAMLLimitError("the document is nested too deeply") from None
        if node is None:
            return None
        _check_size(node, max_nodes)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_size(root: yaml.Node, max_nodes: int) -> None:
    """Refuse ``root`` when it expands past ``max_nodes``: each node's expanded size is
    computed once (post-order, no recursion), so the check is linear in the document."""
    size: dict[int, int] = {}
    on_path: set[int] = set()  # the ancestors of the node being expanded
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            total = 1
            for child in _children(node):
                total += size[id(child)]
                if total > max_nodes:
                    raise YAMLLimitError(
                        f"the document expands to more than {max_nodes:,} values once its "
                        "aliases (*name) are resolved (nested aliases: a 'billion laughs' "
                        "document?); write the values out"
                    )
            size[key] = total
            on_path.discard(key)
            continue
        if key in size:
            continue
        if key in on_path:
            raise YAMLLimitError("an alias refers to a node that contains it (recursive)")
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) not in size:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
