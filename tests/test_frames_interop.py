"""The Rust codec against two independent sans-IO peers: ``wsproto`` and ``websockets``.

Every direction is covered: peer client -> our server Decoder, our server Encoder (and the
``encode_message`` broadcast path) -> peer client, our client Encoder -> peer server, peer
server -> our client Decoder; each with and without permessage-deflate, the deflate
parameters negotiated through the peers' own handshake code (their offer, our
``negotiate_deflate``/``response_header``; our ``offer_header``, their answer, our
``accept_deflate``). The wire bytes are fed in random chunk splits.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import wsproto.events as wse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.exceptions import NegotiationError
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Close as WsClose
from websockets.frames import Opcode
from websockets.headers import parse_extension
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri
from wsproto import ConnectionType, WSConnection
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate
from wsproto.frame_protocol import CloseReason

from pyserver import _frames as F

pytestmark = pytest.mark.interop

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="

# --------------------------------------------------------------------------- HTTP helpers


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def header_value(head: bytes, name: str) -> str | None:
    """All values of one header in an HTTP head, joined with ", " (None when absent)."""
    values = []
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            values.append(value.strip().decode())
    return ", ".join(values) if values else None


def response_101(key: str, extensions: str | None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def upgrade_request(extensions: str | None) -> bytes:
    lines = [
        "GET /chat HTTP/1.1",
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --------------------------------------------------------------------------- normalising


def norm(msg: F.Message) -> object:
    if isinstance(msg, str | bytes):
        return msg
    if isinstance(msg, F.Ping):
        return ("ping", msg.payload)
    if isinstance(msg, F.Pong):
        return ("pong", msg.payload)
    assert isinstance(msg, F.Close)
    return ("close", 1005 if msg.code is None else msg.code, msg.reason)


def split_randomly(data: bytes, rng: random.Random, max_cuts: int = 10) -> list[bytes]:
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, max_cuts)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    while chunks and not chunks[-1]:  # nothing may be fed after the final Close
        chunks.pop()
    return chunks  # empty chunks before the end are kept: feeding b"" must be harmless


# --------------------------------------------------------------------------- the peers


@dataclass
class Peer:
    """A peer after its opening handshake, plus the deflate parameters we agreed on."""

    name: str
    client: bool  # the peer's role
    conn: Any
    agreed: F.Deflate | None
    pending: list[bytes | str] = field(default_factory=list)  # a message being reassembled
    pending_text: bool = False

    # ---- sending. Script items: ("msg", value, cuts, pings), ("ping", payload),
    # ("pong", payload), ("close", code, reason) with code 1005 meaning an empty payload.
    def send(self, script: list[tuple[Any, ...]]) -> tuple[bytes, list[object]]:
        wire = bytearray()
        want: list[object] = []
        for item in script:
            if item[0] == "msg":
                _, value, cuts, pings = item
                wire += self._send_message(value, cuts, pings)
                want.extend(("ping", p) for p in pings)
                want.append(value)
            elif item[0] in ("ping", "pong"):
                wire += self._control(item[0], item[1])
                want.append((item[0], item[1]))
            else:
                wire += self._close(item[1], item[2])
                want.append(("close", item[1], item[2]))
        return bytes(wire), want

    def _send_message(self, value: str | bytes, cuts: list[int], pings: list[bytes]) -> bytes:
        """Fragments cut at ``cuts`` (of the UTF-8 bytes, or of the characters for wsproto's
        str API) with ``pings[i]`` sent after fragment ``i``; there are fewer pings than
        cuts, so every ping precedes the final fragment."""
        if self.name == "wsproto":
            parts_s = [value[a:b] for a, b in zip([0, *cuts], [*cuts, len(value)], strict=False)]
            out = b""
            for i, part in enumerate(parts_s):
                fin = i == len(parts_s) - 1
                ev = (
                    wse.TextMessage(data=part, message_finished=fin)
                    if isinstance(value, str)
                    else wse.BytesMessage(data=part, message_finished=fin)
                )
                out += self.conn.send(ev)
                if i < len(pings) and not fin:
                    out += self.conn.send(wse.Ping(payload=pings[i]))
            return out
        raw = value.encode() if isinstance(value, str) else value
        parts = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=False)]
        for i, part in enumerate(parts):
            fin = i == len(parts) - 1
            if i:
                self.conn.send_continuation(part, fin=fin)
            elif isinstance(value, str):
                self.conn.send_text(part, fin=fin)
            else:
                self.conn.send_binary(part, fin=fin)
            if i < len(pings) and not fin:
                self.conn.send_ping(pings[i])
        return b"".join(self.conn.data_to_send())

    def _control(self, kind: str, payload: bytes) -> bytes:
        if self.name == "wsproto":
            event = wse.Ping(payload=payload) if kind == "ping" else wse.Pong(payload=payload)
            return bytes(self.conn.send(event))
        if kind == "ping":
            self.conn.send_ping(payload)
        else:
            self.conn.send_pong(payload)
        return b"".join(self.conn.data_to_send())

    def _close(self, code: int, reason: str) -> bytes:
        if self.name == "wsproto":  # wsproto sends its NO_STATUS_RCVD enum as an empty payload
            wcode = CloseReason.NO_STATUS_RCVD if code == 1005 else code
            return bytes(self.conn.send(wse.CloseConnection(code=wcode, reason=reason)))
        self.conn.send_close(None if code == 1005 else code, reason)
        return b"".join(self.conn.data_to_send())

    # ---- receiving
    def receive(self, chunks: list[bytes]) -> list[object]:
        out: list[object] = []
        for chunk in chunks:
            if self.name == "wsproto":
                self.conn.receive_data(chunk)
                for ev in self.conn.events():
                    out.extend(self._wsproto_event(ev))
            else:
                self.conn.receive_data(chunk)
                for frame in self.conn.events_received():
                    out.extend(self._websockets_frame(frame))
                assert self.conn.parser_exc is None, self.conn.parser_exc
        return out

    def _wsproto_event(self, ev: wse.Event) -> list[object]:
        if isinstance(ev, wse.Message):
            self.pending.append(ev.data)
            if not ev.message_finished:
                return []
            done = "".join(self.pending) if isinstance(ev.data, str) else b"".join(self.pending)  # type: ignore[arg-type]
            self.pending.clear()
            return [done]
        if isinstance(ev, wse.Ping):
            return [("ping", bytes(ev.payload))]
        if isinstance(ev, wse.Pong):
            return [("pong", bytes(ev.payload))]
        if isinstance(ev, wse.CloseConnection):
            return [("close", ev.code, ev.reason or "")]
        raise AssertionError(f"unexpected wsproto event {ev!r}")

    def _websockets_frame(self, frame: Any) -> list[object]:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if frame.opcode is not Opcode.CONT:
                self.pending_text = frame.opcode is Opcode.TEXT
            self.pending.append(bytes(frame.data))
            if not frame.fin:
                return []
            raw = b"".join(self.pending)  # type: ignore[arg-type]
            self.pending.clear()
            return [raw.decode() if self.pending_text else raw]
        if frame.opcode is Opcode.PING:
            return [("ping", bytes(frame.data))]
        if frame.opcode is Opcode.PONG:
            return [("pong", bytes(frame.data))]
        assert frame.opcode is Opcode.CLOSE
        close = WsClose.parse(frame.data) if frame.data else WsClose(1005, "")
        return [("close", close.code, close.reason)]


def wsproto_client(deflate: WsprotoDeflate | None, **wishes: Any) -> Peer:
    """wsproto's client offers; we answer with ``negotiate_deflate``; its client checks."""
    conn = WSConnection(ConnectionType.CLIENT)
    request = conn.send(
        wse.Request(host="example.com", target="/", extensions=[deflate] if deflate else [])
    )
    offer = header_value(request, "sec-websocket-extensions")
    agreed = F.negotiate_deflate(offer, **wishes) if offer else None
    key = header_value(request, "sec-websocket-key")
    assert key
    conn.receive_data(response_101(key, agreed.response_header() if agreed else None))
    (accepted,) = conn.events()
    assert isinstance(accepted, wse.AcceptConnection), accepted
    if agreed:
        assert [e.name for e in accepted.extensions] == ["permessage-deflate"]
    return Peer("wsproto", True, conn, agreed)


