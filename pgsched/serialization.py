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
import re
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from pgsched.errors import NotRegistered, SerializationError

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
    """The class a stored value names as ``module:qualname``, by the module name the
    process that stored it imported it under (``pgsched.loader`` loads a worker's app file
    under that same dotted name)."""
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise NotRegistered(
            f"cannot load the stored type {path} on this worker ({type(exc).__name__}: "
            f"{exc}). Deploy the code that defines it, and start the worker so it imports "
            f"that code under the same module name the enqueuing process used: "
            f"`pgsched worker {module_name}:app`, or `pgsched worker "
            f"{module_name.replace('.', '/')}.py` from the directory that holds it"
        ) from exc
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


#: Characters ``jsonb`` cannot hold: U+0000, and surrogates, which have no UTF-8 form.
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")


def _bad_string_path(value: Any, path: str) -> tuple[str, str] | None:
    """The path of the first string (key or value) holding an unstorable character, and
    that character."""
    if isinstance(value, str):
        match = _UNSTORABLE_CHAR.search(value)
        return (path, match.group()) if match else None
    if isinstance(value, BaseModel):
        return _bad_string_path(value.model_dump(mode="json"), path)
    for key, item, child in _children(value, path):
        if isinstance(key, str) and (match := _UNSTORABLE_CHAR.search(key)):
            return f"a key of {path}", match.group()
        found = _bad_string_path(item, child)
        if found is not None:
            return found
    return None


def _children(value: Any, path: str) -> Iterator[tuple[Any, Any, str]]:
    """(key, item, item's path) of a container; nothing for anything else."""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield index, item, f"{path}[{index}]"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key, item, f"{path}[{key!r}]"
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield f.name, getattr(value, f.name), f"{path}.{f.name}"


_Node = tuple[Any, Any, Any]  # (value, parent node, key): paths are built only when needed


def _too_deep(value: Any, what: str) -> SerializationError:
    """Why encoding recursed without end: a cycle (named by its path) or plain depth.

    Walks without recursion and with lazy paths, so a 100,000-deep value is cheap to explain.
    """
    on_path: dict[int, _Node] = {}
    done: set[int] = set()
    depth = deepest = 0
    stack: list[tuple[_Node, bool]] = [((value, None, None), False)]
    while stack:
        node, leaving = stack.pop()
        ident = id(node[0])
        if leaving:
            on_path.pop(ident, None)
            done.add(ident)
            depth -= 1
            continue
        if ident in done or not isinstance(node[0], (list, tuple, dict)) and not (
            dataclasses.is_dataclass(node[0]) and not isinstance(node[0], type)
        ):
            continue
        if ident in on_path:
            return SerializationError(
                f"{_path_of(node, what)} refers back to {_path_of(on_path[ident], what)} "
                "(a circular reference), which JSON cannot store; pass a copy without the "
                "cycle, or ids instead of the objects"
            )
        on_path[ident] = node
        depth += 1
        deepest = max(deepest, depth)
        stack.append((node, True))
        stack.extend(((item, node, key), False) for key, item, _ in _children(node[0], ""))
    return SerializationError(
        f"{what} is nested {deepest} levels deep, more than pgsched can store (about "
        f"{sys.getrecursionlimit() - 100}); flatten it, or store the data elsewhere and pass "
        "a reference"
    )


def _path_of(node: Any, what: str) -> str:
    keys = []
    while node is not None and node[1] is not None:
        keys.append(node[2])
        node = node[1]
    return what + "".join(f"[{key!r}]" for key in reversed(keys))


def _encode(value: Any, what: str) -> str:
    """JSON text that ``jsonb`` accepts, or SerializationError naming the bad part.

    The text is checked for NUL and surrogate escapes in one scan; only when one shows up
    (an emoji is written as an escaped surrogate pair, and is fine) is the value walked to
    find and name the culprit.
    """
    try:
        text = _ENCODER.encode(_to_json(value, what))
    except RecursionError:
        raise _too_deep(value, what) from None
    if "\\u0000" in text or "\\ud" in text:
        bad = _bad_string_path(value, what)
        if bad is not None:
            where, char = bad
            kind = "a NUL character" if char == "\x00" else "a lone surrogate"
            raise SerializationError(
                f"{where} contains {kind} (U+{ord(char):04X}), which PostgreSQL cannot store "
                "in jsonb; remove it, or pass binary data base64-encoded"
            )
    return text


def to_jsonable(value: Any, what: str = "value") -> Any:
    """Convert to JSON-compatible data, or raise SerializationError naming the bad part."""
    return json.loads(_encode(value, what))


def dumps(value: Any, what: str = "value") -> str:
    """JSON text for ``value``. Raises SerializationError (and nothing is written) for a type
    JSON lacks, a cycle, excessive nesting, or a string (anywhere, dict keys included) that
    holds U+0000 or a lone surrogate."""
    return _encode(value, what)


def from_jsonable(data: Any) -> Any:
    return _from_json(data)


def encode_inputs(args: tuple, kwargs: dict) -> str:
    """The ``inputs`` column of a run; the same checks as ``dumps``."""
    return f'{{"args":{_encode(list(args), "argument")},"kwargs":{_encode(kwargs, "keyword")}}}'


def decode_inputs(data: dict) -> tuple[tuple, dict]:
    return tuple(_from_json(data.get("args", []))), _from_json(data.get("kwargs", {}))
