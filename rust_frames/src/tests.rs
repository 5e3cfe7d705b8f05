//! Decoder and encoder tests: RFC 6455 and RFC 7692 vectors, every error with its close
//! code, and property tests (round trips in random fragmentations and chunkings; arbitrary
//! bytes never panic).

use proptest::prelude::*;

use crate::decoder::{Decoder, Message, Role};
use crate::deflate::Deflater;
use crate::encoder::{Encoder, close_payload};
use crate::error::FrameError;
use crate::extension::DeflateParams;
use crate::frame::{OpCode, encode_frame, first_byte};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const MIB: usize = 1 << 20;

fn params(server_nct: bool, client_nct: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

fn feed(dec: &mut Decoder, data: &[u8]) -> Result<Vec<Message>, (FrameError, Vec<Message>)> {
    let mut out = Vec::new();
    match dec.feed(data, &mut out) {
        Ok(()) => Ok(out),
        Err(e) => Err((e, out)),
    }
}

fn server() -> Decoder {
    Decoder::new(Role::Server, MIB, MIB, None)
}

fn client() -> Decoder {
    Decoder::new(Role::Client, MIB, MIB, None)
}

/// Feed `data` whole, then byte by byte into a fresh decoder, and check both agree.
fn decode_both_ways(make: impl Fn() -> Decoder, data: &[u8]) -> Vec<Message> {
    let whole = feed(&mut make(), data).expect("decodes whole");
    let mut dec = make();
    let mut bytewise = Vec::new();
    for b in data {
        bytewise.extend(feed(&mut dec, &[*b]).expect("decodes byte by byte"));
    }
    assert_eq!(whole, bytewise);
    assert_eq!(dec.buffered(), 0);
    whole
}

fn text(s: &str) -> Message {
    Message::Text(s.to_owned())
}

fn err_code(make: impl Fn() -> Decoder, data: &[u8]) -> (FrameError, u16) {
    let (e, _) = feed(&mut make(), data).expect_err("must fail");
    // Byte by byte must fail the same way.
    let mut dec = make();
    let mut failed = None;
    for b in data {
        if let Err((e2, _)) = feed(&mut dec, &[*b]) {
            failed = Some(e2);
            break;
        }
    }
    assert_eq!(
        failed.as_ref(),
        Some(&e),
        "byte-by-byte feeding fails the same way"
    );
    let code = e.close_code();
    (e, code)
}

#[test]
fn rfc6455_single_frame_masked_and_unmasked() {
    let masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(decode_both_ways(server, &masked), [text("Hello")]);
    let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(decode_both_ways(client, &unmasked), [text("Hello")]);
}

#[test]
fn rfc6455_fragmented_and_ping() {
    let frag = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(decode_both_ways(client, &frag), [text("Hello")]);
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        decode_both_ways(client, &ping),
        [Message::Ping(b"Hello".to_vec())]
    );
    let masked_pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode_both_ways(server, &masked_pong),
        [Message::Pong(b"Hello".to_vec())]
    );
}

#[test]
fn rfc6455_long_binary_frames() {
    let mut f256 = vec![0x82, 0x7e, 0x01, 0x00];
    f256.extend((0..256).map(|i| i as u8));
    assert_eq!(
        decode_both_ways(client, &f256),
        [Message::Binary((0..256).map(|i| i as u8).collect())]
    );
    let mut f64k = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
    f64k.extend(std::iter::repeat_n(7u8, 65536));
    let got = feed(&mut client(), &f64k).unwrap();
    assert_eq!(got, [Message::Binary(vec![7; 65536])]);
}

#[test]
fn incomplete_header_is_not_consumed() {
    let mut dec = server();
    let frame = encode_frame(0x82, Some(KEY), &[1u8; 300]);
    assert_eq!(feed(&mut dec, &frame[..3]).unwrap(), []);
    assert_eq!(dec.buffered(), 3);
    assert_eq!(feed(&mut dec, &frame[3..100]).unwrap(), []);
    assert_eq!(dec.buffered(), 100);
    let mut rest = frame[100..].to_vec();
    rest.extend(encode_frame(0x81, Some(KEY), b"next"));
    rest.extend(&encode_frame(0x81, Some(KEY), b"partial")[..5]);
    assert_eq!(
        feed(&mut dec, &rest).unwrap(),
        [Message::Binary(vec![1; 300]), text("next")]
    );
    assert_eq!(dec.buffered(), 5);
}