def wsproto_server(offered: F.Deflate | None, ext: WsprotoDeflate | None = None) -> Peer:
    """We offer with ``offer_header``; wsproto's server answers; ``accept_deflate`` checks."""
    conn = WSConnection(ConnectionType.SERVER)
    conn.receive_data(upgrade_request(offered.offer_header() if offered else None))
    (request,) = conn.events()
    assert isinstance(request, wse.Request)
    if offered:
        assert request.extensions, "wsproto did not parse our offer"
    ext = ext or WsprotoDeflate()
    response = conn.send(wse.AcceptConnection(extensions=[ext] if offered else []))
    answer = header_value(response, "sec-websocket-extensions")
    agreed = None
    if offered:
        assert answer is not None, "wsproto declined our offer"
        agreed = F.accept_deflate(answer, offered)
    return Peer("wsproto", False, conn, agreed)


def websockets_client(
    factory: ClientPerMessageDeflateFactory | None, **wishes: Any
) -> tuple[Peer, ClientProtocol]:
    conn = ClientProtocol(
        parse_uri("ws://example.com/chat"),
        extensions=[factory] if factory else None,
        max_size=None,
    )
    request = conn.connect()
    conn.send_request(request)
    conn.data_to_send()
    offer = request.headers.get("Sec-WebSocket-Extensions")
    agreed = F.negotiate_deflate(offer, **wishes) if offer else None
    conn.receive_data(
        response_101(
            request.headers["Sec-WebSocket-Key"], agreed.response_header() if agreed else None
        )
    )
    conn.events_received()
    assert conn.handshake_exc is None, repr(conn.handshake_exc)
    assert conn.state is State.OPEN
    assert len(conn.extensions) == (1 if agreed else 0)
    return Peer("websockets", True, conn, agreed), conn


