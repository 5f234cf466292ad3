"""Finding the user's App from ``module:attr`` or a file path, as ``pgsched worker APP`` does."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from pgsched.app import App
from pgsched.errors import ConfigurationError


def load_app(target: str) -> App:
    path = Path(target.split(":", 1)[0])
    attr = target.split(":", 1)[1] if ":" in target and not target.endswith(".py") else None
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise ConfigurationError(f"app file {path} does not exist")
        sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
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
