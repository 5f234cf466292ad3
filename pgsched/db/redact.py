"""Keeping database passwords out of every output: logs, errors, CLI, health and metrics.

Two mechanisms, because either alone leaks:

* ``mask_url`` rewrites a URL or key=value DSN with its password replaced. It works on the
  text, not on a parse, so a malformed URL (an empty user, a bad ``%`` escape, an unencoded
  ``@`` or ``/`` in the password, an unquoted space) is masked too: in a URL everything
  between the first ``:`` after ``://`` and the *last* ``@`` counts as password.
* ``scrub`` removes the passwords of every DSN this process has seen (``remember``) from any
  text. libpq's own messages quote fragments of a DSN it could not parse (``missing "="
  after "PW"``, ``failed to resolve host 'retPW@db'``, a password fragment read as a port),
  which no pattern can recognise as a password; only knowing the secret can.

The secrets are kept in memory only, in the forms they can take in output: raw,
percent-decoded, and escaped as JSON and ``repr`` would escape them, plus their fragments
between URL delimiters.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import unquote

MASK = "***"
#: Shorter passwords and fragments are not scrubbed from free text: "ab" would eat ordinary
#: words. (They are still masked wherever they appear as a DSN's password.)
MIN_FRAGMENT = 3

_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")
#: A keyword DSN's password: a quoted value (with backslash escapes), or an unquoted one that
#: runs until the next ``keyword=`` (an unquoted space is a mistake libpq reports, quoting the
#: rest of the password in its message).
_KV_PASSWORD = re.compile(
    r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|.*?)(?=\s+[A-Za-z_]+\s*=|\s*$)"
)
# Patterns for text that may hold a DSN nobody registered.
_URL_CREDENTIALS = re.compile(r"(://[^\s:/@'\"]*:)[^\s'\"]*@")
_TEXT_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&'\"]+)")
_FRAGMENT_SPLIT = re.compile(r"[@:/?#%&=\s'\"\\]+")
_QUOTED = re.compile(r"\"([^\"]*)\"|'([^']*)'")

_lock = threading.Lock()
_secrets: set[str] = set()
_forms: list[str] = []  # every form of every secret, longest first


def _url_password(dsn: str) -> str | None:
    """The raw password span of a URL: after the user's ``:``, up to the last ``@``."""
    rest = _SCHEME.sub("", dsn, count=1)
    if "@" not in rest:
        return None
    credentials = rest[: rest.rindex("@")]
    if ":" not in credentials:
        return None
    return credentials.split(":", 1)[1] or None


def passwords(dsn: str) -> list[str]:
    """Every password a URL or key=value DSN carries, as written in it (malformed too)."""
    found: list[str] = []
    if _SCHEME.match(dsn):
        span = _url_password(dsn)
        if span:
            found.append(span)
        found.extend(m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(dsn))
    else:
        for match in _KV_PASSWORD.finditer(dsn):
            value = match.group(2).strip()
            if value.startswith("'"):
                value = value[1:-1] if value.endswith("'") and len(value) > 1 else value[1:]
                found.append(re.sub(r"\\(.)", r"\1", value))
            found.append(value)
    return [p for p in found if p]


def _forms_of(secret: str) -> set[str]:
    """The ways a secret can appear in output: as is, decoded, JSON- and repr-escaped, and
    the pieces a parser might have cut it into."""
    bases = {secret, unquote(secret, errors="replace")}
    forms = set(bases)
    for base in bases:
        forms.add(json.dumps(base)[1:-1])
        forms.add(repr(base)[1:-1])
        forms.update(_FRAGMENT_SPLIT.split(base))
    return {form for form in forms if len(form) >= MIN_FRAGMENT}


def remember(dsn: str | None) -> None:
    """Scrub this DSN's password from all later output of this process."""
    if not dsn:
        return
    new = [p for p in passwords(dsn) if p not in _secrets]
    if not new:
        return
    global _forms
    with _lock:
        forms = set(_forms)
        for secret in new:
            _secrets.add(secret)
            forms |= _forms_of(secret)
        _forms = sorted(forms, key=len, reverse=True)


def scrub(text: str) -> str:
    """The text with every remembered password and every recognisable DSN password masked."""
    text = _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _TEXT_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def mask_url(dsn: str) -> str:
    """The DSN with its password replaced, safe for logs and error messages.

    Also remembers the password, so it is scrubbed from any later log line or error text.
    """
    remember(dsn)
    if _SCHEME.match(dsn):
        head = _SCHEME.match(dsn).group(0)  # type: ignore[union-attr]
        rest = dsn[len(head):]
        if "@" in rest:
            at = rest.rindex("@")
            credentials, tail = rest[:at], rest[at:]
            if ":" in credentials:
                credentials = credentials.split(":", 1)[0] + ":" + MASK
            rest = credentials + tail
        masked = head + _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, rest)
    else:
        masked = _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn)
    return scrub(masked)


def _drop_quoted(match: re.Match[str]) -> str:
    inner = match.group(1) if match.group(1) is not None else match.group(2)
    return match.group(0) if len(inner) < 2 else match.group(0)[0] + "…" + match.group(0)[0]


def error_reason(exc: BaseException, dsn: str | None = None, *, malformed: bool = False) -> str:
    """The first line of a driver error, safe to show; ``dsn`` is the one that failed.

    For a DSN libpq could not parse (``malformed``), every quoted fragment is dropped too:
    libpq quotes the part it choked on, which may be any piece of the password.
    """
    remember(dsn)
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    if malformed:
        line = _QUOTED.sub(_drop_quoted, line)
    return scrub(line)
