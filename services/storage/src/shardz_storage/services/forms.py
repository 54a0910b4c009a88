"""multipart/form-data uploads, parsed as they stream: the `file` part goes straight into an
Upload (Starlette's request.form() would spool it to disk), the `key` field is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from shardz_common.errors import ValidationFailed
from shardz_storage.domain.http import content_type
from shardz_storage.services.uploads import Stored, Upload

MAX_FIELD_BYTES = 4096


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str | None = None
    value: bytearray = field(default_factory=bytearray)


def boundary_of(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ValidationFailed("expected multipart/form-data with a boundary", field="file")
    return boundary


class FormUpload:
    def __init__(self, upload: Upload, boundary: bytes) -> None:
        self.upload = upload
        self.events: list[tuple[str, bytes]] = []
        self.part = _Part()
        self.field_name = b""
        self.header_value = b""
        self.key: str | None = None
        self.file: _Part | None = None
        self.file_done = False
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
        )

    # Parser callbacks run synchronously inside write(); they only record what they saw.
    def _begin(self) -> None:
        self.part = _Part()
        self.field_name = b""
        self.header_value = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.field_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def _header_end(self) -> None:
        self.part.headers[self.field_name.lower()] = self.header_value
        self.field_name = b""
        self.header_value = b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            self.part.filename = options[b"filename"].decode("utf-8", "replace")
        ctype = self.part.headers.get(b"content-type")
        self.part.content_type = ctype.decode("latin-1") if ctype else None
        if self.part.name == "file" and self.file is None:
            self.file = self.part
            self.events.append(("file", b""))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.part is self.file and not self.file_done:
            self.events.append(("data", data[start:end]))
        elif self.part.name == "key":
            self.part.value += data[start:end]
            if len(self.part.value) > MAX_FIELD_BYTES:
                self.events.append(("too_long", b""))

    def _end(self) -> None:
        if self.part is self.file:
            self.file_done = True
        elif self.part.name == "key" and self.key is None:
            self.events.append(("key", bytes(self.part.value)))

    def _parse(self, chunk: bytes | None) -> None:
        """A malformed form is the client's error (the route aborts the upload): 422, not 500."""
        try:
            if chunk is None:
                self.parser.finalize()
            else:
                self.parser.write(chunk)
        except FormParserError as exc:
            raise ValidationFailed(f"the form is malformed: {exc}", field="file") from exc

    async def run(
        self, chunks: AsyncIterator[bytes], validate: Callable[[str], str]
    ) -> tuple[str, Stored]:
        """Feed the body through; returns the key used and what was stored."""
        started = False
        for_upload = self.upload
        async for chunk in chunks:
            self._parse(chunk)
            events, self.events = self.events, []
            for kind, data in events:
                if kind == "file":
                    await for_upload.start(self.key)
                    started = True
                elif kind == "data":
                    await for_upload.feed(data)
                elif kind == "key":
                    try:
                        self.key = validate(data.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise ValidationFailed("invalid key: not UTF-8", field="key") from exc
                elif kind == "too_long":
                    raise ValidationFailed("invalid key: too long", field="key")
        self._parse(None)
        if not started or self.file is None or not self.file_done:
            raise ValidationFailed("the form has no complete `file` part", field="file")
        key = self.key if self.key is not None else validate(self.file.filename or "")
        return key, await for_upload.finish(key, content_type(self.file.content_type))
