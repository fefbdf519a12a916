"""Reading request bodies: size limits, gzip (by header or by its magic bytes), JSON."""

from __future__ import annotations

import zlib
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request

from lull.errors import BadInput, TooLarge
from lull.ingest.records import deeper_than
from lull.model import MAX_DEPTH, MAX_EVENT

MAX_REQUEST = 500 * 1024
_decoder = msgspec.json.Decoder()


def _decode(data: bytes) -> Any:
    """JSON -> a value; BadInput when it is nested too deeply (which would otherwise
    exhaust the stack here or later, when the value is encoded or read back)."""
    try:
        value = _decoder.decode(data)
    except RecursionError:
        value = None
        deep = True
    else:
        deep = deeper_than(value, MAX_DEPTH)
    if deep:
        raise BadInput(f"JSON nested more than {MAX_DEPTH} levels deep")
    return value


async def read_body(request: Request, limit: int = MAX_REQUEST) -> bytes:
    """The body, gunzipped if needed; TooLarge past `limit` bytes (before or after gzip)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # the client went away mid-body: nothing to answer, nothing stored, no traceback
        raise BadInput("the client closed the connection before the body ended") from None
    body = b"".join(chunks)
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    if gzipped or body[:2] == b"\x1f\x8b":
        body = _gunzip(body, limit)
    return body


def _gunzip(data: bytes, limit: int) -> bytes:
    """Every member of a gzip body (concatenated members are one gzip file), at most
    `limit` bytes in all."""
    parts: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits=31)
        try:
            part = inflater.decompress(data, limit + 1 - size)
        except zlib.error as e:
            raise BadInput(f"body is not valid gzip: {e}") from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise TooLarge(f"request body is over the limit of {limit} bytes once unzipped")
        parts.append(part)
        data = inflater.unused_data
        if not data.startswith(b"\x1f\x8b"):  # the last member (padding after it is let be)
            return b"".join(parts)


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadInput("request body is empty")
    try:
        return _decode(body)
    except msgspec.DecodeError as e:
        raise BadInput(f"body is not valid JSON: {e}") from None
    except UnicodeDecodeError as e:  # msgspec's own error for bad UTF-8 in a string
        raise BadInput(f"body is not valid UTF-8 at byte {e.start}") from None


def parse_events(body: bytes) -> list[Any]:
    """A JSON array of records, or NDJSON (one record per line)."""
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        value = parse_json(body)
        if not isinstance(value, list):
            raise BadInput("body must be a JSON array of events or NDJSON")
        return value
    out = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(_decode(line))
        except msgspec.DecodeError as e:
            raise BadInput(f"line {number}: malformed JSON ({e})") from None
        except UnicodeDecodeError as e:
            raise BadInput(f"line {number}: not valid UTF-8 at byte {e.start}") from None
    if not out:
        raise BadInput("request body holds no events")
    return out


def too_big(record: object, body: bytes) -> bool:
    """Is this event of `body` over 32 KB? Only worth encoding it again to measure when
    the whole body is bigger than that."""
    return len(body) > MAX_EVENT and len(msgspec.json.encode(record)) > MAX_EVENT
