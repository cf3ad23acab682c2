"""Which class a behaviour names now, after any hot reload of its module.

A class object is fixed when it is created; a hot reload (``Node.reload``)
re-executes its module and binds the name to a new class. Whatever keeps a
class to start processes later (a supervisor's child spec) asks
:func:`current_class` at each start, so that children started after a reload
run the new code. Pure lookups; no state of its own.
"""

from __future__ import annotations

import sys
from typing import TypeVar

__all__ = ["current_class"]

T = TypeVar("T", bound=type)


def current_class(cls: T) -> T:
    """The class now bound to ``cls``'s module and qualified name, if it is
    a subclass of what ``cls`` derives from directly; else ``cls`` itself
    (a class defined in a function, or a name rebound to something else)."""
    module = sys.modules.get(cls.__module__)
    found: object = module
    for part in cls.__qualname__.split("."):
        if part == "<locals>":
            return cls
        found = getattr(found, part, None)
        if found is None:
            return cls
    if found is cls or not isinstance(found, type):
        return cls
    bases = [b for b in cls.__bases__ if b is not object]
    if all(issubclass(found, b) for b in bases):
        return found  # type: ignore[return-value]
    return cls
