"""Object keys (CONTRACT section 6): what a user may name an object."""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

from shardz_common.errors import ValidationFailed

MAX_KEY_BYTES = 1024


def _refuse(reason: str) -> ValidationFailed:
    return ValidationFailed(f"invalid key: {reason}", field="key")


def validate_key(key: str) -> str:
    """The key unchanged, or ValidationFailed naming the rule it breaks."""
    size = len(key.encode("utf-8", "surrogatepass"))
    if size == 0:
        raise _refuse("it is empty")
    if size > MAX_KEY_BYTES:
        raise _refuse(f"it is {size} bytes long; at most {MAX_KEY_BYTES} are allowed")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key):
        raise _refuse("it contains a control character")
    if not unicodedata.is_normalized("NFC", key):
        raise _refuse("it is not in Unicode normalization form C (NFC)")
    if key.startswith("/"):
        raise _refuse("it starts with '/'")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise _refuse("it has an empty, '.' or '..' segment")
    return key


def key_from_raw_path(raw_path: bytes, prefix: bytes) -> str:
    """The key exactly as the client wrote it: percent-decoded from the raw request path and
    read as strict UTF-8 (the framework's decoded path would turn bad bytes into U+FFFD)."""
    if not raw_path.startswith(prefix):
        raise _refuse("the path is not in canonical form")
    try:
        key = unquote_to_bytes(raw_path[len(prefix) :]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse("it is not valid UTF-8") from exc
    return validate_key(key)