def websockets_server(
    offered: F.Deflate | None, factory: ServerPerMessageDeflateFactory | None = None
) -> tuple[Peer, ServerProtocol]:
    factory = factory or ServerPerMessageDeflateFactory()
    conn = ServerProtocol(extensions=[factory] if offered else None, max_size=None)
    conn.receive_data(upgrade_request(offered.offer_header() if offered else None))
    (request,) = conn.events_received()
    response = conn.accept(request)
    conn.send_response(response)
    conn.data_to_send()
    assert conn.state is State.OPEN, response
    answer = response.headers.get("Sec-WebSocket-Extensions")
    agreed = None
    if offered:
        assert answer is not None, "websockets declined our offer"
        agreed = F.accept_deflate(answer, offered)
    return Peer("websockets", False, conn, agreed), conn


def make_peer(name: str, peer_client: bool, deflate: bool) -> Peer:
    if name == "wsproto":
        if peer_client:
            return wsproto_client(WsprotoDeflate() if deflate else None)
        return wsproto_server(F.Deflate() if deflate else None)
    if peer_client:
        factory = ClientPerMessageDeflateFactory() if deflate else None
        return websockets_client(factory)[0]
    return websockets_server(F.Deflate() if deflate else None)[0]


# --------------------------------------------------------------------------- scripts

texts = st.text(max_size=300) | st.sampled_from([125, 126, 4000]).map(lambda n: "é" * n)
blobs = st.binary(max_size=300) | st.sampled_from([125, 126, 65535, 65536]).map(
    lambda n: random.Random(n).randbytes(n)
)
pings = st.binary(max_size=125)


