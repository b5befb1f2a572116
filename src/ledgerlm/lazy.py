"""Package names that load their module on first use (PEP 562): importing a package costs nothing until one of
its names is used, so a command imports only what it runs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_names(package: str, names: Mapping[str, str | tuple[str, str]]) -> Callable[[str], object]:
    """The module `__getattr__` of `package`: each public name maps to its submodule, or to (submodule,
    attribute) where the two differ; a name is imported once and then kept in the package."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = (target, name) if isinstance(target, str) else target
        value = getattr(import_module(f"{package}.{module}"), attribute)
        namespace[name] = value
        return value

    return __getattr__
