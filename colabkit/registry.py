"""Names a user gives and names a message gives back.

Every registry (models, heads, recipes, presets, data sources, precisions, ...) is looked
up here, so an unknown name always fails the same way, with the known names listed. And an
error's advice names a setting as the user spells it (``Advice``): the keyword or the
notebook's form field in Python, the flag on the command line."""
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


class Advice(RuntimeError):
    """An error whose advice names a setting, spelled where the user is: ``str(e)`` names
    the notebook's form field and the keyword (``TAKEOVER``, ``takeover=True``),
    ``e.cli()`` the command line's flag (``--takeover``). ``template`` holds ``{name}`` for
    each setting, given as (Python words, command-line words), or made by ``setting``."""

    def __init__(self, template: str, **settings: tuple[str, str]):
        self.template, self.settings = template, settings
        super().__init__(template.format(**{k: v[0] for k, v in settings.items()})
                         if settings else template)

    def cli(self) -> str:
        if not self.settings:
            return self.template
        return self.template.format(**{k: v[1] for k, v in self.settings.items()})


class SettingError(Advice, ValueError):
    """A setting's value is not allowed; the message names the setting (``Advice``)."""


def setting(name: str, *value) -> tuple[str, str]:
    """A setting as (Python words, command-line words): ``setting("batch_size")`` is
    ``("batch_size", "--batch-size")``, ``setting("epochs", 300)`` is ``("epochs=300",
    "--epochs 300")``. The flag of every ``Experiment`` field and ``train`` keyword is its
    name with dashes."""
    flag = "--" + name.replace("_", "-")
    if not value:
        return name, flag
    return f"{name}={value[0]!r}", f"{flag} {value[0]}"


def check_keys(given: Iterable[str], known: Iterable[str], what: str) -> None:
    """A ``ValueError`` naming the keys of ``given`` that are not ``known``:
    "unknown <what>(s) [...]; known: [...]"."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {known}")
