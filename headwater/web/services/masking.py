"""Secrets never leave the server: params and conf keys that name a secret, passwords in URLs,
and the values of those secrets wherever they appear (rendered fields, logs, source) become ``***``.

Which keys are secret follows Airflow's masker, on whole words: a key with a word of
:data:`SECRET_WORDS` or a pair of :data:`SECRET_PAIRS` (``api_password``, ``db_token``,
``AWS_SECRET_ACCESS_KEY``, ``apiKey`` ...). A DAG marks a param secret by naming it so.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
# A key is secret when one of its words is one of these (``db_password``, ``apiToken``,
# ``AWS_SECRET_ACCESS_KEY``), or it holds one of the pairs (``api_key``); whole words, so
# ``max_tokens`` or ``passenger_count`` are not masked.
SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "apikey", "credential", "credentials",
                          "authorization", "passphrase"})
SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key")})
# scheme://user:password@host -> scheme://user:***@host (SQLAlchemy, Kafka, HTTP URLs alike).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<pw>[^\s@/'\"]+)(?P<at>@)")
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_MIN_SECRET = 4  # shorter values would mask ordinary words everywhere


def is_secret_key(key: str) -> bool:
    """True when a param, conf or setting called ``key`` holds a secret."""
    words = [w.lower() for w in _WORDS.findall(key)]
    return any(w in SECRET_WORDS for w in words) or any(pair in SECRET_PAIRS for pair in itertools.pairwise(words))


def mask_urls(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}{m.group('at')}", text)


def secret_values(*mappings: Mapping[str, Any] | None) -> set[str]:
    """The string values held under secret keys (at any depth) and the passwords inside URLs."""
    found: set[str] = set()

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, secret or is_secret_key(str(k)))
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, secret)
        elif isinstance(value, str):
            if secret and len(value) >= _MIN_SECRET:
                found.add(value)
            found.update(m.group("pw") for m in _URL_PASSWORD.finditer(value) if len(m.group("pw")) >= _MIN_SECRET)

    for mapping in mappings:
        if mapping:
            walk(mapping, False)
    return found


def mask_mapping(value: Any, *, secret: bool = False) -> Any:
    """A copy of ``value`` (params, conf, metrics...) with secret keys' values and URL passwords masked."""
    if isinstance(value, Mapping):
        return {k: mask_mapping(v, secret=secret or is_secret_key(str(k))) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_mapping(v, secret=secret) for v in value]
    if secret and value is not None:
        return MASK
    if isinstance(value, str):
        return mask_urls(value)
    return value


class Masker:
    """Masks known secret values and URL passwords in free text (logs, rendered fields, source)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return mask_urls(text)
