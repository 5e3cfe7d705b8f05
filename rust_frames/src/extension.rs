//! `Sec-WebSocket-Extensions` negotiation of permessage-deflate
//! (RFC 7692 section 7, header grammar of RFC 6455 section 9.1).
//!
//! # Parameter rules (RFC 7692 7.1.1 and 7.1.2)
//!
//! Server side ([`negotiate`]), for each permessage-deflate offer in order:
//!
//! * An offer with an unknown or duplicate parameter, a value on a
//!   `*_no_context_takeover` parameter, a window value that is not a decimal
//!   8 ..= 15 without leading zeros, or `server_max_window_bits` without a
//!   value is declined, and the next offer is tried.
//! * `server_no_context_takeover`: answered when offered (7.1.1.1 says the
//!   server accepts it by including it), and also whenever the server wishes:
//!   the server may always add it, which lets one compressed broadcast frame
//!   be shared by many connections.
//! * `client_no_context_takeover`: answered when the server wishes it, and
//!   echoed when the client offered it (the client has promised it anyway).
//! * `server_max_window_bits=N` in the offer: the answer must carry a value
//!   `<= N` (7.1.2.1). zlib cannot compress raw DEFLATE with an 8-bit window,
//!   so `N = 8` declines the offer (answering 9 is forbidden). As an answer of
//!   15 would be left out by [`response_header`] (it only writes non-default
//!   values), an offer of 15 gets 14 when the server's own limit is 15.
//!   Without the parameter in the offer the server may still announce a
//!   smaller window of its own (7.1.2.1).
//! * `client_max_window_bits`: absent from the offer means the client will
//!   use 15 and the answer must not carry it, so a server that needs less
//!   declines. Bare, the server picks its limit. With a value `V`, the
//!   client already promised `<= V`; the answer is `min(V, limit)`.
//!
//! The server's `client_max_window_bits` limit of 8 is treated as 9: the
//! inflater cannot use a smaller window than 9 anyway (see
//! [`crate::deflate`]) and zlib-based clients fail when told 8. The server's
//! own `server_max_window_bits` of 8 is treated as 9, as zlib cannot
//! compress with 8.
//!
//! Broadcast: `server_no_context_takeover` makes a compressed message
//! independent of the connection's history, but the agreed
//! `server_max_window_bits` still differs between connections (12 for
//! Python `websockets`' default offer, 14 for an offer of 15). A frame shared
//! by many connections must be compressed with a window no larger than each
//! recipient's (for example one compressed copy per distinct window).
//!
//! Client side ([`offer_header`], [`accept`]): the response may only carry
//! parameters RFC 7692 allows, each at most once, with a valid value, and
//! must honour what was demanded (`server_no_context_takeover`,
//! `server_max_window_bits`). A `client_max_window_bits=8` answer is
//! rejected because this crate cannot compress with an 8-bit window.

use std::fmt;
use std::fmt::Write as _;

/// The extension's registered name.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// permessage-deflate parameters: a server's wishes, a client's offer, or
/// the agreed result of a negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// Base-2 logarithm of the server's LZ77 window (8 ..= 15, 15 is the default).
    pub server_max_window_bits: u8,
    /// Base-2 logarithm of the client's LZ77 window (8 ..= 15, 15 is the default).
    ///
    /// For [`offer_header`] and [`accept`] only, 0 means "do not offer
    /// `client_max_window_bits`".
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// The RFC defaults: context takeover both ways, 15-bit windows.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// A malformed header, or (client side) an unacceptable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionError(pub String);

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExtensionError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ExtensionError> {
    Err(ExtensionError(msg.into()))
}