@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Messages (fragmented at random cuts, pings between fragments) and lone pings."""
    items: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 4)) == 0:
            items.append((draw(st.sampled_from(["ping", "pong"])), draw(pings)))
            continue
        value = draw(texts | blobs)
        size = len(value)
        cuts = sorted(draw(st.lists(st.integers(0, size), max_size=3)))
        between = draw(st.lists(pings, max_size=len(cuts)))
        items.append(("msg", value, cuts, between))
    return items


CLOSE = ("close", 1000, "bye")
closes = st.sampled_from(
    [CLOSE, ("close", 1005, ""), ("close", 4001, "é" * 61), ("close", 1011, "")]
)
PEERS = ["wsproto", "websockets"]


# --------------------------------------------------------------------------- peer -> us


@SETTINGS
@given(script=scripts(), close=closes, rng=st.randoms(use_true_random=False))
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("peer_client", [True, False], ids=["peer-client", "peer-server"])
@pytest.mark.parametrize("name", PEERS)
def test_peer_frames_decode_in_our_decoder(
    name: str,
    peer_client: bool,
    deflate: bool,
    script: list[tuple[Any, ...]],
    close: tuple[str, int, str],
    rng: random.Random,
) -> None:
    peer = make_peer(name, peer_client, deflate)
    wire, want = peer.send([*script, close])
    dec = F.Decoder(client=not peer_client, deflate=peer.agreed)
    got: list[object] = []
    for chunk in split_randomly(wire, rng):
        got.extend(norm(m) for m in dec.feed(chunk))
    assert got == want
    assert dec.buffered == 0


# --------------------------------------------------------------------------- us -> peer


def our_frames(
    peer: Peer,
    script: list[tuple[Any, ...]],
    broadcast: list[bool],
    threshold: int,
    close: tuple[str, int, str] = CLOSE,
) -> tuple[bytes, list[object]]:
    """Our side of ``script`` (whole messages; fragment cuts ignored)."""
    we_client = not peer.client
    enc = F.Encoder(client=we_client, deflate=peer.agreed, compress_threshold=threshold)
    shareable = peer.agreed is None or peer.agreed.server_no_context_takeover
    wire = bytearray()
    want: list[object] = []
    for i, item in enumerate([*script, close]):
        if item[0] == "msg":
            value = item[1]
            for p in item[3]:
                wire += enc.ping(p)
                want.append(("ping", p))
            if not we_client and shareable and broadcast[i % len(broadcast)]:
                bits = peer.agreed.server_max_window_bits if peer.agreed else None
                wire += F.encode_message(value, deflate_window_bits=bits)
            elif isinstance(value, str):
                wire += enc.text(value)
            else:
                wire += enc.binary(value)
            want.append(value)
        elif item[0] == "ping":
            wire += enc.ping(item[1])
            want.append(("ping", item[1]))
        elif item[0] == "pong":
            wire += enc.pong(item[1])
            want.append(("pong", item[1]))
        else:
            wire += enc.close(None if item[1] == 1005 else item[1], item[2])
            want.append(("close", item[1], item[2]))
    return bytes(wire), want


@SETTINGS
@given(
    script=scripts(),
    close=closes,
    rng=st.randoms(use_true_random=False),
    broadcast=st.lists(st.booleans(), min_size=1, max_size=4),
    threshold=st.sampled_from([0, 1, 128]),
)
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("peer_client", [True, False], ids=["peer-client", "peer-server"])
@pytest.mark.parametrize("name", PEERS)
def test_our_frames_decode_in_peer(
    name: str,
    peer_client: bool,
    deflate: bool,
    script: list[tuple[Any, ...]],
    close: tuple[str, int, str],
    rng: random.Random,
    broadcast: list[bool],
    threshold: int,
) -> None:
    peer = make_peer(name, peer_client, deflate)
    wire, want = our_frames(peer, script, broadcast, threshold, close)
    assert peer.receive(split_randomly(wire, rng)) == want


# --------------------------------------------------------------------------- long messages


LONG = [70_000, 400_000]


def long_text(n: int) -> str:
    rng = random.Random(n)
    words = ["alpha", "beta", "γάμμα", "дельта", "😀", '{"k": 1}']
    out = " ".join(rng.choice(words) for _ in range(n // 5))
    return out[:n]


@pytest.mark.parametrize("size", LONG)
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("peer_client", [True, False], ids=["peer-client", "peer-server"])
@pytest.mark.parametrize("name", PEERS)
def test_long_messages_both_ways(name: str, peer_client: bool, deflate: bool, size: int) -> None:
    rng = random.Random(size)
    text = long_text(size)
    blob = rng.randbytes(size)
    script: list[tuple[Any, ...]] = [
        ("msg", text, [], []),
        ("msg", blob, [size // 3, size // 2], [b"mid"]),
        ("msg", text, [1, size // 2], []),
    ]
    peer = make_peer(name, peer_client, deflate)
    wire, want = peer.send([*script, CLOSE])
    dec = F.Decoder(client=not peer_client, deflate=peer.agreed)
    got = [norm(m) for chunk in split_randomly(wire, rng) for m in dec.feed(chunk)]
    assert got == want

    peer = make_peer(name, peer_client, deflate)
    wire, want = our_frames(peer, script, [False, True], 128)
    assert peer.receive(split_randomly(wire, rng)) == want


# --------------------------------------------------------------------------- negotiation

# Data with repeats further apart than 2**9 bytes: a compressor that ignores a negotiated
# small window produces back-references the peer's smaller-window inflater rejects.
FAR = random.Random(5).randbytes(3000)
FAR_MESSAGES: list[str | bytes] = [FAR * 3, FAR.hex() * 2, FAR * 2]


def exchange(peer: Peer) -> None:
    """Messages with far repeats both ways, one connection each way: all must round-trip."""
    script: list[tuple[Any, ...]] = [("msg", m, [], []) for m in FAR_MESSAGES]
    wire, want = peer.send(script)
    dec = F.Decoder(client=not peer.client, deflate=peer.agreed)
    assert [norm(m) for m in dec.feed(wire)] == want
    wire, want = our_frames(peer, script, [False, True], 0)
    assert peer.receive([wire]) == want


def test_default_offers_of_the_peers() -> None:
    """What each peer offers out of the box, and what we agree to with our defaults."""
    ws_offer = (
        ClientProtocol(
            parse_uri("ws://example.com/"), extensions=[ClientPerMessageDeflateFactory()]
        )
        .connect()
        .headers["Sec-WebSocket-Extensions"]
    )
    assert ws_offer == "permessage-deflate; client_max_window_bits"
    agreed = F.negotiate_deflate(ws_offer)
    assert agreed is not None
    assert agreed.server_no_context_takeover  # our default: shareable broadcast frames
    assert (agreed.server_max_window_bits, agreed.client_max_window_bits) == (15, 15)
    assert not agreed.client_no_context_takeover

    request = WSConnection(ConnectionType.CLIENT).send(
        wse.Request(host="example.com", target="/", extensions=[WsprotoDeflate()])
    )
    wsproto_offer = header_value(request, "sec-websocket-extensions")
    assert wsproto_offer == (
        "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15"
    )
    agreed = F.negotiate_deflate(wsproto_offer)
    assert agreed is not None
    assert agreed.server_no_context_takeover
    assert agreed.client_max_window_bits == 15
    # RFC 7692 7.1.2.1: accepting an offer with server_max_window_bits means answering it
    # with a value <= the offer (the codec answers 14, since it never writes a default 15)
    assert 9 <= agreed.server_max_window_bits <= 15
    answer = agreed.response_header()
    assert f"server_max_window_bits={agreed.server_max_window_bits}" in answer


WEBSOCKETS_OFFERS: list[dict[str, Any]] = [
    {},
    {"client_max_window_bits": None},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 10},
    {"server_max_window_bits": 9},
    {"client_max_window_bits": 12},
    {"client_max_window_bits": 9, "server_max_window_bits": 12},
    {
        "server_no_context_takeover": True,
        "client_no_context_takeover": True,
        "server_max_window_bits": 11,
        "client_max_window_bits": 11,
    },
]
SERVER_WISHES: list[dict[str, Any]] = [
    {},
    {"server_no_context_takeover": False},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 11, "client_max_window_bits": 10},
]


@pytest.mark.parametrize("wishes", SERVER_WISHES, ids=str)
@pytest.mark.parametrize("offer", WEBSOCKETS_OFFERS, ids=str)
def test_websockets_client_accepts_our_answer(
    offer: dict[str, Any], wishes: dict[str, Any]
) -> None:
    client_offers_window = offer.get("client_max_window_bits", True) is not None
    if not client_offers_window and wishes.get("client_max_window_bits", 15) < 15:
        # this client cannot be limited, so a server that insists may decline; it may not
        # answer client_max_window_bits though (RFC 7692 7.1.2.2)
        header = (
            ClientProtocol(
                parse_uri("ws://example.com/"),
                extensions=[ClientPerMessageDeflateFactory(**offer)],
            )
            .connect()
            .headers["Sec-WebSocket-Extensions"]
        )
        declined = F.negotiate_deflate(header, **wishes)
        if declined is None:
            return
        assert "client_max_window_bits" not in declined.response_header()
    peer, conn = websockets_client(ClientPerMessageDeflateFactory(**offer), **wishes)
    agreed = peer.agreed
    assert agreed is not None, "a valid offer was declined"
    (ext,) = conn.extensions
    assert isinstance(ext, PerMessageDeflate)
    # what websockets will do must be compatible with what our codec will do
    assert ext.remote_max_window_bits >= agreed.server_max_window_bits
    assert ext.local_max_window_bits <= agreed.client_max_window_bits
    assert agreed.server_no_context_takeover or not ext.remote_no_context_takeover
    assert ext.local_no_context_takeover or not agreed.client_no_context_takeover
    # and the agreement honours the offer and the server's wishes
    if offer.get("server_max_window_bits"):
        assert agreed.server_max_window_bits <= offer["server_max_window_bits"]
    if offer.get("server_no_context_takeover"):
        assert agreed.server_no_context_takeover
    assert agreed.server_max_window_bits <= wishes.get("server_max_window_bits", 15)
    if wishes.get("server_no_context_takeover", True):
        assert agreed.server_no_context_takeover
    exchange(peer)


def test_websockets_offer_with_window_8_is_declined_or_honoured() -> None:
    """server_max_window_bits=8: zlib cannot deflate with it; decline or really use 8."""
    conn = ClientProtocol(
        parse_uri("ws://example.com/"),
        extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=8)],
    )
    offer = conn.connect().headers["Sec-WebSocket-Extensions"]
    agreed = F.negotiate_deflate(offer)
    if agreed is None:
        return
    assert agreed.server_max_window_bits == 8
    peer, _ = websockets_client(ClientPerMessageDeflateFactory(server_max_window_bits=8))
    exchange(peer)


WSPROTO_OFFERS: list[dict[str, Any]] = [
    {},
    {"client_no_context_takeover": True},
    {"server_no_context_takeover": True},
    {"server_max_window_bits": 10},
    {"client_max_window_bits": 9},
    {"client_max_window_bits": 12, "server_max_window_bits": 9},
]


@pytest.mark.parametrize("wishes", SERVER_WISHES, ids=str)
@pytest.mark.parametrize("offer", WSPROTO_OFFERS, ids=str)
def test_wsproto_client_accepts_our_answer(offer: dict[str, Any], wishes: dict[str, Any]) -> None:
    ext = WsprotoDeflate(**offer)
    peer = wsproto_client(ext, **wishes)
    agreed = peer.agreed
    assert agreed is not None, "a valid offer was declined"
    assert ext.enabled()
    # wsproto's client inflates with ext.server_max_window_bits, deflates with client_...
    assert ext.server_max_window_bits >= agreed.server_max_window_bits
    assert ext.client_max_window_bits <= agreed.client_max_window_bits
    assert agreed.server_no_context_takeover or not ext.server_no_context_takeover
    assert ext.client_no_context_takeover or not agreed.client_no_context_takeover
    if offer.get("server_max_window_bits"):
        assert agreed.server_max_window_bits <= offer["server_max_window_bits"]
    exchange(peer)


OUR_OFFERS: list[dict[str, Any]] = [
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 10},
    {"client_max_window_bits": 10},
    {"server_max_window_bits": 9, "client_max_window_bits": 9},
]
WEBSOCKETS_SERVERS: list[dict[str, Any]] = [
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 12},
    {"client_max_window_bits": 11},
]


@pytest.mark.parametrize("server", WEBSOCKETS_SERVERS, ids=str)
@pytest.mark.parametrize("offer", OUR_OFFERS, ids=str)
def test_our_offer_and_accept_with_websockets_server(
    offer: dict[str, Any], server: dict[str, Any]
) -> None:
    offered = F.Deflate(**offer)
    peer, conn = websockets_server(offered, ServerPerMessageDeflateFactory(**server))
    agreed = peer.agreed
    assert agreed is not None
    (ext,) = conn.extensions
    assert isinstance(ext, PerMessageDeflate)
    # websockets (server) inflates with remote_*, deflates with local_*
    assert ext.remote_max_window_bits >= agreed.client_max_window_bits
    assert ext.local_max_window_bits <= agreed.server_max_window_bits
    assert agreed.client_no_context_takeover or not ext.remote_no_context_takeover
    assert ext.local_no_context_takeover or not agreed.server_no_context_takeover
    # what we offered is respected
    assert agreed.server_max_window_bits <= offered.server_max_window_bits
    assert agreed.client_max_window_bits <= offered.client_max_window_bits
    if offered.server_no_context_takeover:
        assert agreed.server_no_context_takeover
    exchange(peer)


@pytest.mark.parametrize(
    "server",
    [{}, {"server_no_context_takeover": True}, {"client_no_context_takeover": True}],
    ids=str,
)
@pytest.mark.parametrize("offer", OUR_OFFERS, ids=str)
def test_our_offer_and_accept_with_wsproto_server(
    offer: dict[str, Any], server: dict[str, Any]
) -> None:
    offered = F.Deflate(**offer)
    ext = WsprotoDeflate(**server)
    peer = wsproto_server(offered, ext)
    agreed = peer.agreed
    assert agreed is not None
    assert ext.enabled()
    # wsproto (server) inflates with client_max_window_bits, deflates with server_...
    assert ext.client_max_window_bits >= agreed.client_max_window_bits
    assert ext.server_max_window_bits <= agreed.server_max_window_bits
    assert agreed.client_no_context_takeover or not ext.client_no_context_takeover
    assert ext.server_no_context_takeover or not agreed.server_no_context_takeover
    assert agreed.server_max_window_bits <= offered.server_max_window_bits
    exchange(peer)


# --------------------------------------------------------------------------- accept vs websockets

ANSWER_PARAMS = st.one_of(
    st.sampled_from(["server_no_context_takeover", "client_no_context_takeover"]),
    st.integers(8, 15).map(lambda n: f"server_max_window_bits={n}"),
    st.integers(8, 15).map(lambda n: f"client_max_window_bits={n}"),
)


def websockets_factory_for(offer_header: str) -> ClientPerMessageDeflateFactory:
    """websockets' client configured to make exactly the offer we made."""
    ((name, params),) = parse_extension(offer_header)
    assert name == "permessage-deflate"
    kw: dict[str, Any] = {"client_max_window_bits": None}
    for key, value in params:
        if key.endswith("no_context_takeover"):
            kw[key] = True
        elif key == "server_max_window_bits":
            kw[key] = int(value) if value is not None else None
        elif key == "client_max_window_bits":
            kw[key] = True if value is None else int(value)
        else:
            raise AssertionError(f"unexpected offer parameter {key}")
    return ClientPerMessageDeflateFactory(**kw)


