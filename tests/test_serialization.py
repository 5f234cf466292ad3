"""Inputs and results are JSON: extra types round-trip, anything else is refused up front."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import uuid

import pytest
from pydantic import BaseModel

from pgsched.errors import SerializationError
from pgsched.serialization import decode_inputs, dumps, encode_inputs, from_jsonable


@dataclasses.dataclass
class Address:
    city: str
    since: dt.date


class Customer(BaseModel):
    name: str
    balance: decimal.Decimal


def test_extra_types_round_trip_through_json():
    value = {
        "when": dt.datetime(2026, 3, 29, 2, 30, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 1, 2),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "amount": decimal.Decimal("10.10"),
        "pair": (1, "a"),
        "address": Address("Berlin", dt.date(2020, 5, 1)),
        "customer": Customer(name="Ada", balance=decimal.Decimal("3.50")),
        "nested": [{"x": None, "y": 1.5, "z": True}],
    }
    assert from_jsonable(json.loads(dumps(value))) == value


def test_inputs_round_trip():
    args, kwargs = decode_inputs(json.loads(encode_inputs((1, "a"), {"at": dt.date(2026, 1, 1)})))
    assert args == (1, "a") and kwargs == {"at": dt.date(2026, 1, 1)}


class Level(enum.IntEnum):
    HIGH = 2


def test_plain_lists_keep_every_check_of_their_items():
    """Lists of plain scalars skip the per-item walk; anything else in them still gets it."""
    args = (1, "a", None, True, [float("nan"), dt.date(2026, 1, 1)], [Level.HIGH])
    decoded, _ = decode_inputs(json.loads(encode_inputs(args, {})))
    assert decoded[:4] == (1, "a", None, True) and decoded[5] == [2]
    assert decoded[4][0] != decoded[4][0] and decoded[4][1] == dt.date(2026, 1, 1)
    with pytest.raises(SerializationError, match=r"argument\[1\]\[0\] is a object"):
        encode_inputs((1, [object()]), {})


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (object(), "argument[0] is a object"),
        ({1: "x"}, "non-string key 1"),
        ({"__pgsched__": "x"}, "reserved key"),
        ([lambda: 1], "argument[0][0] is a function"),
    ],
)
def test_unstorable_values_are_refused_with_the_path_to_them(value, fragment):
    with pytest.raises(SerializationError) as error:
        encode_inputs((value,), {})
    assert fragment in str(error.value)


def test_decoding_never_builds_arbitrary_classes():
    stored = {"__pgsched__": "dataclass", "type": "subprocess:Popen", "value": {"args": "id"}}
    with pytest.raises(SerializationError, match="not a dataclass"):
        from_jsonable(stored)
