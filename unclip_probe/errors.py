"""One exception type for bad input (docs/design.md §7).

Every public entry point answers bad input with a single sentence that names
the argument and what was expected. Subclassing ValueError keeps the usual
``except ValueError`` working; the CLI prints the sentence without a traceback.
"""
from __future__ import annotations

from difflib import get_close_matches
from typing import Iterable


class ProbeInputError(ValueError):
    """Bad input to a public entry point; the message is one sentence naming the argument."""


def bad_input(argument: str, problem: str) -> ProbeInputError:
    """Build the error for ``argument``: ``"<argument>: <problem>"``."""
    return ProbeInputError(f"{argument}: {problem}")


def one_of(value: object, choices: Iterable[str]) -> str:
    """Phrase 'expected one of ...' with close matches first when there are any."""
    choices = list(choices)
    close = get_close_matches(str(value), choices, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"got {value!r}, expected one of {', '.join(repr(c) for c in choices)}{hint}"