@st.composite
def answers(draw: st.DrawFn, offered: F.Deflate) -> list[str]:
    """A server's answer parameters: half anything (mostly wrong), half plausible (what was
    demanded, windows near what was offered)."""
    if draw(st.booleans()):
        return draw(st.lists(ANSWER_PARAMS, max_size=4))
    answer = []
    if offered.server_no_context_takeover or draw(st.booleans()):
        answer.append("server_no_context_takeover")
    if draw(st.booleans()):
        answer.append("client_no_context_takeover")
    limit = offered.server_max_window_bits
    if limit < 15 or draw(st.booleans()):
        answer.append(f"server_max_window_bits={draw(st.integers(limit - 2, limit))}")
    limit = offered.client_max_window_bits
    if draw(st.booleans()):
        answer.append(f"client_max_window_bits={draw(st.integers(limit - 1, limit))}")
    return list(draw(st.permutations(answer)))


offers = st.builds(
    F.Deflate,
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.integers(9, 15),
    client_max_window_bits=st.integers(9, 15),
)


@SETTINGS
@given(offer_and_answer=offers.flatmap(lambda o: st.tuples(st.just(o), answers(o))))
def test_accept_deflate_agrees_with_websockets_client(
    offer_and_answer: tuple[F.Deflate, list[str]],
) -> None:
    """Any answer: ours accepts exactly when websockets' client does, with the same result
    for what each side will do (the server's window and context, our own window)."""
    offered, answer = offer_and_answer
    response = "; ".join(["permessage-deflate", *answer])
    if any(
        p.startswith("client_max_window_bits=")
        and int(p.split("=")[1]) > offered.client_max_window_bits
        for p in answer
    ):
        # a known divergence, pinned by test_accept_deflate_client_window_above_offer
        return
    factory = websockets_factory_for(offered.offer_header())
    try:
        theirs = factory.process_response_params(parse_extension(response)[0][1], [])
    except NegotiationError:
        theirs = None
    try:
        ours = F.accept_deflate(response, offered)
    except ValueError:
        ours = None
    assert (ours is None) == (theirs is None), (offered.offer_header(), response, ours, theirs)
    event("rejected" if ours is None else "accepted")
    if ours is None or theirs is None:
        return
    assert ours.server_no_context_takeover == theirs.remote_no_context_takeover
    assert ours.server_max_window_bits == theirs.remote_max_window_bits
    assert ours.client_max_window_bits == theirs.local_max_window_bits
    # a client that offered client_no_context_takeover keeps its promise either way
    assert ours.client_no_context_takeover or not theirs.local_no_context_takeover