/// One parsed list element: an extension name (lowercased) and its
/// parameters (names lowercased, values unquoted).
#[derive(Debug)]
struct Extension {
    name: String,
    params: Vec<(String, Option<String>)>,
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Byte cursor over a header value.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self, what: &str) -> Result<String, ExtensionError> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        match self.s.get(start..self.i) {
            Some(t) if !t.is_empty() => Ok(String::from_utf8_lossy(t).to_ascii_lowercase()),
            _ => err(format!("expected {what} at byte {start}")),
        }
    }

    /// A quoted-string whose content must be a token (RFC 6455 9.1).
    fn quoted_token(&mut self) -> Result<String, ExtensionError> {
        let start = self.i;
        self.i += 1; // opening quote
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return err(format!("unterminated quoted-string at byte {start}")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c) if c == b'\t' || c >= 0x20 && c != 0x7f => value.push(c),
                        _ => return err(format!("bad quoted-pair at byte {}", self.i)),
                    }
                    self.i += 1;
                }
                Some(c) if c == b'\t' || c >= 0x20 && c != 0x7f => {
                    value.push(c);
                    self.i += 1;
                }
                Some(_) => {
                    return err(format!(
                        "control character in quoted-string at byte {}",
                        self.i
                    ));
                }
            }
        }
        if value.is_empty() || !value.iter().all(|&b| is_tchar(b)) {
            return err(format!("quoted value at byte {start} is not a token"));
        }
        Ok(String::from_utf8_lossy(&value).into_owned())
    }
}

/// Parses a `Sec-WebSocket-Extensions` value (several header lines joined
/// with ", "). Empty list elements are skipped (RFC 7230 7).
fn parse(header: &str) -> Result<Vec<Extension>, ExtensionError> {
    let mut c = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        c.skip_ows();
        match c.peek() {
            None => return Ok(out),
            Some(b',') => {
                c.i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = c.token("an extension name")?;
        let mut params = Vec::new();
        loop {
            c.skip_ows();
            match c.peek() {
                None | Some(b',') => break,
                Some(b';') => c.i += 1,
                Some(_) => return err(format!("unexpected character at byte {}", c.i)),
            }
            c.skip_ows();
            let pname = c.token("a parameter name")?;
            c.skip_ows();
            let value = if c.peek() == Some(b'=') {
                c.i += 1;
                c.skip_ows();
                if c.peek() == Some(b'"') {
                    Some(c.quoted_token()?)
                } else {
                    Some(c.token("a parameter value")?)
                }
            } else {
                None
            };
            params.push((pname, value));
        }
        out.push(Extension { name, params });
    }
}

/// Window bits: a decimal 8 ..= 15 without leading zeros (RFC 7692 7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

/// The parameters of one permessage-deflate element, checked for the
/// rules common to offers and responses.
#[derive(Debug, Default)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_params(params: &[(String, Option<String>)]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    for (name, value) in params {
        let value = value.as_deref();
        match name.as_str() {
            SERVER_NO_CONTEXT_TAKEOVER | CLIENT_NO_CONTEXT_TAKEOVER => {
                let flag = if name == SERVER_NO_CONTEXT_TAKEOVER {
                    &mut p.server_no_context_takeover
                } else {
                    &mut p.client_no_context_takeover
                };
                if *flag {
                    return Err(format!("duplicate {name}"));
                }
                if value.is_some() {
                    return Err(format!("{name} takes no value"));
                }
                *flag = true;
            }
            SERVER_MAX_WINDOW_BITS => {
                if p.server_max_window_bits.is_some() {
                    return Err(format!("duplicate {name}"));
                }
                let bits = value
                    .and_then(window_bits)
                    .ok_or_else(|| format!("{name} needs a value 8..=15"))?;
                p.server_max_window_bits = Some(bits);
            }
            CLIENT_MAX_WINDOW_BITS => {
                if p.client_max_window_bits.is_some() {
                    return Err(format!("duplicate {name}"));
                }
                p.client_max_window_bits = Some(match value {
                    None => None,
                    Some(v) => {
                        Some(window_bits(v).ok_or_else(|| format!("{name} must be 8..=15"))?)
                    }
                });
            }
            other => return Err(format!("unknown parameter {other}")),
        }
    }
    Ok(p)
}

/// Answers one offer, or `None` to decline it.
fn answer(offer: &Parsed, wishes: &DeflateParams) -> Option<DeflateParams> {
    // What we can compress with: 9 ..= 15 (module docs).
    let server_limit = wishes.server_max_window_bits.clamp(9, 15);
    let server_max_window_bits = match offer.server_max_window_bits {
        // We cannot honour 8 and must not answer more than asked.
        Some(asked) if asked < 9 => return None,
        // Must be echoed; 15 would be dropped by `response_header`.
        Some(asked) => asked.min(server_limit).min(14),
        None => server_limit,
    };
    // What our inflater accepts: 9 ..= 15 (module docs).
    let client_limit = wishes.client_max_window_bits.clamp(9, 15);
    let client_max_window_bits = match offer.client_max_window_bits {
        None if client_limit < 15 => return None,
        None => 15,
        Some(None) => client_limit,
        Some(Some(promised)) => promised.min(client_limit),
    };
    Some(DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || wishes.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || wishes.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    })
}

