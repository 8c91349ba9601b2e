"""Run a function once a package's named modules are imported (a PEP 451 loader hook, like wrapt's post-import hooks).

``import hf_facerec`` must be cheap (the CLI's ``--help`` imports it; ``import transformers`` alone costs about a
second here), yet ``AutoModel``, ``AutoConfig`` and ``pipeline(...)`` must know the package's models and tasks
once it is imported. So registration waits until transformers' Auto or pipeline modules are loaded. It runs when
the outermost import of that package finishes, not inside it: transformers imports its Auto modules from the middle
of other modules, and registering there would meet them half-initialised.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings
from collections.abc import Callable


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loaders of a package's modules to count nested imports."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.watched: dict[str, list[Callable[[], None]]] = {}  # module name -> callbacks
        self.due: list[tuple[str, Callable[[], None]]] = []
        self.depth = 0  # imports of the package in progress
        self.running = False  # a callback's own imports must not start the next callback

    def find_spec(self, fullname, path, target=None):
        if not (fullname == self.package or fullname.startswith(self.package + ".")):
            return None
        for finder in sys.meta_path:  # the finder that would have found it without us
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader.exec_module = self._counted(fullname, spec.loader.exec_module)  # this spec's own loader
        return spec

    def _counted(self, fullname: str, execute):
        def exec_module(module):
            self.depth += 1
            try:
                execute(module)
            finally:
                self.depth -= 1
            self.due.extend((fullname, callback) for callback in self.watched.pop(fullname, ()))
            if self.depth == 0:
                self.run_due()

        return exec_module

    def run_due(self) -> None:
        if self.running:
            return
        self.running = True
        try:
            while self.due:  # in import order: the models before the pipelines that use them
                _run(*self.due.pop(0))
        finally:
            self.running = False
        if not self.watched and self in sys.meta_path:
            sys.meta_path.remove(self)


_FINDERS: dict[str, _AfterImportFinder] = {}


def _run(name: str, callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception as error:  # never break the user's transformers import because of this package
        warnings.warn(f"hf_facerec could not register with {name}: {error!r}", RuntimeWarning, stacklevel=2)


def after_import(name: str, callback: Callable[[], None]) -> None:
    """Call `callback` once module `name` is imported: now if it already is, else when the import that loads it ends."""
    if name in sys.modules:
        _run(name, callback)
        return
    package = name.split(".")[0]
    finder = _FINDERS.setdefault(package, _AfterImportFinder(package))
    finder.watched.setdefault(name, []).append(callback)
    if finder not in sys.meta_path:
        sys.meta_path.insert(0, finder)