#[test]
fn control_frames_between_fragments() {
    let mut data = encode_frame(0x01, Some(KEY), "Hé".as_bytes());
    data.extend(encode_frame(0x89, Some(KEY), b"p"));
    data.extend(encode_frame(0x00, Some(KEY), b"ll"));
    data.extend(encode_frame(0x8a, Some(KEY), b""));
    data.extend(encode_frame(0x80, Some(KEY), b"o"));
    let got = decode_both_ways(server, &data);
    assert_eq!(
        got,
        [
            Message::Ping(b"p".to_vec()),
            Message::Pong(vec![]),
            text("Héllo")
        ]
    );
}

#[test]
fn close_frames() {
    let mut payload = close_payload(Some(1000), "bye").unwrap();
    let mut dec = server();
    let mut data = encode_frame(0x88, Some(KEY), &payload);
    data.extend(encode_frame(0x81, Some(KEY), b"ignored"));
    assert_eq!(
        feed(&mut dec, &data).unwrap(),
        [Message::Close(Some(1000), "bye".into())]
    );
    assert!(dec.is_closed());
    assert_eq!(
        feed(&mut dec, b"x").unwrap_err().0,
        FrameError::DataAfterClose
    );
    assert_eq!(feed(&mut dec, b"").unwrap(), []);
    assert_eq!(
        decode_both_ways(client, &[0x88, 0x00]),
        [Message::Close(None, String::new())]
    );
    for code in [1000u16, 1003, 1007, 1014, 3000, 4999] {
        payload = code.to_be_bytes().to_vec();
        assert_eq!(
            decode_both_ways(client, &encode_frame(0x88, None, &payload)),
            [Message::Close(Some(code), String::new())]
        );
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let (e, c) = err_code(client, &encode_frame(0x88, None, &code.to_be_bytes()));
        assert_eq!((e, c), (FrameError::InvalidCloseCode(code), 1002));
    }
    assert_eq!(
        err_code(client, &[0x88, 0x01, 0x03]),
        (FrameError::CloseFrameTooShort, 1002)
    );
    assert_eq!(
        err_code(client, &[0x88, 0x04, 0x03, 0xe8, 0xff, 0xfe]),
        (FrameError::InvalidCloseReason, 1007)
    );
}

