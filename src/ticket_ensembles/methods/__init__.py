"""Methods are small strategies over the one training loop, registered by name."""
from __future__ import annotations

from ..errors import UserError
from .base import Method, RunContext

REGISTRY: dict[str, type[Method]] = {}


def register(name: str):
    def add(cls: type[Method]) -> type[Method]:
        REGISTRY[name] = cls
        cls.name = name
        return cls

    return add


def get_method(name: str) -> type[Method]:
    _import_builtin_methods()
    if name not in REGISTRY:
        raise UserError(f"unknown method {name!r}: choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _import_builtin_methods() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["Method", "RunContext", "register", "get_method", "REGISTRY"]
