"""JSON codec for inputs, step outputs and results.

Values are stored as ``jsonb`` so operators can read them with SQL. Types JSON lacks are
wrapped in a tagged object ``{"__pgsched__": tag, ...}``. Decoding never unpickles and only
rebuilds classes that are dataclasses or pydantic models, so data read back from the
database cannot make the worker run arbitrary constructors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import importlib
import json
import uuid
from typing import Any

from pydantic import BaseModel

from pgsched.errors import SerializationError

TAG = "__pgsched__"


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


#: Values stored as they are; exact types, so a subclass (an IntEnum, say) takes the slow path.
_PLAIN = frozenset({str, int, bool, type(None)})
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _to_json(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {TAG: "float", "value": repr(value)}
        return value
    if isinstance(value, (list, tuple)):
        if all(type(item) in _PLAIN for item in value):  # most job arguments: ids, names
            items = list(value)
        else:
            items = [_to_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else {TAG: "tuple", "items": items}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{path} has a non-string key {key!r}; JSON objects need string keys"
                )
            out[key] = _to_json(item, f"{path}[{key!r}]")
        if TAG in out:
            raise SerializationError(f"{path} uses the reserved key {TAG!r}")
        return out
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "value": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {TAG: "timedelta", "value": value.total_seconds()}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "value": str(value)}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, BaseModel):
        return {
            TAG: "pydantic",
            "type": _class_path(type(value)),
            "value": value.model_dump(mode="json"),
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _to_json(getattr(value, f.name), f"{path}.{f.name}")
                  for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "type": _class_path(type(value)), "value": fields}
    raise SerializationError(
        f"{path} is a {type(value).__name__}, which pgsched cannot store as JSON. "
        "Pass plain data (str, int, float, bool, None, list, dict, datetime, UUID, Decimal, "
        "a dataclass or a pydantic model), for example an id instead of the object."
    )


def _load_class(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise SerializationError(f"{path} is not a class")
    return obj


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {key: _from_json(item) for key, item in value.items()}
    raw = value.get("value")
    if tag == "tuple":
        return tuple(_from_json(item) for item in value["items"])
    if tag == "float":
        return float(raw)
    if tag == "datetime":
        return dt.datetime.fromisoformat(raw)
    if tag == "date":
        return dt.date.fromisoformat(raw)
    if tag == "time":
        return dt.time.fromisoformat(raw)
    if tag == "timedelta":
        return dt.timedelta(seconds=raw)
    if tag == "uuid":
        return uuid.UUID(raw)
    if tag == "decimal":
        return decimal.Decimal(raw)
    if tag == "pydantic":
        cls = _load_class(value["type"])
        if not issubclass(cls, BaseModel):
            raise SerializationError(f"{value['type']} is not a pydantic model")
        return cls.model_validate(raw)
    if tag == "dataclass":
        cls = _load_class(value["type"])
        if not dataclasses.is_dataclass(cls):
            raise SerializationError(f"{value['type']} is not a dataclass")
        return cls(**{key: _from_json(item) for key, item in raw.items()})
    raise SerializationError(f"unknown stored type tag {tag!r}; upgrade pgsched on this worker")


def to_jsonable(value: Any, what: str = "value") -> Any:
    """Convert to JSON-compatible data, or raise SerializationError naming the bad part."""
    return _to_json(value, what)


def dumps(value: Any, what: str = "value") -> str:
    return _ENCODER.encode(_to_json(value, what))


def from_jsonable(data: Any) -> Any:
    return _from_json(data)


def encode_inputs(args: tuple, kwargs: dict) -> str:
    return _ENCODER.encode(
        {"args": _to_json(list(args), "argument"), "kwargs": _to_json(kwargs, "keyword")}
    )


def decode_inputs(data: dict) -> tuple[tuple, dict]:
    return tuple(_from_json(data.get("args", []))), _from_json(data.get("kwargs", {}))