def test_accept_deflate_client_window_above_offer() -> None:
    """RFC 7692 7.1.2.2: the answer's client_max_window_bits must be <= the offered value;
    7.1: a client MUST fail on a response with an invalid value. websockets' client refuses
    this answer."""
    offered = F.Deflate(client_max_window_bits=9)
    assert "client_max_window_bits=9" in offered.offer_header()
    with pytest.raises(ValueError):
        F.accept_deflate("permessage-deflate; client_max_window_bits=10", offered)


@settings(SETTINGS, max_examples=100)
@given(
    offer=st.fixed_dictionaries(
        {
            "server_no_context_takeover": st.booleans(),
            "client_no_context_takeover": st.booleans(),
            "server_max_window_bits": st.none() | st.integers(8, 15),
            "client_max_window_bits": st.none() | st.just(True) | st.integers(9, 15),
        }
    ),
    wishes=st.fixed_dictionaries(
        {
            "server_no_context_takeover": st.booleans(),
            "client_no_context_takeover": st.booleans(),
            "server_max_window_bits": st.integers(8, 15),
            "client_max_window_bits": st.integers(8, 15),
        }
    ),
)
def test_any_websockets_offer_any_wishes(offer: dict[str, Any], wishes: dict[str, Any]) -> None:
    """Whatever websockets' client offers and whatever the server wishes: either we decline,
    or websockets' client accepts our answer and messages flow both ways."""
    header = (
        ClientProtocol(
            parse_uri("ws://example.com/"), extensions=[ClientPerMessageDeflateFactory(**offer)]
        )
        .connect()
        .headers["Sec-WebSocket-Extensions"]
    )
    agreed = F.negotiate_deflate(header, **wishes)
    event("declined" if agreed is None else "agreed")
    if agreed is None:
        return
    if offer["server_max_window_bits"]:
        assert agreed.server_max_window_bits <= offer["server_max_window_bits"]
    if offer["server_no_context_takeover"] or wishes["server_no_context_takeover"]:
        assert agreed.server_no_context_takeover
    peer, conn = websockets_client(ClientPerMessageDeflateFactory(**offer), **wishes)
    (ext,) = conn.extensions
    assert isinstance(ext, PerMessageDeflate)
    assert ext.remote_max_window_bits >= agreed.server_max_window_bits
    assert ext.local_max_window_bits <= agreed.client_max_window_bits
    exchange(peer)
