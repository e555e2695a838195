"""Keeping a test fake the shape of the real seam it stands in for."""

from __future__ import annotations

import inspect
from typing import Any


def seam_methods(protocol: type) -> list[str]:
    """The methods a Protocol class declares itself (not those typing adds)."""
    return sorted(name for name, value in vars(protocol).items()
                  if callable(value) and not name.startswith("_"))


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter but self: annotations differ between a fake and
    its seam only in the names they use (FakeLink for Link), so they are not compared."""
    params = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default) for p in params]


def shape_differences(fake: type, protocol: type) -> list[str]:
    """What keeps `fake` from being called the way `protocol` is: a method it lacks, or one
    whose parameters (names, kinds, defaults) differ. Extra methods of the fake are its own."""
    problems = []
    for name in seam_methods(protocol):
        mine = getattr(fake, name, None)
        if mine is None:
            problems.append(f"{fake.__name__} lacks {name}()")
        elif _parameters(mine) != _parameters(getattr(protocol, name)):
            problems.append(f"{fake.__name__}.{name}{inspect.signature(mine)} is not "
                            f"{protocol.__name__}.{name}{inspect.signature(getattr(protocol, name))}")
    return problems