/// Server side. `offers` is the header value(s) joined with ", ". `wishes` are the
/// server's settings: server_no_context_takeover=true means the server insists on it
/// (it always may add it); client_no_context_takeover=true means the server asks the
/// client not to take over context; server_max_window_bits = the largest window the
/// server will use for its own compression (answer the min of that and what the client
/// demanded); client_max_window_bits = the largest the server's inflater allows (a
/// client that offered client_max_window_bits with no value or a value lets the server
/// choose; a client that did not offer client_max_window_bits must get no
/// client_max_window_bits in the answer, then the client uses 15, so if
/// wishes.client_max_window_bits < 15 that offer is declined).
///
/// Walk the offers in order; skip non-permessage-deflate extensions; an offer with an
/// unknown parameter, a duplicate parameter, or an invalid value (window bits outside
/// 8..=15, a value on the no_context_takeover params, server_max_window_bits with no
/// value) is declined (RFC 7692 says decline), not fatal; a syntactically broken
/// header (RFC 6455 9.1 grammar: tokens, quoted-string values allowed and unquoted per
/// 7692) is Err. Ok(None) when nothing acceptable.
///
/// The result is what the server uses; [`response_header`] turns it into the
/// answer. See the module docs for each parameter rule.
///
/// # Errors
/// A header that breaks the RFC 6455 9.1 grammar.
pub fn negotiate(
    offers: &str,
    wishes: &DeflateParams,
) -> Result<Option<DeflateParams>, ExtensionError> {
    for ext in parse(offers)? {
        if ext.name != PERMESSAGE_DEFLATE {
            continue;
        }
        let Ok(offer) = parse_params(&ext.params) else {
            continue;
        };
        if let Some(agreed) = answer(&offer, wishes) {
            return Ok(Some(agreed));
        }
    }
    Ok(None)
}

/// Appends the parameters of `p` that differ from the defaults, in a
/// stable order; window values are clamped to 8 ..= 15.
fn write_params(out: &mut String, p: &DeflateParams) {
    if p.server_no_context_takeover {
        out.push_str("; ");
        out.push_str(SERVER_NO_CONTEXT_TAKEOVER);
    }
    if p.client_no_context_takeover {
        out.push_str("; ");
        out.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
    }
    if p.server_max_window_bits < 15 {
        let _ = write!(
            out,
            "; {SERVER_MAX_WINDOW_BITS}={}",
            p.server_max_window_bits.max(8)
        );
    }
}

/// The server's `Sec-WebSocket-Extensions` answer for the agreed
/// parameters, e.g. `permessage-deflate; server_no_context_takeover;
/// client_max_window_bits=12`: only non-default parameters, in the order
/// server_no_context_takeover, client_no_context_takeover,
/// server_max_window_bits, client_max_window_bits.
#[must_use]
pub fn response_header(p: &DeflateParams) -> String {
    let mut out = String::from(PERMESSAGE_DEFLATE);
    write_params(&mut out, p);
    if p.client_max_window_bits < 15 {
        let _ = write!(
            out,
            "; {CLIENT_MAX_WINDOW_BITS}={}",
            p.client_max_window_bits.max(8)
        );
    }
    out
}

/// The client's offer, e.g. `permessage-deflate; client_max_window_bits`.
///
/// `client_max_window_bits` is always offered, bare when it is 15 (the
/// server may then pick), with its value otherwise; a value of 8 is offered
/// as 9 since this crate cannot compress with an 8-bit window, and 0 leaves
/// the parameter out. `server_max_window_bits` is offered when below 15.
#[must_use]
pub fn offer_header(p: &DeflateParams) -> String {
    let mut out = String::from(PERMESSAGE_DEFLATE);
    write_params(&mut out, p);
    match p.client_max_window_bits {
        0 => {}
        15.. => {
            out.push_str("; ");
            out.push_str(CLIENT_MAX_WINDOW_BITS);
        }
        bits => out.push_str(&format!("; {CLIENT_MAX_WINDOW_BITS}={}", bits.max(9))),
    }
    out
}

