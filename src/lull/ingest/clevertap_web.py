"""CleverTap's web SDK (clevertap-web-sdk) -> events, identity links and profile traits.

The SDK loads `<script>` tags from `https://<target>/a?t=96&type=page|push|ping&d=<payload>
&rn=<request number>&i=<epoch s>&sn=<sequence>&gc=<guid>&r=<epoch ms>...`. The payload is
a JSON object compressed with LZ-string (`compress`, 16 bits a character) and written in
base64: `decode` reads it. What the answer must do is the HTTP side's business
(server/clevertap_web.py); this module only maps a request to what lull stores.

Profiles: the SDK's device guid (`g` in the payload, `gc` in the query) until a profile
push (`onUserLogin`, or `profile.push` with an `Identity`) names the user; that push ties
the guid to the identity from its time on, as a Segment identify ties an anonymousId to a
userId (server/identity.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from lull.errors import BadInput, TooLarge
from lull.ingest.records import Event, check_clock_fix, check_id, check_properties
from lull.ingest.sdk import event_name
from lull.model import MAX_EPOCH_MS, MAX_ID

KINDS = ("page", "push", "ping", "data")
PAGE_VIEWED = "Page Viewed"
IDENTITY_SET = "Identity Set"
SESSION_PROPERTY = "CleverTap Session ID"
MAX_PAYLOAD = 512 * 1024  # decompressed characters: bounds a crafted payload's blow-up
# Events the SDK sends for its own needs, not the site's (campaigns and variables).
SDK_EVENTS = frozenset({"wzrk_fetch"})
_UTM = {"us": "utm_source", "um": "utm_medium", "uc": "utm_campaign"}
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_VALUE = {c: i for i, c in enumerate(_B64)}
_encode = msgspec.json.Encoder(order="sorted").encode
NUMBER = re.compile(r"[0-9]{1,15}")


def decompress_base64(text: str, limit: int = MAX_PAYLOAD) -> str:
    """LZ-string's `decompressFromBase64`: the inverse of the SDK's `compressToBase64`
    (its 16-bit `compress` written as base64 reads as the same stream of bits)."""
    try:
        values = [_VALUE[c] for c in text]
    except KeyError as e:
        raise BadInput(f"field 'd': {e.args[0]!r} is not a base64 character") from None
    total = len(values) * 6
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > total:
            raise BadInput("field 'd': the compressed payload ends too early")
        bits = 0
        for k in range(n):
            index, offset = divmod(pos + k, 6)
            if values[index] >> (5 - offset) & 1:
                bits |= 1 << k
        pos += n
        return bits

    first = read(2)
    if first == 2:
        return ""
    if first == 3:
        raise BadInput("field 'd': not an LZ-string payload")
    w = chr(read(8 if first == 0 else 16))
    dictionary = ["", "", "", w]  # codes 0, 1, 2 are commands, never entries
    out, size = [w], 1
    enlarge_in, num_bits = 4, 3
    while True:
        code = read(num_bits)
        if code in (0, 1):
            dictionary.append(chr(read(8 if code == 0 else 16)))
            code = len(dictionary) - 1
            enlarge_in -= 1
            if enlarge_in == 0:
                enlarge_in, num_bits = 1 << num_bits, num_bits + 1
        elif code == 2:
            return "".join(out)
        if code < len(dictionary):
            entry = dictionary[code]
        elif code == len(dictionary):
            entry = w + w[0]
        else:
            raise BadInput("field 'd': not an LZ-string payload")
        out.append(entry)
        size += len(entry)
        if size > limit:
            raise TooLarge(f"field 'd': the payload is over {limit // 1024} KB")
        dictionary.append(w + entry[0])
        enlarge_in -= 1
        w = entry
        if enlarge_in == 0:
            enlarge_in, num_bits = 1 << num_bits, num_bits + 1


def decode(d: str) -> dict[str, Any]:
    """The `d` parameter -> the JSON object the SDK sent."""
    if not d:
        raise BadInput("field 'd' is missing")
    text = decompress_base64(d.replace(" ", "+"))  # a '+' left unescaped reads as a space
    try:  # JavaScript strings are UTF-16: join the surrogate pairs of non-BMP characters
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        payload = msgspec.json.decode(text)
    except (UnicodeError, msgspec.DecodeError):
        raise BadInput("field 'd' is not compressed JSON") from None
    if not isinstance(payload, dict):
        raise BadInput("field 'd' must hold a JSON object")
    return payload


@dataclass(frozen=True, slots=True)
class Hit:
    """One request of the SDK: its query parameters, the payload decoded."""

    kind: str  # type=page|push|ping|data
    payload: dict[str, Any]
    gc: str | None = None  # the guid the SDK had when it fired the request
    i: str | None = None  # epoch seconds when the SDK recorded it
    sn: str | None = None  # sequence number within that second
    rn: str | None = None  # request number: what the answer acknowledges
    r: str | None = None  # epoch ms when it was fired
    s: str | None = None  # the session, added when the SDK sends a request from its backup

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Hit:
        kind = query.get("type", "")
        if kind not in KINDS:
            raise BadInput(f"field 'type': {kind!r} is not one of {', '.join(KINDS)}")
        return cls(
            kind, decode(query.get("d", "")), query.get("gc") or None, query.get("i"),
            query.get("sn"), query.get("rn"), query.get("r"), query.get("s"),
        )  # fmt: skip

    @property
    def account(self) -> str:
        value = self.payload.get("id")
        return value if isinstance(value, str) else ""

    @property
    def guid(self) -> str | None:
        """The device the request comes from: the guid it was recorded with, else the
        one it was sent with; None for a device lull has not given a guid yet (or whose
        guid is longer than a profile id may be: it is given a new one)."""
        g = self.payload.get("g")
        guid = g if isinstance(g, str) and g else self.gc
        return guid if guid is None or len(guid) <= MAX_ID else None

    @property
    def session(self) -> int | None:
        """The SDK's own session id (epoch seconds of its start, given by lull's answers):
        the one it was recorded in, else the one it was sent in (from the backup)."""
        s = self.payload.get("s")
        if isinstance(s, int) and not isinstance(s, bool) and s > 0:
            return s
        return int(self.s) if self.s and NUMBER.fullmatch(self.s) and int(self.s) else None

    @property
    def login(self) -> bool:
        """An `onUserLogin` call: the answer must resume the SDK with a guid."""
        return self.payload.get("isOUL") is True

    @property
    def profile(self) -> dict[str, Any] | None:
        if self.kind != "push" or self.payload.get("type") != "profile":
            return None
        data = self.payload.get("profile")
        if not isinstance(data, dict):
            raise BadInput("field 'profile' must be an object")
        return data

    @property
    def identity(self) -> str | None:
        """The user a profile push names (`Identity`, else `Email`), if any."""
        data = self.profile or {}
        for key in ("Identity", "Email"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
                continue
            return str(value)
        return None


def answer_guid(hit: Hit, tied: Callable[[str], str], fresh: Callable[[], str]) -> str:
    """The guid to give the device back: its own, or a new one when it has none, or
    when it logs in as a user other than the one its guid is tied to (`tied`)."""
    guid = hit.guid
    if guid is None:
        return fresh()
    identity = hit.identity if hit.login else None
    if identity is not None and tied(guid) not in (guid, identity):
        return fresh()
    return guid


def message_id(hit: Hit, guid: str) -> str:
    """Derived from what the SDK recorded (its payload, `i`, `sn`, `rn`) and the device:
    a request the SDK sends again from its backup is a duplicate (R6)."""
    key = _encode([hit.account, guid, hit.kind, hit.payload, hit.i, hit.sn, hit.rn])
    return "ctw-" + hashlib.sha256(key).hexdigest()[:32]


def _epoch(value: str | None, scale: int, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadInput(f"field {what!r}: {value!r} is not an integer") from None
    if not 0 <= number * scale <= MAX_EPOCH_MS:
        raise BadInput(
            f"field {what!r}: {value!r} is out of range: the time must fall from 1970 to 9999"
        )
    return number * scale


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one request stores: an event (or none), a (guid, identity) link, traits."""

    event: Event | None
    link: tuple[str, str] | None
    traits: tuple[str, dict[str, Any], int] | None


