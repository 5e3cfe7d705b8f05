"""The sans-IO WebSocket handshake (RFC 6455 4.2): plain functions, headers in, verdict out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pyserver.http import Headers
from pyserver.ws.handshake import (
    HandshakeAccepted,
    HandshakeRefused,
    accept_key,
    origin_allowed,
    select_subprotocol,
    validate_handshake,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def base(**changes: str | None) -> list[tuple[str, str]]:
    headers = {
        "Host": "example.com:8080",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return list(headers.items())


def check(
    items: Sequence[tuple[str, str]], method: str = "GET", version: str = "1.1", **kw: Any
) -> HandshakeAccepted | HandshakeRefused:
    return validate_handshake(method, version, Headers(items), **kw)


def refused(result: HandshakeAccepted | HandshakeRefused) -> HandshakeRefused:
    assert isinstance(result, HandshakeRefused), result
    return result


def accepted(result: HandshakeAccepted | HandshakeRefused) -> HandshakeAccepted:
    assert isinstance(result, HandshakeAccepted), result
    return result


def test_rfc_example_key() -> None:
    # RFC 6455 section 1.3 (the brief quoted a corrupted value; this is the RFC's)
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_headers() -> None:
    result = accepted(check(base()))
    assert dict(result.headers) == {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    }
    assert result.subprotocol is None
    assert result.deflate is None


def test_case_insensitive_tokens_and_comma_lists() -> None:
    accepted(check(base(Upgrade="WebSocket", Connection="keep-alive, UPGRADE")))
    items = [*base(Connection=None), ("Connection", "keep-alive"), ("Connection", "upgrade")]
    accepted(check(items))


def test_not_get_is_405() -> None:
    result = refused(check(base(), method="POST"))
    assert result.status == 405
    assert ("Allow", "GET") in result.headers


def test_http_10_is_400() -> None:
    assert refused(check(base(), version="1.0")).status == 400


def test_missing_upgrade_is_426() -> None:
    result = refused(check(base(Upgrade=None)))
    assert result.status == 426
    assert ("Upgrade", "websocket") in result.headers
    assert refused(check(base(Upgrade="h2c"))).status == 426


def test_connection_without_upgrade_token_is_400() -> None:
    assert refused(check(base(Connection="keep-alive"))).status == 400
    assert refused(check(base(Connection=None))).status == 400


def test_missing_host_is_400() -> None:
    assert refused(check(base(Host=None))).status == 400


@pytest.mark.parametrize("version", ["8", "12", "13, 8", None])
def test_wrong_version_is_426_with_supported_version(version: str | None) -> None:
    result = refused(check(base(**{"Sec-WebSocket-Version": version})))
    assert result.status == 426
    assert ("Sec-WebSocket-Version", "13") in result.headers


@pytest.mark.parametrize(
    "key",
    [
        None,
        "not base64!",
        "dGhlIHNhbXBsZQ==",  # 10 bytes
        "dGhlIHNhbXBsZSBub25jZSBhbmQgbW9yZQ==",  # too long
    ],
)
def test_bad_key_is_400(key: str | None) -> None:
    assert refused(check(base(**{"Sec-WebSocket-Key": key}))).status == 400


def test_two_keys_is_400() -> None:
    assert refused(check([*base(), ("Sec-WebSocket-Key", KEY)])).status == 400


# -- origin ------------------------------------------------------------------------------


def test_same_origin_default() -> None:
    accepted(check(base(Origin="http://example.com:8080")))
    accepted(check(base(Origin="HTTPS://EXAMPLE.com:8080")))
    accepted(check(base(Host="example.com", Origin="http://example.com")))
    accepted(check(base(Host="example.com:443", Origin="https://example.com")))
    accepted(check(base(Origin=None)))


@pytest.mark.parametrize(
    "origin",
    ["http://evil.com:8080", "http://example.com:9090", "http://example.com", "null", "garbage"],
)
def test_cross_origin_is_403(origin: str) -> None:
    assert refused(check(base(Origin=origin))).status == 403


def test_allow_list_and_star() -> None:
    allowed = ["https://app.example.org"]
    accepted(check(base(Origin="https://app.example.org"), allowed_origins=allowed))
    accepted(check(base(Origin="https://APP.example.org/"), allowed_origins=allowed))
    assert refused(check(base(Origin="http://example.com:8080"), allowed_origins=allowed))
    accepted(check(base(Origin="http://anything.test"), allowed_origins=["*"]))
    accepted(check(base(Origin="null"), allowed_origins=["*"]))


def test_origin_allowed_ipv6() -> None:
    assert origin_allowed("http://[::1]:8000", "[::1]:8000", None)
    assert not origin_allowed("http://[::1]:8001", "[::1]:8000", None)


# -- subprotocols ------------------------------------------------------------------------


def test_subprotocol_server_preference() -> None:
    items = [*base(), ("Sec-WebSocket-Protocol", "chat.v1, chat.v2")]
    result = accepted(check(items, subprotocols=["chat.v2", "chat.v1"]))
    assert result.subprotocol == "chat.v2"
    assert ("Sec-WebSocket-Protocol", "chat.v2") in result.headers


def test_subprotocol_no_match_accepts_without_one() -> None:
    items = [*base(), ("Sec-WebSocket-Protocol", "mqtt")]
    result = accepted(check(items, subprotocols=["chat"]))
    assert result.subprotocol is None
    assert all(name != "Sec-WebSocket-Protocol" for name, _ in result.headers)


def test_select_subprotocol() -> None:
    assert select_subprotocol(["a", "b"], ["b", "a"]) == "b"
    assert select_subprotocol(["a"], []) is None
    assert select_subprotocol([], ["a"]) is None


# -- permessage-deflate ------------------------------------------------------------------


def test_deflate_off_by_default() -> None:
    items = [*base(), ("Sec-WebSocket-Extensions", "permessage-deflate")]
    result = accepted(check(items))
    assert result.deflate is None
    assert all(name != "Sec-WebSocket-Extensions" for name, _ in result.headers)


def test_deflate_negotiated_with_server_no_context_takeover() -> None:
    offer = "permessage-deflate; client_max_window_bits"
    result = accepted(check([*base(), ("Sec-WebSocket-Extensions", offer)], compression=True))
    assert result.deflate is not None
    assert result.deflate.server_no_context_takeover
    answer = dict(result.headers)["Sec-WebSocket-Extensions"]
    assert answer.startswith("permessage-deflate")
    assert "server_no_context_takeover" in answer


def test_deflate_unknown_extension_only() -> None:
    items = [*base(), ("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")]
    result = accepted(check(items, compression=True))
    assert result.deflate is None


def test_deflate_unacceptable_offer_declined() -> None:
    items = [*base(), ("Sec-WebSocket-Extensions", "permessage-deflate; bogus_param=1")]
    assert accepted(check(items, compression=True)).deflate is None


def test_deflate_malformed_is_400() -> None:
    items = [*base(), ("Sec-WebSocket-Extensions", "permessage-deflate;;")]
    assert refused(check(items, compression=True)).status == 400