#[test]
fn protocol_errors_carry_1002() {
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (
            vec![0x81, 0x05, b'H', b'e', b'l', b'l', b'o'],
            FrameError::UnmaskedFrame,
        ),
        (
            encode_frame(0xc1, Some(KEY), b"x"),
            FrameError::ReservedBits(4),
        ),
        (
            encode_frame(0xa1, Some(KEY), b"x"),
            FrameError::ReservedBits(2),
        ),
        (
            encode_frame(0x91, Some(KEY), b"x"),
            FrameError::ReservedBits(1),
        ),
        (
            encode_frame(0x83, Some(KEY), b"x"),
            FrameError::ReservedOpcode(3),
        ),
        (
            encode_frame(0x87, Some(KEY), b"x"),
            FrameError::ReservedOpcode(7),
        ),
        (
            encode_frame(0x8b, Some(KEY), b"x"),
            FrameError::ReservedOpcode(0xb),
        ),
        (
            encode_frame(0x8f, Some(KEY), b"x"),
            FrameError::ReservedOpcode(0xf),
        ),
        (
            encode_frame(0x89, Some(KEY), &[0; 126]),
            FrameError::ControlFrameTooLong(126),
        ),
        (
            encode_frame(0x09, Some(KEY), b"x"),
            FrameError::FragmentedControlFrame,
        ),
        (
            vec![0x82, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 0, 0, 0, 0, 0],
            FrameError::NonMinimalLength(5),
        ),
        (
            vec![0x82, 0xff, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4],
            FrameError::NonMinimalLength(256),
        ),
        (
            vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            FrameError::LengthMsbSet,
        ),
        (
            encode_frame(0x80, Some(KEY), b"x"),
            FrameError::UnexpectedContinuation,
        ),
        (
            [
                encode_frame(0x01, Some(KEY), b"a"),
                encode_frame(0x81, Some(KEY), b"b"),
            ]
            .concat(),
            FrameError::ExpectedContinuation,
        ),
        (
            [
                encode_frame(0x02, Some(KEY), b"a"),
                encode_frame(0x02, Some(KEY), b"b"),
            ]
            .concat(),
            FrameError::ExpectedContinuation,
        ),
    ];
    for (data, expected) in cases {
        assert_eq!(
            err_code(server, &data),
            (expected.clone(), 1002),
            "{expected:?}"
        );
    }
    assert_eq!(
        err_code(client, &encode_frame(0x81, Some(KEY), b"x")),
        (FrameError::MaskedFrame, 1002)
    );
    // With deflate negotiated: RSV1 on control and continuation frames.
    let p = params(false, false);
    let deflating = || Decoder::new(Role::Client, MIB, MIB, Some(&p));
    assert_eq!(
        err_code(deflating, &[0xc9, 0x00]),
        (FrameError::CompressedControl, 1002)
    );
    assert_eq!(
        err_code(deflating, &[0x41, 0x01, 0x00, 0xc0, 0x00]),
        (FrameError::CompressedContinuation, 1002)
    );
    assert_eq!(
        err_code(deflating, &[0xe1, 0x00]),
        (FrameError::ReservedBits(6), 1002)
    );
}

#[test]
fn invalid_utf8_is_1007_and_fails_fast() {
    assert_eq!(
        err_code(client, &encode_frame(0x81, None, b"a\xff")),
        (FrameError::InvalidUtf8, 1007)
    );
    // An impossible byte in the first fragment fails before the message ends.
    let mut dec = client();
    let (e, _) = feed(&mut dec, &encode_frame(0x01, None, b"ok\xf5")).unwrap_err();
    assert_eq!(e, FrameError::InvalidUtf8);
    // A code point split across fragments is fine, a truncated one at the end is not.
    let euro = "€".as_bytes();
    let mut split = encode_frame(0x01, None, &euro[..1]);
    split.extend(encode_frame(0x00, None, &euro[1..2]));
    split.extend(encode_frame(0x80, None, &euro[2..]));
    assert_eq!(decode_both_ways(client, &split), [text("€")]);
    let mut trunc = encode_frame(0x01, None, b"a");
    trunc.extend(encode_frame(0x80, None, &euro[..2]));
    assert_eq!(err_code(client, &trunc), (FrameError::InvalidUtf8, 1007));
    // Surrogates (ED A0..) fail on the fragment that carries them.
    let mut dec = client();
    assert_eq!(
        feed(&mut dec, &encode_frame(0x01, None, b"\xed\xa0"))
            .unwrap_err()
            .0,
        FrameError::InvalidUtf8
    );
}

#[test]
fn limits_are_1009_and_checked_from_the_header() {
    let small = || Decoder::new(Role::Server, 100, 150, None);
    // Only the header of a too-big frame is needed to fail.
    let header = &encode_frame(0x82, Some(KEY), &[0; 101])[..8];
    assert_eq!(
        err_code(small, header),
        (
            FrameError::FrameTooBig {
                size: 101,
                max: 100
            },
            1009
        )
    );
    let mut frags = encode_frame(0x02, Some(KEY), &[0; 100]);
    frags.extend(&encode_frame(0x80, Some(KEY), &[0; 51])[..8]);
    assert_eq!(
        err_code(small, &frags),
        (FrameError::MessageTooBig { max: 150 }, 1009)
    );
    let mut ok = encode_frame(0x02, Some(KEY), &[0; 100]);
    ok.extend(encode_frame(0x80, Some(KEY), &[0; 50]));
    assert_eq!(
        decode_both_ways(small, &ok),
        [Message::Binary(vec![0; 150])]
    );
    // A huge 64-bit length fails at once, never allocates.
    let huge = [
        0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
    ];
    assert_eq!(err_code(server, &huge).1, 1009);
}