def to_event(
    hit: Hit, guid: str, session: int, resolve: Callable[[str, int], str], received_at: int
) -> Mapped:
    """One request of a device with `guid` -> what lull stores (source `web`).

    `session` is the SDK's session id the answer gives (kept as a property); `resolve`
    gives the profile of a guid's event at a time. Page views are "Page Viewed",
    `event.push(name, data)` is `name` with `data`, profile pushes are "Identity Set" with
    the profile as traits; pings, push-token requests and the SDK's own events store
    nothing.
    """
    identity = hit.identity
    link = (guid, identity) if identity is not None and identity != guid else None
    props: dict[str, Any]
    traits = None
    payload = hit.payload
    if hit.kind == "page":
        name = PAGE_VIEWED
        props = {"url": payload.get("cpg")} if payload.get("cpg") is not None else {}
        if payload.get("referrer") is not None:
            props["referrer"] = payload["referrer"]
        for short, long in _UTM.items():
            if payload.get(short) is not None:
                props[long] = payload[short]
    elif hit.kind == "push" and payload.get("type") == "event":
        name = event_name(payload.get("evtName"), "evtName", {})
        if name in SDK_EVENTS:
            return Mapped(None, link, None)
        data = payload.get("evtData", {})
        if not isinstance(data, dict):
            raise BadInput("field 'evtData' must be an object")
        props = dict(data)
    elif (profile := hit.profile) is not None:
        name = IDENTITY_SET
        props = dict(profile)
    else:
        return Mapped(None, link, None)
    if identity is not None:
        check_id(identity, "Identity")
    ts = _epoch(hit.i, 1000, "i")
    ts = received_at if ts is None else ts
    sent_at = _epoch(hit.r, 1, "r")
    check_clock_fix(ts, sent_at, received_at, "r")
    profile_id = identity if identity is not None else resolve(guid, ts)
    if name == IDENTITY_SET and props:
        traits = (profile_id, dict(props), ts)
    props[SESSION_PROPERTY] = session
    check_properties(props, "evtData" if hit.kind == "push" and name != IDENTITY_SET else "d")
    event = Event(message_id(hit, guid), profile_id, name, ts, "web", sent_at, props)
    return Mapped(event, link, traits)