/// Client side: validate the server's response against what was offered (RFC 7692
/// 7.1: the server may not add params the client did not allow, e.g.
/// client_max_window_bits when not offered, a server_max_window_bits larger than
/// offered, unknown params, duplicates) and return the agreed params.
///
/// `offered` is what was passed to [`offer_header`]. The response must hold
/// exactly one extension, permessage-deflate (the client offered nothing
/// else).
///
/// # Errors
/// A broken header or an unacceptable response: the client must fail the
/// connection.
pub fn accept(response: &str, offered: &DeflateParams) -> Result<DeflateParams, ExtensionError> {
    let mut exts = parse(response)?.into_iter();
    let ext = match (exts.next(), exts.next()) {
        (Some(ext), None) => ext,
        (None, _) => return err("no extension in the response"),
        (Some(_), Some(_)) => return err("more than one extension in the response"),
    };
    if ext.name != PERMESSAGE_DEFLATE {
        return err(format!("extension {} was not offered", ext.name));
    }
    let r = parse_params(&ext.params).map_err(ExtensionError)?;

    if offered.server_no_context_takeover && !r.server_no_context_takeover {
        return err("server_no_context_takeover was demanded but not answered");
    }

    let server_max_window_bits = if offered.server_max_window_bits < 15 {
        let asked = offered.server_max_window_bits.max(8);
        match r.server_max_window_bits {
            Some(bits) if bits <= asked => bits,
            Some(_) => return err("server_max_window_bits larger than offered"),
            None => return err("server_max_window_bits was demanded but not answered"),
        }
    } else {
        r.server_max_window_bits.unwrap_or(15)
    };

    let client_max_window_bits = match (offered.client_max_window_bits, r.client_max_window_bits) {
        (0, Some(_)) => return err("client_max_window_bits was not offered"),
        (0, None) => 15,
        (_, Some(None)) => return err("client_max_window_bits needs a value in a response"),
        (mine, Some(Some(bits))) => {
            // RFC 7692 7.1.2.2: the server may only lower the value we offered.
            if bits > mine.clamp(9, 15) {
                return err("client_max_window_bits is larger than offered");
            }
            if bits < 9 {
                return err("client_max_window_bits=8 is not supported");
            }
            bits
        }
        (mine, None) => mine.clamp(9, 15),
    };

    Ok(DeflateParams {
        server_no_context_takeover: r.server_no_context_takeover,
        client_no_context_takeover: r.client_no_context_takeover
            || offered.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEFAULT: DeflateParams = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    const BROADCAST: DeflateParams = DeflateParams {
        server_no_context_takeover: true,
        ..DEFAULT
    };
    const SMALL: DeflateParams = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: true,
        server_max_window_bits: 10,
        client_max_window_bits: 12,
    };

    const fn p(snct: bool, cnct: bool, smwb: u8, cmwb: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: smwb,
            client_max_window_bits: cmwb,
        }
    }

    const CHROMIUM: &str = "permessage-deflate; client_max_window_bits";
    const FIREFOX: &str = "permessage-deflate";
    const NODE_WS: &str = "permessage-deflate; client_max_window_bits";
    const PY_WEBSOCKETS: &str =
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12";

    /// (offer, wishes, expected answer header or None for decline)
    const TABLE: &[(&str, DeflateParams, Option<&str>)] = &[
        // Real-world offers.
        (FIREFOX, DEFAULT, Some("permessage-deflate")),
        (
            FIREFOX,
            BROADCAST,
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (FIREFOX, SMALL, None), // cannot limit a client that did not offer client_max_window_bits
        (CHROMIUM, DEFAULT, Some("permessage-deflate")),
        (
            CHROMIUM,
            BROADCAST,
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            CHROMIUM,
            SMALL,
            Some(
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
            ),
        ),
        (NODE_WS, DEFAULT, Some("permessage-deflate")),
        (
            PY_WEBSOCKETS,
            DEFAULT,
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
        ),
        (
            PY_WEBSOCKETS,
            BROADCAST,
            Some(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12",
            ),
        ),
        (
            PY_WEBSOCKETS,
            SMALL,
            Some(
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
            ),
        ),
        // Chromium's old offer list: the unknown extension is skipped.
        (
            "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
            DEFAULT,
            Some("permessage-deflate"),
        ),
        // server_no_context_takeover: offered means answered.
        (
            "permessage-deflate; server_no_context_takeover",
            DEFAULT,
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        // client_no_context_takeover: echoed when offered.
        (
            "permessage-deflate; client_no_context_takeover",
            DEFAULT,
            Some("permessage-deflate; client_no_context_takeover"),
        ),
        // server_max_window_bits: never more than asked, 8 declined, 15 echoed as 14.
        (
            "permessage-deflate; server_max_window_bits=10",
            DEFAULT,
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        ("permessage-deflate; server_max_window_bits=12", SMALL, None), // SMALL needs client_max_window_bits
        (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits",
            SMALL,
            Some(
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
            ),
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            DEFAULT,
            Some("permessage-deflate; server_max_window_bits=9"),
        ),
        (
            "permessage-deflate; server_max_window_bits=8",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            DEFAULT,
            Some("permessage-deflate"),
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            DEFAULT,
            Some("permessage-deflate; server_max_window_bits=14"),
        ),
        ("permessage-deflate; server_max_window_bits", DEFAULT, None),
        (
            "permessage-deflate; server_max_window_bits=16",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; server_max_window_bits=7",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; server_max_window_bits=08",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; server_max_window_bits=abc",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; server_max_window_bits=\"10\"",
            DEFAULT,
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        // client_max_window_bits: a value is a promise; bare lets the server pick.
        (
            "permessage-deflate; client_max_window_bits=8",
            DEFAULT,
            Some("permessage-deflate; client_max_window_bits=8"),
        ),
        (
            "permessage-deflate; client_max_window_bits=14",
            SMALL,
            Some(
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
            ),
        ),
        (
            "permessage-deflate; client_max_window_bits=\"9\"",
            SMALL,
            Some(
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
            ),
        ),
        (
            "permessage-deflate; client_max_window_bits=16",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; client_max_window_bits=0",
            DEFAULT,
            None,
        ),
        // Values on flags, duplicates and unknown parameters decline the offer.
        (
            "permessage-deflate; server_no_context_takeover=1",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; client_no_context_takeover=\"x\"",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            DEFAULT,
            None,
        ),
        (
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            DEFAULT,
            None,
        ),
        ("permessage-deflate; foo", DEFAULT, None),
        (
            "permessage-deflate; foo, permessage-deflate; client_max_window_bits",
            SMALL,
            Some(
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
            ),
        ),
        // Nothing offered.
        ("", DEFAULT, None),
        ("x-foo; bar=1", DEFAULT, None),
        // Tolerated spelling: case, whitespace, empty list elements.
        (
            "Permessage-Deflate; Client_Max_Window_Bits",
            DEFAULT,
            Some("permessage-deflate"),
        ),
        (
            " ,\tpermessage-deflate ;client_max_window_bits = 10 , ",
            DEFAULT,
            Some("permessage-deflate; client_max_window_bits=10"),
        ),
        // The server's own 8s become 9s.
        (
            CHROMIUM,
            p(false, false, 8, 8),
            Some("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"),
        ),
    ];

    #[test]
    fn negotiation_table() {
        for (offer, wishes, want) in TABLE {
            let got = negotiate(offer, wishes).unwrap_or_else(|e| panic!("{offer:?}: {e}"));
            assert_eq!(
                got.as_ref().map(response_header).as_deref(),
                *want,
                "offer {offer:?} wishes {wishes:?}"
            );
        }
    }

    #[test]
    fn negotiation_results() {
        assert_eq!(negotiate(FIREFOX, &DEFAULT).unwrap(), Some(DEFAULT));
        assert_eq!(negotiate(CHROMIUM, &BROADCAST).unwrap(), Some(BROADCAST));
        assert_eq!(
            negotiate(PY_WEBSOCKETS, &DEFAULT).unwrap(),
            Some(p(false, false, 12, 12))
        );
        assert_eq!(negotiate(CHROMIUM, &SMALL).unwrap(), Some(SMALL));
        assert_eq!(
            negotiate("permessage-deflate; server_max_window_bits=15", &DEFAULT).unwrap(),
            Some(p(false, false, 14, 15))
        );
    }

    #[test]
    fn broadcast_wish_is_always_answered() {
        for (offer, _, _) in TABLE {
            let with_default = negotiate(offer, &DEFAULT).unwrap();
            match negotiate(offer, &BROADCAST).unwrap() {
                Some(agreed) => {
                    assert!(agreed.server_no_context_takeover, "{offer:?}");
                    assert!(response_header(&agreed).contains("server_no_context_takeover"));
                    assert_eq!(
                        Some(DeflateParams {
                            server_no_context_takeover: false,
                            ..agreed
                        }),
                        with_default.map(|d| DeflateParams {
                            server_no_context_takeover: false,
                            ..d
                        })
                    );
                }
                None => assert_eq!(with_default, None, "{offer:?}"),
            }
        }
    }

    #[test]
    fn broken_headers_are_errors() {
        for bad in [
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate;",
            "permessage-deflate; ; client_max_window_bits",
            "permessage-deflate client_max_window_bits",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=\"1 0\"",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; a=b=c",
            "perm@ssage-deflate",
            "permessage-deflate; x=\"a\\\u{1}\"",
            "permessage-deflate; client_max_window_bits=1\u{e9}",
            "=10",
            ";",
        ] {
            assert!(
                negotiate(bad, &DEFAULT).is_err(),
                "{bad:?} should be an error"
            );
            assert!(accept(bad, &DEFAULT).is_err(), "{bad:?} should be an error");
        }
        // A broken element after a good one still breaks the header.
        assert!(negotiate("permessage-deflate, x;", &DEFAULT).is_err());
    }

    #[test]
    fn quoted_pairs_unescape() {
        assert_eq!(
            negotiate(
                "permessage-deflate; server_max_window_bits=\"1\\1\"",
                &DEFAULT
            )
            .unwrap(),
            Some(p(false, false, 11, 15))
        );
    }

    #[test]
    fn offer_headers() {
        assert_eq!(offer_header(&DEFAULT), CHROMIUM);
        assert_eq!(offer_header(&p(false, false, 12, 12)), PY_WEBSOCKETS);
        assert_eq!(
            offer_header(&p(true, true, 15, 10)),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
        );
        assert_eq!(
            offer_header(&p(false, false, 15, 8)),
            "permessage-deflate; client_max_window_bits=9"
        );
        assert_eq!(
            offer_header(&p(false, false, 8, 0)),
            "permessage-deflate; server_max_window_bits=8"
        );
    }

    /// (offered, response, expected agreed params or None for an error)
    fn accept_table() -> Vec<(DeflateParams, &'static str, Option<DeflateParams>)> {
        let no_cmwb = p(false, false, 15, 0);
        vec![
            (DEFAULT, "permessage-deflate", Some(DEFAULT)),
            (
                DEFAULT,
                "permessage-deflate; server_no_context_takeover",
                Some(BROADCAST),
            ),
            (
                DEFAULT,
                "permessage-deflate; client_no_context_takeover",
                Some(p(false, true, 15, 15)),
            ),
            (
                DEFAULT,
                "permessage-deflate; server_max_window_bits=10",
                Some(p(false, false, 10, 15)),
            ),
            (
                DEFAULT,
                "permessage-deflate; server_max_window_bits=8",
                Some(p(false, false, 8, 15)),
            ),
            (
                DEFAULT,
                "permessage-deflate; client_max_window_bits=10",
                Some(p(false, false, 15, 10)),
            ),
            (
                DEFAULT,
                "permessage-deflate; client_max_window_bits=8",
                None,
            ),
            (DEFAULT, "permessage-deflate; client_max_window_bits", None),
            (DEFAULT, "permessage-deflate; server_max_window_bits", None),
            (
                DEFAULT,
                "permessage-deflate; server_max_window_bits=16",
                None,
            ),
            (
                DEFAULT,
                "permessage-deflate; server_no_context_takeover=x",
                None,
            ),
            (
                DEFAULT,
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                None,
            ),
            (DEFAULT, "permessage-deflate; foo", None),
            (DEFAULT, "x-foo", None),
            (DEFAULT, "", None),
            (DEFAULT, "permessage-deflate, permessage-deflate", None),
            (DEFAULT, "permessage-deflate, x-foo", None),
            // Demanded server_no_context_takeover must be answered.
            (BROADCAST, "permessage-deflate", None),
            (
                BROADCAST,
                "permessage-deflate; server_no_context_takeover",
                Some(BROADCAST),
            ),
            // Demanded server_max_window_bits must be answered, no larger.
            (p(false, false, 12, 15), "permessage-deflate", None),
            (
                p(false, false, 12, 15),
                "permessage-deflate; server_max_window_bits=13",
                None,
            ),
            (
                p(false, false, 12, 15),
                "permessage-deflate; server_max_window_bits=12",
                Some(p(false, false, 12, 15)),
            ),
            (
                p(false, false, 12, 15),
                "permessage-deflate; server_max_window_bits=9",
                Some(p(false, false, 9, 15)),
            ),
            // A client_max_window_bits value in the offer binds the client.
            (
                p(false, false, 15, 12),
                "permessage-deflate",
                Some(p(false, false, 15, 12)),
            ),
            (
                p(false, false, 15, 12),
                "permessage-deflate; client_max_window_bits=10",
                Some(p(false, false, 15, 10)),
            ),
            // A client window larger than offered is refused (RFC 7692 7.1.2.2).
            (
                p(false, false, 15, 12),
                "permessage-deflate; client_max_window_bits=14",
                None,
            ),
            // client_max_window_bits not offered: must not be answered.
            (no_cmwb, "permessage-deflate", Some(DEFAULT)),
            (
                no_cmwb,
                "permessage-deflate; client_max_window_bits=10",
                None,
            ),
            // An offered client_no_context_takeover holds even if not echoed.
            (
                p(false, true, 15, 15),
                "permessage-deflate",
                Some(p(false, true, 15, 15)),
            ),
            // What Python websockets' server answers to its own client's offer.
            (
                p(false, false, 12, 12),
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
                Some(p(false, false, 12, 12)),
            ),
        ]
    }

    #[test]
    fn accept_cases() {
        for (offered, response, want) in accept_table() {
            let got = accept(response, &offered).ok();
            assert_eq!(got, want, "offered {offered:?} response {response:?}");
        }
    }

    #[test]
    fn client_and_server_agree() {
        let bits = [8u8, 9, 12, 15];
        let mut accepted = 0;
        for snct in [false, true] {
            for cnct in [false, true] {
                for sm in bits {
                    for cm in [0u8, 8, 9, 12, 15] {
                        let offered = p(snct, cnct, sm, cm);
                        for wishes in [
                            DEFAULT,
                            BROADCAST,
                            SMALL,
                            p(true, true, 9, 9),
                            p(false, false, 12, 15),
                        ] {
                            let header = offer_header(&offered);
                            let Some(agreed) = negotiate(&header, &wishes).unwrap() else {
                                continue;
                            };
                            accepted += 1;
                            let response = response_header(&agreed);
                            let client = accept(&response, &offered)
                                .unwrap_or_else(|e| panic!("{header:?} -> {response:?}: {e}"));
                            assert_eq!(client, agreed, "{header:?} -> {response:?}");
                            // The server never compresses with 8, nor more than asked.
                            assert!(agreed.server_max_window_bits >= 9);
                            assert!(
                                agreed.server_max_window_bits
                                    <= wishes.server_max_window_bits.max(9)
                            );
                            assert!(
                                agreed.client_max_window_bits
                                    <= wishes.client_max_window_bits.max(9)
                            );
                        }
                    }
                }
            }
        }
        assert!(accepted > 100, "only {accepted} negotiations succeeded");
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(s in "[ -~\t\u{e9}]{0,80}") {
            let _ = negotiate(&s, &DEFAULT);
            let _ = accept(&s, &DEFAULT);
        }

        #[test]
        fn structured_headers_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("permessage-deflate"), Just(";"), Just(","), Just("="), Just(" "), Just("\""),
                    Just("server_no_context_takeover"), Just("client_no_context_takeover"),
                    Just("server_max_window_bits"), Just("client_max_window_bits"),
                    Just("8"), Just("9"), Just("15"), Just("16"), Just("\\"),
                ],
                0..12,
            )
        ) {
            let s: String = parts.concat();
            let _ = negotiate(&s, &SMALL);
            let _ = accept(&s, &SMALL);
        }
    }
}