#[test]
fn errors_are_sticky_and_keep_earlier_messages() {
    let mut dec = server();
    let mut data = encode_frame(0x81, Some(KEY), b"one");
    data.extend(encode_frame(0x83, Some(KEY), b""));
    let (e, before) = feed(&mut dec, &data).unwrap_err();
    assert_eq!(before, [text("one")]);
    assert_eq!(e, FrameError::ReservedOpcode(3));
    assert_eq!(
        feed(&mut dec, &encode_frame(0x81, Some(KEY), b"x"))
            .unwrap_err()
            .0,
        e
    );
    assert_eq!(dec.buffered(), 0);
}

// RFC 7692 section 7.2.3: the examples are server-to-client (unmasked) frames.
fn deflate_client(p: &DeflateParams) -> Decoder {
    Decoder::new(Role::Client, MIB, MIB, Some(p))
}

#[test]
fn rfc7692_vectors() {
    let p = params(false, false);
    let hello = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(
        decode_both_ways(|| deflate_client(&p), &hello),
        [text("Hello")]
    );
    // 7.2.3.2: the second message refers back into the first one's window.
    let mut two = hello.to_vec();
    two.extend([0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
    assert_eq!(
        decode_both_ways(|| deflate_client(&p), &two),
        [text("Hello"), text("Hello")]
    );
    // 7.2.3.1: the same message in two fragments.
    let frags = [
        0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(
        decode_both_ways(|| deflate_client(&p), &frags),
        [text("Hello")]
    );
    // 7.2.3.3: a stored (no compression) block.
    let stored = [
        0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(
        decode_both_ways(|| deflate_client(&p), &stored),
        [text("Hello")]
    );
    // 7.2.3.4: a block with BFINAL set.
    let bfinal = [0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(
        decode_both_ways(|| deflate_client(&p), &bfinal),
        [text("Hello")]
    );
    // Uncompressed messages still work next to compressed ones.
    let mut mixed = vec![0x81, 0x02, b'h', b'i'];
    mixed.extend(hello);
    assert_eq!(
        decode_both_ways(|| deflate_client(&p), &mixed),
        [text("hi"), text("Hello")]
    );
}

#[test]
fn deflate_context_takeover_needs_the_previous_message() {
    // Without context takeover, 7.2.3.2's second frame cannot be inflated on its own.
    let p = params(true, false);
    let mut dec = deflate_client(&p);
    let mut two = vec![0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    two.extend([0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
    let (e, before) = feed(&mut dec, &two).unwrap_err();
    assert_eq!(before, [text("Hello")]);
    assert_eq!(e.close_code(), 1007);
}

#[test]
fn deflate_bomb_is_1009() {
    let bomb = crate::deflate::deflate_raw(&vec![0u8; 4 * MIB], 9, 15);
    assert!(bomb.len() < 10_000, "{}", bomb.len());
    let p = params(false, false);
    let mut data = vec![0xc2, 0x7e];
    data.extend(u16::try_from(bomb.len()).unwrap().to_be_bytes());
    data.extend(&bomb);
    let mut dec = deflate_client(&p);
    let (e, _) = feed(&mut dec, &data).unwrap_err();
    assert_eq!(
        (e.clone(), e.close_code()),
        (FrameError::MessageTooBig { max: MIB as u64 }, 1009)
    );
}

#[test]
fn the_limit_counts_the_inflated_message_not_the_wire() {
    // Incompressible data grows a little when deflated: a message of exactly the limit
    // must still pass, and one byte more must not.
    let mut noise = vec![0u8; MIB];
    let mut x: u32 = 0x1234_5678;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x.to_le_bytes()[0];
    }
    let p = params(true, true);
    for (len, ok) in [(MIB, true), (MIB + 1, false)] {
        let mut payload = noise.clone();
        payload.resize(len, 7);
        let compressed = crate::deflate::deflate_raw(&payload, 6, 15);
        assert!(
            compressed.len() > MIB,
            "the test needs expansion: {}",
            compressed.len()
        );
        let frame = encode_frame(0xc2, None, &compressed);
        let got = feed(&mut deflate_client(&p), &frame);
        if ok {
            assert_eq!(got.expect("within the limit"), [Message::Binary(payload)]);
        } else {
            assert_eq!(got.expect_err("over the limit").0.close_code(), 1009);
        }
    }
}

#[test]
fn corrupt_deflate_is_1007() {
    let p = params(false, false);
    let (e, code) = err_code(|| deflate_client(&p), &[0xc1, 0x03, 0xff, 0xff, 0xff]);
    assert!(matches!(e, FrameError::CorruptDeflate(_)));
    assert_eq!(code, 1007);
}

#[test]
fn encoder_vectors() {
    let mut enc = Encoder::new(Role::Server, None, 6, 0);
    assert_eq!(
        enc.message(true, b"Hello", true).unwrap().to_vec(),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    assert_eq!(
        enc.control(OpCode::Ping, b"Hello").unwrap().to_vec(),
        [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    assert!(enc.control(OpCode::Ping, &[0; 126]).is_err());
    assert_eq!(close_payload(Some(1000), "").unwrap(), [0x03, 0xe8]);
    assert!(close_payload(Some(1005), "").is_err());
    assert!(close_payload(None, "why").is_err());
    assert!(close_payload(Some(1000), &"x".repeat(124)).is_err());
    let mut client_enc = Encoder::new(Role::Client, None, 6, 0);
    let a = client_enc.message(true, b"Hello", true).unwrap().to_vec();
    let b = client_enc.message(true, b"Hello", true).unwrap().to_vec();
    assert_eq!((a[0], a[1], a.len()), (0x81, 0x85, 11));
    assert_ne!(a[2..6], b[2..6], "fresh mask keys");
    assert_eq!(
        feed(&mut server(), &[a, b].concat()).unwrap(),
        [text("Hello"), text("Hello")]
    );
    // RFC 7692: the server's compressed "Hello", then the context-takeover second message.
    let p = params(false, false);
    let mut enc = Encoder::new(Role::Server, Some(&p), 6, 0);
    let first = enc.message(true, b"Hello", true).unwrap().to_vec();
    assert_eq!(
        first,
        [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    );
    let second = enc.message(true, b"Hello", true).unwrap().to_vec();
    assert_eq!(second, [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
    let third = enc.message(true, b"Hello", false).unwrap().to_vec();
    assert_eq!(third[0], 0x81);
}

#[test]
fn encoder_threshold_level_and_the_per_message_flag() {
    // Node's perMessageDeflate: messages under the threshold go out plain (RSV1 unset),
    // messages at or over it compressed (RSV1 set), and compress=false always plain.
    let p = params(true, false);
    let text = "pyserver ".repeat(200);
    let payload = text.as_bytes();
    let mut enc = Encoder::new(Role::Server, Some(&p), 6, payload.len());
    assert_eq!(enc.message(true, payload, true).unwrap().to_vec()[0], 0xc1);
    assert_eq!(
        enc.message(true, &payload[1..], true).unwrap().to_vec()[0],
        0x81
    );
    assert_eq!(enc.message(true, payload, false).unwrap().to_vec()[0], 0x81);
    // the level reaches zlib: 0 stores (the payload plus framing: not smaller, so a
    // no-context-takeover encoder sends it plain), 1 and 9 shrink it, 9 at least as much
    let mut sizes = Vec::new();
    for level in [0, 1, 9] {
        let mut enc = Encoder::new(Role::Server, Some(&p), level, 0);
        let frame = enc.message(true, payload, true).unwrap().to_vec();
        let mut dec = Decoder::new(Role::Client, MIB, MIB, Some(&p));
        assert_eq!(feed(&mut dec, &frame).unwrap(), [self::text(&text)]);
        sizes.push((frame[0], frame.len()));
    }
    assert_eq!(sizes[0].0, 0x81, "level 0 does not shrink: sent plain");
    assert_eq!((sizes[1].0, sizes[2].0), (0xc1, 0xc1));
    assert!(
        sizes[2].1 <= sizes[1].1 && sizes[1].1 < payload.len(),
        "{sizes:?}"
    );
}

#[test]
fn zlib_levels_as_node_takes_them() {
    use crate::deflate::{DEFAULT_LEVEL, zlib_level};
    assert_eq!(zlib_level(-1), Some(DEFAULT_LEVEL));
    assert_eq!(zlib_level(0), Some(0));
    assert_eq!(zlib_level(9), Some(9));
    for bad in [-2, 10, i64::MAX, i64::MIN] {
        assert_eq!(zlib_level(bad), None, "{bad}");
    }
}

/// One message of the round-trip property: text or binary payload.
#[derive(Debug, Clone)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
}

fn msg_strategy() -> impl Strategy<Value = Msg> {
    prop_oneof![
        ".{0,40}".prop_map(Msg::Text),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Msg::Binary),
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..3000)
            .prop_map(Msg::Binary),
    ]
}

/// Split `payload` into `n` non-empty-ish pieces at positions drawn from `cuts`.
fn split<'a>(payload: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for p in points {
        pieces.push(&payload[start..p]);
        start = p;
    }
    pieces.push(&payload[start..]);
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_in_any_fragmentation_and_chunking(
        msgs in proptest::collection::vec((msg_strategy(), proptest::collection::vec(any::<usize>(), 0..4), any::<bool>()), 1..8),
        chunk_cuts in proptest::collection::vec(any::<usize>(), 0..12),
        client_side in any::<bool>(),
        deflate in 0u8..3,
        key in any::<[u8; 4]>(),
    ) {
        // deflate: 0 = off, 1 = context takeover, 2 = no context takeover.
        let p = params(deflate == 2, deflate == 2);
        let negotiated = (deflate > 0).then_some(&p);
        // The sender's role is the opposite of the decoder's.
        let (role, mask) = if client_side { (Role::Client, None) } else { (Role::Server, Some(key)) };
        let mut deflater = Deflater::new(6, 15);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (i, (msg, cuts, compress)) in msgs.iter().enumerate() {
            let (opcode, payload) = match msg {
                Msg::Text(s) => (1u8, s.as_bytes().to_vec()),
                Msg::Binary(b) => (2u8, b.clone()),
            };
            let compressed = negotiated.is_some() && *compress;
            let body = if compressed {
                let mut out = Vec::new();
                deflater.compress(&payload, &mut out, deflate == 2);
                out
            } else {
                payload.clone()
            };
            let pieces = split(&body, cuts);
            let last = pieces.len() - 1;
            for (j, piece) in pieces.iter().enumerate() {
                let op = if j == 0 { opcode } else { 0 };
                let b0 = first_byte(op, j == last, compressed && j == 0, false, false);
                wire.extend(encode_frame(b0, mask, piece));
                if j == 0 && j != last && i % 2 == 0 {
                    // A control frame between fragments comes out before the message.
                    wire.extend(encode_frame(0x89, mask, &[i as u8]));
                    expected.push(Message::Ping(vec![i as u8]));
                }
            }
            expected.push(match msg {
                Msg::Text(s) => Message::Text(s.clone()),
                Msg::Binary(b) => Message::Binary(b.clone()),
            });
        }
        let mut dec = Decoder::new(role, MIB, MIB, negotiated);
        let mut got = Vec::new();
        for chunk in split(&wire, &chunk_cuts) {
            dec.feed(chunk, &mut got).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        chunk_cuts in proptest::collection::vec(any::<usize>(), 0..6),
        client_side in any::<bool>(),
        deflate in any::<bool>(),
        max in 0usize..300,
    ) {
        let p = params(false, false);
        let role = if client_side { Role::Client } else { Role::Server };
        let mut dec = Decoder::new(role, max, max, deflate.then_some(&p));
        let mut got = Vec::new();
        for chunk in split(&data, &chunk_cuts) {
            if let Err(e) = dec.feed(chunk, &mut got) {
                prop_assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                break;
            }
        }
    }

    #[test]
    fn framed_garbage_never_panics(
        frames in proptest::collection::vec((0u8..=255, proptest::collection::vec(any::<u8>(), 0..200)), 1..6),
        client_side in any::<bool>(),
    ) {
        // Valid-looking headers around random payloads reach deeper than random bytes.
        let p = params(false, false);
        let role = if client_side { Role::Client } else { Role::Server };
        let mask = (!client_side).then_some(KEY);
        let wire: Vec<u8> = frames.iter().flat_map(|(b0, payload)| encode_frame(*b0, mask, payload)).collect();
        let mut dec = Decoder::new(role, MIB, MIB, Some(&p));
        let mut got = Vec::new();
        let _ = dec.feed(&wire, &mut got);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn encoder_to_decoder_round_trip(
        msgs in proptest::collection::vec((msg_strategy(), any::<bool>()), 1..10),
        chunk_cuts in proptest::collection::vec(any::<usize>(), 0..12),
        client_sends in any::<bool>(),
        deflate in 0u8..3,
        threshold in 0usize..64,
    ) {
        let p = params(deflate == 2, deflate == 2);
        let negotiated = (deflate > 0).then_some(&p);
        let (sender, receiver) = if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let mut enc = Encoder::new(sender, negotiated, 6, threshold);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (msg, compress) in &msgs {
            match msg {
                Msg::Text(s) => {
                    wire.extend(enc.message(true, s.as_bytes(), *compress).unwrap().to_vec());
                    expected.push(Message::Text(s.clone()));
                }
                Msg::Binary(b) => {
                    wire.extend(enc.message(false, b, *compress).unwrap().to_vec());
                    expected.push(Message::Binary(b.clone()));
                }
            }
            wire.extend(enc.control(OpCode::Pong, b"p").unwrap().to_vec());
            expected.push(Message::Pong(b"p".to_vec()));
        }
        let close = close_payload(Some(1001), "done").unwrap();
        wire.extend(enc.control(OpCode::Close, &close).unwrap().to_vec());
        expected.push(Message::Close(Some(1001), "done".to_owned()));
        let mut dec = Decoder::new(receiver, MIB, MIB, negotiated);
        let mut got = Vec::new();
        for chunk in split(&wire, &chunk_cuts) {
            dec.feed(chunk, &mut got).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert_eq!(got, expected);
        prop_assert!(dec.is_closed());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Bounded fuzzing: valid compressed, fragmented traffic with a few bytes corrupted.
    /// Reaches the inflater, UTF-8 and close-code paths that random bytes rarely hit.
    #[test]
    fn mutated_valid_streams_never_panic(
        msgs in proptest::collection::vec(msg_strategy(), 1..6),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        chunk_cuts in proptest::collection::vec(any::<usize>(), 0..8),
        client_sends in any::<bool>(),
        max in 0usize..4000,
    ) {
        let p = params(false, true);
        let (sender, receiver) = if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let mut enc = Encoder::new(sender, Some(&p), 6, 0);
        let mut wire = Vec::new();
        for msg in &msgs {
            let (text, payload) = match msg {
                Msg::Text(s) => (true, s.as_bytes().to_vec()),
                Msg::Binary(b) => (false, b.clone()),
            };
            wire.extend(enc.message(text, &payload, true).unwrap().to_vec());
        }
        let close = close_payload(Some(1000), "").unwrap();
        wire.extend(enc.control(OpCode::Close, &close).unwrap().to_vec());
        for (pos, xor) in flips {
            let i = pos % wire.len();
            wire[i] ^= xor;
        }
        let mut dec = Decoder::new(receiver, max, max, Some(&p));
        let mut got = Vec::new();
        for chunk in split(&wire, &chunk_cuts) {
            if let Err(e) = dec.feed(chunk, &mut got) {
                prop_assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                break;
            }
        }
    }
}
