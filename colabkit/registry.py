"""Choosing by name: every registry (models, heads, recipes, presets, data sources,
precisions, ...) is looked up here, so an unknown name always fails the same way, with
the known names listed."""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T] | Collection[str], name: str, what: str) -> T | str:
    """``table[name]`` (or ``name`` itself when ``table`` is a collection of names), or a
    ``ValueError``: "unknown <what> 'x'; known: [...]"."""
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; known: {sorted(table)}")
    return table[name] if isinstance(table, Mapping) else name


def check_keys(given: Iterable[str], known: Iterable[str], what: str) -> None:
    """A ``ValueError`` naming the keys of ``given`` that are not ``known``:
    "unknown <what>(s) [...]; known: [...]"."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {known}")
