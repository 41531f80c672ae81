"""Post-import hooks: run a callback the moment a watched module finishes importing.

:class:`PostImportHooks` is a ``sys.meta_path`` finder.  For a watched name it asks the other
finders for the module's spec and wraps the spec's loader so that, right after the module's
code has run, every callback registered for that name is called with the module.  A module
imported already when a callback is registered gets the callback at once.  Nothing is
imported here; unwatched imports cost one dictionary lookup.

The wrapped loader puts the original loader back on ``module.__loader__`` and
``module.__spec__.loader`` before the module runs, so the module looks untouched.  A callback
that raises is ignored (the import itself must never fail because of this plugin); its
error is kept in :attr:`PostImportHooks.errors`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = ["PostImportHooks"]

Hook = Callable[[ModuleType], None]


class PostImportHooks:
    """A meta-path finder calling hooks after watched modules are imported.

    :meth:`install` puts it first on ``sys.meta_path``, :meth:`uninstall` removes it.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, list[Hook]] = {}
        self._local = threading.local()
        self.errors: list[str] = []

    # -- registration ------------------------------------------------------------------
    def register(self, name: str, hook: Hook) -> None:
        """Call ``hook(module)`` once ``name`` is imported (now, if it is already)."""
        self._hooks.setdefault(name, []).append(hook)
        module = sys.modules.get(name)
        if module is not None and not _initializing(module):
            self._call(hook, module)

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)

    @property
    def installed(self) -> bool:
        return self in sys.meta_path

    # -- the finder protocol -------------------------------------------------------------
    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self._hooks:
            return None
        busy: set[str] = self._local.__dict__.setdefault("busy", set())
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _NotifyingLoader(spec.loader, self, fullname)  # type: ignore[assignment]
        return spec

    def invalidate_caches(self) -> None:
        return None

    # -- running hooks -------------------------------------------------------------------
    def _loaded(self, name: str, module: ModuleType) -> None:
        for hook in tuple(self._hooks.get(name, ())):
            self._call(hook, module)

    def _call(self, hook: Hook, module: ModuleType) -> None:
        try:
            hook(module)
        except Exception as exc:  # never break the user's import
            self.errors.append(f"post-import hook for {module.__name__} failed: {exc!r}")


def _initializing(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _find_with_others(
    me: PostImportHooks, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> ModuleSpec | None:
    for finder in tuple(sys.meta_path):
        if finder is me:
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec: ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


class _NotifyingLoader:
    """Delegates to the real loader; tells the hooks when the module has run."""

    def __init__(self, loader: Any, hooks: PostImportHooks, name: str) -> None:
        self._loader = loader
        self._hooks = hooks
        self._name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        self._loader.exec_module(module)
        self._hooks._loaded(self._name, sys.modules.get(self._name, module))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
