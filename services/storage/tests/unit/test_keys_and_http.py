"""Pure rules of the storage service: keys, byte ranges, entity tags, link signatures."""

from __future__ import annotations

import uuid

import pytest

from shardz_common.errors import ValidationFailed
from shardz_storage.domain import presign
from shardz_storage.domain.http import (
    ByteRange,
    RangeNotSatisfiable,
    attachment,
    content_type,
    etag_matches,
    parse_range,
)
from shardz_storage.domain.keys import key_from_raw_path, validate_key

PREFIX = b"/v1/storage/objects/"


@pytest.mark.parametrize(
    "key",
    ["a", "dir/file.txt", "é" * 512, "with space/and+plus", "emoji 🙂", "a.b/..c/d.."],
)
def test_good_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "a//b",
        "a/",
        ".",
        "..",
        "a/./b",
        "a/../b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "a\u0085b",
        "e\u0301",
        "é" * 512 + "x",
        "k" * 1025,
    ],
)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationFailed):
        validate_key(key)


def test_keys_come_from_the_raw_path_as_strict_utf8() -> None:
    assert key_from_raw_path(PREFIX + b"a%2Fb/c%20d", PREFIX) == "a/b/c d"
    assert key_from_raw_path(PREFIX + b"caf%C3%A9", PREFIX) == "café"
    for raw in (b"bad%FF", b"%2e%2e/x", b"/abs", b"a%00b"):
        with pytest.raises(ValidationFailed):
            key_from_raw_path(PREFIX + raw, PREFIX)
    with pytest.raises(ValidationFailed):
        key_from_raw_path(b"/v1/storage/%6Fbjects/x", PREFIX)


def test_ranges() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == ByteRange(0, 9)
    assert parse_range("bytes=90-", 100) == ByteRange(90, 99)
    assert parse_range("bytes=90-500", 100) == ByteRange(90, 99)
    assert parse_range("bytes=-10", 100) == ByteRange(90, 99)
    assert parse_range("bytes=-500", 100) == ByteRange(0, 99)
    assert parse_range("bytes=0-1,5-6", 100) is None  # several ranges: the whole object
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=9-1", 100) is None
    for bad in ("bytes=100-", "bytes=-0", "bytes=200-300"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(bad, 100)
    assert ByteRange(10, 19).content_range(100) == "bytes 10-19/100"


def test_etags_and_disposition() -> None:
    assert etag_matches('"abc"', "abc") and etag_matches('W/"abc", "x"', "abc")
    assert etag_matches("*", "abc") and not etag_matches('"abd"', "abc")
    assert not etag_matches(None, "abc")
    value = attachment('dir/na"me ü.txt')
    assert value == "attachment; filename=\"na_me _.txt\"; filename*=UTF-8''na%22me%20%C3%BC.txt"
    assert content_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"
    assert content_type("text/html\r\nX-Evil: 1") == "application/octet-stream"
    assert content_type(None) == "application/octet-stream"


def test_link_signatures_bind_user_key_version_and_expiry() -> None:
    secret, user, version = b"s" * 32, uuid.uuid4(), uuid.uuid4()
    sig = presign.signature(secret, user, "a/b", version, 1000)
    assert presign.is_valid(secret, user, "a/b", version, 1000, sig)
    assert not presign.is_valid(secret, uuid.uuid4(), "a/b", version, 1000, sig)
    assert not presign.is_valid(secret, user, "a/c", version, 1000, sig)
    assert not presign.is_valid(secret, user, "a/b", uuid.uuid4(), 1000, sig)
    assert not presign.is_valid(secret, user, "a/b", version, 1001, sig)
    assert not presign.is_valid(b"t" * 32, user, "a/b", version, 1000, sig)
