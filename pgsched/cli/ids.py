"""Short run ids for tables, and finding the runs an operator means.

UUIDv7 ids made in the same millisecond share their first 13 characters, so a fixed
8-character cut collides; tables show the shortest prefix (at least 8 characters) that tells
apart the rows shown, ending in ``…`` when it is cut. Such a prefix is accepted wherever an
id is (``resolve_id`` in workflows.py), and says so when it matches more than one run.
"""

from __future__ import annotations

from collections.abc import Iterable

MIN_LENGTH = 8
ELLIPSIS = "…"
SLACK = 4


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """Each id mapped to the prefix a table shows for it."""
    unique = set(ids)
    longest = max((len(i) for i in unique), default=0)
    length = MIN_LENGTH
    while length < longest and len({i[:length] for i in unique}) < len(unique):
        length += 1
    # An id only a few characters longer than the prefix is shown whole: cutting it would
    # save nothing.
    return {i: i if len(i) <= length + SLACK else i[:length] + ELLIPSIS for i in unique}
