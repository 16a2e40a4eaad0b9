"""Names a user gives and names a message gives back.

Every registry (models, heads, recipes, presets, data sources, precisions, ...) is looked
up here, so an unknown name always fails the same way, with the known names listed. And an
error's advice names a setting as the user spells it (``Advice``): the keyword or the
notebook's form field in Python, the flag on the command line."""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
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
    ``e.cli()`` the command line's flag (``--takeover``).

    ``message`` is a plain string, or, when the message names settings, a function of the
    settings' words that returns it: ``Advice(lambda lr: f"{lr} must be > 0", lr=setting("lr"))``,
    each setting given as (Python words, command-line words) or made by ``setting``. Both
    messages are built here, once each, and never formatted again: a brace in a path or a
    value is just a brace."""

    def __init__(self, message: str | Callable[..., str], **settings: tuple[str, str]):
        if isinstance(message, str):
            if settings:
                raise TypeError("Advice: give the message as a function of the settings' words "
                                "(lambda name: f\"...{name}...\"), not a template")
            python = cli = message
        else:
            python = message(**{k: words[0] for k, words in settings.items()})
            cli = message(**{k: words[1] for k, words in settings.items()})
        super().__init__(python)
        self._cli = cli

    def cli(self) -> str:
        return self._cli


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
