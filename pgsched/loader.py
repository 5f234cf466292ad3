"""Finding the user's App from ``module:attr`` or a file path, as ``pgsched worker APP`` does.

A file is imported under the dotted name a client importing it would use (``billing/tasks.py``
as ``billing.tasks``), not under its bare file name. Stored dataclass and pydantic values name
their type by module (``billing.tasks:Invoice``), and the package's own modules import it
by that name too (``from billing.tasks import app``): loaded under a second name, it would be
a second module with a second App and second classes, and ``billing`` itself might not even
be importable from the worker.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pgsched.app import App
from pgsched.errors import ConfigurationError


def load_app(target: str) -> App:
    path = Path(target.split(":", 1)[0])
    attr = target.split(":", 1)[1] if ":" in target and not target.endswith(".py") else None
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise ConfigurationError(f"app file {path} does not exist")
        module = _load_file(path.resolve())
    else:
        module_name, _, attr = target.partition(":")
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"cannot import {module_name!r} ({exc}); pass module:attr or a .py file path"
            ) from None
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise ConfigurationError(f"{target}: {attr!r} is not a pgsched.App")
        return app
    found = [value for value in vars(module).values() if isinstance(value, App)]
    if len(found) != 1:
        raise ConfigurationError(
            f"{target} defines {len(found)} pgsched.App objects; name one with {target}:attr"
        )
    return found[0]


def _load_file(path: Path) -> ModuleType:
    """Import ``path`` under its dotted name when it has one that leads back to this very
    file, else under its file name as a top-level module. Either way the file name is an
    alias too, and the file's directory is importable (sibling modules, as before)."""
    sys.path.insert(0, str(path.parent))
    dotted = _dotted_name(path)
    if dotted is not None:
        root, name = dotted
        sys.path.insert(0, str(root))
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # a parent name is taken by another package
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).resolve() == path:
            module = importlib.import_module(name)
            sys.modules.setdefault(path.stem, module)
            return module
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _dotted_name(path: Path) -> tuple[Path, str] | None:
    """(the directory to import from, the module name) for a file: the chain of packages
    (directories with ``__init__.py``) that hold it; outside any, its path relative to the
    working directory (namespace packages, as ``python -c "import billing.tasks"`` there
    would find it)."""
    parts = [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    if len(parts) == 1:
        cwd = Path.cwd().resolve()
        try:
            parts = [*path.parent.relative_to(cwd).parts, path.stem]
        except ValueError:
            return None
        root = cwd
    if path.stem == "__init__" or not all(part.isidentifier() for part in parts):
        return None
    return root, ".".join(parts)
