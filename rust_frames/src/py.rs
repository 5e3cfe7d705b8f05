//! The PyO3 module `pyserver._frames`: the only place that knows about Python.
//!
//! The contract is `pyserver/_frames.pyi`; `python -m mypy.stubtest pyserver._frames`
//! checks this module against it.

#![allow(unsafe_code)] // PyO3's macros expand to `unsafe`; the one block written here is `bytes_from_parts`.

use std::mem::MaybeUninit;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOSError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
#[cfg(unix)]
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{create_exception, import_exception};

use crate::decoder::{Decoder, MessageSink, Role};
use crate::deflate::{self, InflateError};
use crate::encoder::{EncodeError, Encoder, Prepared, close_payload};
use crate::error::{FrameError as CodecError, INVALID_PAYLOAD, MESSAGE_TOO_BIG};
use crate::extension::{self, DeflateParams};
use crate::frame::{OpCode, first_byte};
use crate::mask;

// The base of `FrameError`: the Python class of pyserver's one error tree (h11's split), so
// that `except pyserver.RemoteProtocolError` catches a frame the peer got wrong as it catches
// every other layer's. Imported once, when the type is first needed (at module init).
import_exception!(pyserver.errors, RemoteProtocolError);

create_exception!(
    pyserver._frames,
    FrameError,
    RemoteProtocolError,
    "The peer broke RFC 6455 or RFC 7692. ``code`` is the close code to answer with (1002 \
     protocol error, 1007 invalid payload data, 1009 message too big), ``reason`` the close \
     reason; as a ``pyserver.errors.RemoteProtocolError`` the same wire answer is \
     ``close_code`` and ``close_reason``. ``messages`` holds the complete messages decoded \
     from the same ``feed`` call before the error."
);

/// A `FrameError` exception with `code`, `reason` and `messages` set, and the wire answer of
/// its base (`close_code`, `close_reason`). A plain exception class (not a pyclass with its
/// own layout) so that it can be subclassed and mixed in.
fn frame_error(py: Python<'_>, code: u16, reason: String, messages: Bound<'_, PyList>) -> PyErr {
    let build = || -> PyResult<Bound<'_, PyAny>> {
        let exc = py
            .get_type::<FrameError>()
            .call1((format!("{reason} (close code {code})"),))?;
        exc.setattr("code", code)?;
        exc.setattr("close_code", code)?;
        exc.setattr("close_reason", &reason)?;
        exc.setattr("reason", reason)?;
        exc.setattr("messages", messages)?;
        Ok(exc)
    };
    match build() {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

fn encode_error(e: EncodeError) -> PyErr {
    match e {
        EncodeError::Random(_) => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

// Construction from Python goes through `__init__`, as the stub declares: `__new__` takes
// anything and makes a default object, `__init__` has the documented signature. Objects the
// decoder makes are built directly in Rust and skip both.

/// A Ping frame.
#[pyclass(module = "pyserver._frames", name = "Ping")]
struct PyPing {
    #[pyo3(get)]
    payload: Py<PyBytes>,
}

/// A Pong frame.
#[pyclass(module = "pyserver._frames", name = "Pong")]
struct PyPong {
    #[pyo3(get)]
    payload: Py<PyBytes>,
}

macro_rules! payload_class {
    ($ty:ident, $name:literal) => {
        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (*_args, **_kwargs), text_signature = "(payload=b'')")]
            fn __new__(
                py: Python<'_>,
                _args: &Bound<'_, PyTuple>,
                _kwargs: Option<&Bound<'_, PyDict>>,
            ) -> Self {
                Self {
                    payload: PyBytes::new(py, b"").unbind(),
                }
            }

            #[pyo3(signature = (payload = None))]
            fn __init__(&mut self, payload: Option<Py<PyBytes>>) {
                if let Some(payload) = payload {
                    self.payload = payload;
                }
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                Ok(format!("{}({})", $name, self.payload.bind(py).repr()?))
            }

            fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> bool {
                other.cast::<$ty>().is_ok_and(|o| {
                    o.try_borrow().is_ok_and(|o| {
                        o.payload.bind(py).as_bytes() == self.payload.bind(py).as_bytes()
                    })
                })
            }

            fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
                self.payload.bind(py).hash()
            }
        }
    };
}
payload_class!(PyPing, "Ping");
payload_class!(PyPong, "Pong");

/// A Close frame; `code` is None when the frame had no payload.
#[pyclass(module = "pyserver._frames", name = "Close")]
struct PyClose {
    #[pyo3(get)]
    code: Option<u16>,
    #[pyo3(get)]
    reason: Py<PyString>,
}

#[pymethods]
impl PyClose {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs), text_signature = "(code=None, reason='')")]
    fn __new__(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> Self {
        Self {
            code: None,
            reason: PyString::new(py, "").unbind(),
        }
    }

    #[pyo3(signature = (code = None, reason = None))]
    fn __init__(&mut self, code: Option<u16>, reason: Option<Py<PyString>>) {
        self.code = code;
        if let Some(reason) = reason {
            self.reason = reason;
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let code = self
            .code
            .map_or_else(|| "None".to_owned(), |c| c.to_string());
        Ok(format!("Close({code}, {})", self.reason.bind(py).repr()?))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<PyClose>() else {
            return Ok(false);
        };
        let other = other.try_borrow()?;
        Ok(other.code == self.code && other.reason.bind(py).as_any().eq(self.reason.bind(py))?)
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        (self.code, self.reason.bind(py)).into_pyobject(py)?.hash()
    }
}

/// Collects decoded messages as Python objects.
struct PySink<'py> {
    py: Python<'py>,
    out: Vec<Bound<'py, PyAny>>,
    err: Option<PyErr>,
}

impl PySink<'_> {
    fn push<T: pyo3::PyClass + Into<pyo3::PyClassInitializer<T>>>(&mut self, value: T) {
        match Bound::new(self.py, value) {
            Ok(obj) => self.out.push(obj.into_any()),
            Err(e) => {
                self.err.get_or_insert(e);
            }
        }
    }
}

impl MessageSink for PySink<'_> {
    fn text(&mut self, text: &str) {
        self.out.push(PyString::new(self.py, text).into_any());
    }
    fn binary(&mut self, data: &[u8]) {
        self.out.push(PyBytes::new(self.py, data).into_any());
    }
    fn binary_masked(&mut self, masked: &[u8], key: [u8; 4]) {
        // Unmasked straight into the new `bytes` object: one pass, no scratch copy.
        match bytes_from_parts(self.py, &[], masked, Some(key)) {
            Ok(obj) => self.out.push(obj.into_any()),
            Err(e) => {
                self.err.get_or_insert(e);
            }
        }
    }
    fn ping(&mut self, payload: &[u8]) {
        let payload = PyBytes::new(self.py, payload).unbind();
        self.push(PyPing { payload });
    }
    fn pong(&mut self, payload: &[u8]) {
        let payload = PyBytes::new(self.py, payload).unbind();
        self.push(PyPong { payload });
    }
    fn close(&mut self, code: Option<u16>, reason: &str) {
        let reason = PyString::new(self.py, reason).unbind();
        self.push(PyClose { code, reason });
    }
}

/// Negotiated permessage-deflate parameters (RFC 7692 section 7.1).
#[pyclass(module = "pyserver._frames", name = "Deflate")]
#[derive(Clone, Copy)]
struct PyDeflate {
    #[pyo3(get, set)]
    server_no_context_takeover: bool,
    #[pyo3(get, set)]
    client_no_context_takeover: bool,
    #[pyo3(get)]
    server_max_window_bits: u8,
    #[pyo3(get)]
    client_max_window_bits: u8,
}

fn window_bits(bits: i64) -> PyResult<u8> {
    u8::try_from(bits)
        .ok()
        .filter(|b| (8..=15).contains(b))
        .ok_or_else(|| PyValueError::new_err(format!("window bits must be 8..15, not {bits}")))
}

impl PyDeflate {
    fn params(&self) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: self.server_max_window_bits,
            client_max_window_bits: self.client_max_window_bits,
        }
    }

    fn from_params(p: &DeflateParams) -> Self {
        Self {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover,
            server_max_window_bits: p.server_max_window_bits,
            client_max_window_bits: p.client_max_window_bits,
        }
    }
}

#[pymethods]
impl PyDeflate {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs), text_signature = "(*, server_no_context_takeover=False, client_no_context_takeover=False, server_max_window_bits=15, client_max_window_bits=15)")]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    #[pyo3(signature = (
        *,
        server_no_context_takeover = false,
        client_no_context_takeover = false,
        server_max_window_bits = 15,
        client_max_window_bits = 15,
    ))]
    fn __init__(
        &mut self,
        server_no_context_takeover: bool,
        client_no_context_takeover: bool,
        server_max_window_bits: i64,
        client_max_window_bits: i64,
    ) -> PyResult<()> {
        *self = Self {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: window_bits(server_max_window_bits)?,
            client_max_window_bits: window_bits(client_max_window_bits)?,
        };
        Ok(())
    }

    #[setter]
    fn set_server_max_window_bits(&mut self, bits: i64) -> PyResult<()> {
        self.server_max_window_bits = window_bits(bits)?;
        Ok(())
    }

    #[setter]
    fn set_client_max_window_bits(&mut self, bits: i64) -> PyResult<()> {
        self.client_max_window_bits = window_bits(bits)?;
        Ok(())
    }

    /// The server's `Sec-WebSocket-Extensions` answer for these parameters.
    fn response_header(&self) -> String {
        extension::response_header(&self.params())
    }

    /// A client's `Sec-WebSocket-Extensions` offer for these parameters.
    fn offer_header(&self) -> String {
        extension::offer_header(&self.params())
    }

    fn __repr__(&self) -> String {
        let b = |v: bool| if v { "True" } else { "False" };
        format!(
            "Deflate(server_no_context_takeover={}, client_no_context_takeover={}, \
             server_max_window_bits={}, client_max_window_bits={})",
            b(self.server_no_context_takeover),
            b(self.client_no_context_takeover),
            self.server_max_window_bits,
            self.client_max_window_bits
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyDeflate>().is_ok_and(|o| {
            let o = o.borrow();
            (
                o.server_no_context_takeover,
                o.client_no_context_takeover,
                o.server_max_window_bits,
                o.client_max_window_bits,
            ) == (
                self.server_no_context_takeover,
                self.client_no_context_takeover,
                self.server_max_window_bits,
                self.client_max_window_bits,
            )
        })
    }
}

/// Server side: pick the first acceptable permessage-deflate offer.
#[pyfunction]
#[pyo3(signature = (
    offers,
    *,
    server_no_context_takeover = true,
    client_no_context_takeover = false,
    server_max_window_bits = 15,
    client_max_window_bits = 15,
))]
fn negotiate_deflate(
    offers: &str,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: i64,
    client_max_window_bits: i64,
) -> PyResult<Option<PyDeflate>> {
    let wishes = DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits: window_bits(server_max_window_bits)?,
        client_max_window_bits: window_bits(client_max_window_bits)?,
    };
    match extension::negotiate(offers, &wishes) {
        Ok(agreed) => Ok(agreed.as_ref().map(PyDeflate::from_params)),
        Err(e) => Err(PyValueError::new_err(e.0)),
    }
}

/// Client side: validate the server's answer against what was offered.
#[pyfunction]
fn accept_deflate(response: &str, offered: PyRef<'_, PyDeflate>) -> PyResult<PyDeflate> {
    match extension::accept(response, &offered.params()) {
        Ok(agreed) => Ok(PyDeflate::from_params(&agreed)),
        Err(e) => Err(PyValueError::new_err(e.0)),
    }
}

/// Borrow the bytes of `bytes`, or copy those of any other buffer (bytearray, memoryview).
enum Data<'a, 'py> {
    Borrowed(&'a Bound<'py, PyBytes>),
    Copied(Vec<u8>),
}

impl Data<'_, '_> {
    fn get<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> PyResult<Data<'a, 'py>> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Data::Borrowed(b));
        }
        let buffer = PyBuffer::<u8>::get(obj)?;
        Ok(Data::Copied(buffer.to_vec(obj.py())?))
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Borrowed(b) => b.as_bytes(),
            Data::Copied(v) => v,
        }
    }
}

/// `str` as its UTF-8 (no copy) or `bytes` as is; the flag says whether it was a `str`.
fn str_or_bytes<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<(&'a [u8], bool)> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok((s.to_str()?.as_bytes(), true));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok((b.as_bytes(), false));
    }
    Err(PyTypeError::new_err("expected str or bytes"))
}

/// A new `bytes` object holding `head` followed by `body` (XORed with `mask` if set),
/// each byte written exactly once: `PyBytes::new_with` would zero-fill first, which costs
/// as much as the masking itself on large payloads.
fn bytes_from_parts<'py>(
    py: Python<'py>,
    head: &[u8],
    body: &[u8],
    mask: Option<[u8; 4]>,
) -> PyResult<Bound<'py, PyBytes>> {
    let len = head
        .len()
        .checked_add(body.len())
        .ok_or_else(|| PyOverflowError::new_err("frame too large"))?;
    let size =
        ffi::Py_ssize_t::try_from(len).map_err(|_| PyOverflowError::new_err("frame too large"))?;
    // SAFETY:
    // * `PyBytes_FromStringAndSize(NULL, size)` returns a new `bytes` object whose `size`
    //   bytes of storage are allocated but uninitialised (CPython API docs), or NULL with an
    //   exception set, which `from_owned_ptr_or_err` turns into `Err` before any use.
    // * The object is ours alone (a fresh reference, not yet visible to Python code), so
    //   writing its storage cannot race or be observed; nothing below calls into Python.
    // * `PyBytes_AsString` on a `bytes` object cannot fail and points at `size` (== `len`)
    //   writable bytes; viewing them as `[MaybeUninit<u8>]` claims nothing about their
    //   contents.
    // * `split_at_mut(head.len())` leaves `out_body.len() == body.len()`; `copy_uninit` and
    //   `mask_copy_uninit` write `min(dst.len(), src.len())` elements, so every one of the
    //   `len` bytes is initialised before the object is returned (the `debug_assert`s and
    //   the Python smoke test of every length check the sizes).
    unsafe {
        let ptr = ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        let obj = Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked::<PyBytes>();
        let data = ffi::PyBytes_AsString(ptr).cast::<MaybeUninit<u8>>();
        let out = std::slice::from_raw_parts_mut(data, len);
        let (out_head, out_body) = out.split_at_mut(head.len());
        debug_assert_eq!((out_head.len(), out_body.len()), (head.len(), body.len()));
        mask::copy_uninit(out_head, head);
        match mask {
            None => mask::copy_uninit(out_body, body),
            Some(key) => mask::mask_copy_uninit(out_body, body, key),
        }
        Ok(obj)
    }
}

fn to_bytes<'py>(py: Python<'py>, frame: &Prepared<'_>) -> PyResult<Bound<'py, PyBytes>> {
    let (header, hlen) = frame.header();
    bytes_from_parts(
        py,
        header.get(..hlen).unwrap_or(&[]),
        frame.payload(),
        frame.mask(),
    )
}

/// The decoder's default `max_frame_size` and `max_message_size`: 1 MiB.
const DEFAULT_LIMIT: usize = 1 << 20;

/// Incremental frame decoder.
#[pyclass(module = "pyserver._frames", name = "Decoder")]
struct PyDecoder {
    inner: Decoder,
}

#[pymethods]
impl PyDecoder {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs), text_signature = "(*, client=False, max_frame_size=1048576, max_message_size=1048576, deflate=None)")]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            inner: Decoder::new(Role::Server, DEFAULT_LIMIT, DEFAULT_LIMIT, None),
        }
    }

    #[pyo3(signature = (*, client = false, max_frame_size = DEFAULT_LIMIT, max_message_size = DEFAULT_LIMIT, deflate = None))]
    fn __init__(
        &mut self,
        client: bool,
        max_frame_size: usize,
        max_message_size: usize,
        deflate: Option<PyRef<'_, PyDeflate>>,
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let params = deflate.map(|d| d.params());
        self.inner = Decoder::new(role, max_frame_size, max_message_size, params.as_ref());
    }

    /// Decode every complete message in `data` plus what was buffered before.
    fn feed<'py>(&mut self, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let py = data.py();
        let data = Data::get(data)?;
        let mut sink = PySink {
            py,
            out: Vec::new(),
            err: None,
        };
        let result = self.inner.feed(data.as_bytes(), &mut sink);
        if let Some(err) = sink.err {
            return Err(err);
        }
        let messages = PyList::new(py, sink.out)?;
        match result {
            Ok(()) => Ok(messages),
            Err(e) => Err(frame_error(py, e.close_code(), e.to_string(), messages)),
        }
    }

    /// Bytes held for an incomplete frame or message.
    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// How many more bytes the buffered incomplete frame needs (0 when none is buffered).
    #[getter]
    fn wanted(&self) -> usize {
        self.inner.wanted()
    }
}

/// Frame encoder.
#[pyclass(module = "pyserver._frames", name = "Encoder")]
struct PyEncoder {
    inner: Encoder,
}

fn level(level: i64) -> PyResult<u32> {
    deflate::zlib_level(level).ok_or_else(|| {
        PyValueError::new_err(format!(
            "compression level must be 0..9 (or -1, zlib's default), not {level}"
        ))
    })
}

#[pymethods]
impl PyEncoder {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs), text_signature = "(*, client=False, deflate=None, compression_level=6, compress_threshold=128)")]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            inner: Encoder::new(Role::Server, None, 6, 128),
        }
    }

    #[pyo3(signature = (*, client = false, deflate = None, compression_level = 6, compress_threshold = 128))]
    fn __init__(
        &mut self,
        client: bool,
        deflate: Option<PyRef<'_, PyDeflate>>,
        compression_level: i64,
        compress_threshold: usize,
    ) -> PyResult<()> {
        let role = if client { Role::Client } else { Role::Server };
        let params = deflate.map(|d| d.params());
        self.inner = Encoder::new(
            role,
            params.as_ref(),
            level(compression_level)?,
            compress_threshold,
        );
        Ok(())
    }

    /// One text message (bytes must already be UTF-8; they are not checked).
    #[pyo3(signature = (data, *, compress = true))]
    fn text<'py>(
        &mut self,
        data: &Bound<'py, PyAny>,
        compress: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (payload, _) = str_or_bytes(data)?;
        let frame = self
            .inner
            .message(true, payload, compress)
            .map_err(encode_error)?;
        to_bytes(data.py(), &frame)
    }

    /// One binary message.
    #[pyo3(signature = (data, *, compress = true))]
    fn binary<'py>(
        &mut self,
        data: &Bound<'py, PyAny>,
        compress: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data_ref = Data::get(data)?;
        let frame = self
            .inner
            .message(false, data_ref.as_bytes(), compress)
            .map_err(encode_error)?;
        to_bytes(data.py(), &frame)
    }

    /// A Ping frame.
    #[pyo3(signature = (payload = b"".as_slice()), text_signature = "($self, payload=b'')")]
    fn ping<'py>(&mut self, py: Python<'py>, payload: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let frame = self
            .inner
            .control(OpCode::Ping, payload)
            .map_err(encode_error)?;
        to_bytes(py, &frame)
    }

    /// A Pong frame.
    #[pyo3(signature = (payload = b"".as_slice()), text_signature = "($self, payload=b'')")]
    fn pong<'py>(&mut self, py: Python<'py>, payload: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let frame = self
            .inner
            .control(OpCode::Pong, payload)
            .map_err(encode_error)?;
        to_bytes(py, &frame)
    }

    /// A Close frame; `code=None` sends an empty payload.
    #[pyo3(signature = (code = Some(1000), reason = ""), text_signature = "($self, code=1000, reason='')")]
    fn close<'py>(
        &mut self,
        py: Python<'py>,
        code: Option<i64>,
        reason: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let code = code
            .map(|c| {
                u16::try_from(c)
                    .map_err(|_| PyValueError::new_err(format!("invalid close code {c}")))
            })
            .transpose()?;
        let payload = close_payload(code, reason).map_err(encode_error)?;
        let frame = self
            .inner
            .control(OpCode::Close, &payload)
            .map_err(encode_error)?;
        to_bytes(py, &frame)
    }
}

/// A whole unmasked (server role) frame for one message: the broadcast path.
#[pyfunction]
#[pyo3(signature = (data, *, text = None, deflate_window_bits = None, compression_level = 6))]
fn encode_message<'py>(
    data: &Bound<'py, PyAny>,
    text: Option<bool>,
    deflate_window_bits: Option<i64>,
    compression_level: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let (payload, is_str) = str_or_bytes(data)?;
    let opcode = if text.unwrap_or(is_str) {
        OpCode::Text
    } else {
        OpCode::Binary
    } as u8;
    let py = data.py();
    match deflate_window_bits {
        None => to_bytes(
            py,
            &Prepared::new(first_byte(opcode, true, false, false, false), None, payload),
        ),
        Some(bits) => {
            let compressed =
                deflate::deflate_raw(payload, level(compression_level)?, window_bits(bits)?);
            let b0 = first_byte(opcode, true, true, false, false);
            to_bytes(py, &Prepared::new(b0, None, &compressed))
        }
    }
}

/// The broadcast fan-out (`crate::fanout`): `data` written to each descriptor of `fds`
/// (open non-blocking sockets the caller owns) with one `write(2)` each. Returns
/// `(index, written)` for each descriptor that did not take all of it.
#[cfg(unix)]
#[pyfunction]
fn write_many(fds: Vec<i32>, data: &[u8]) -> Vec<(usize, usize)> {
    crate::fanout::write_all_once(&fds, data)
}

/// The fan-out of queued writes (`crate::fanout`): `datas[i]` written to `fds[i]` (open
/// non-blocking sockets the caller owns) with one `write(2)` each. Returns `(index,
/// written)` for each descriptor that did not take all of its data.
#[cfg(unix)]
#[pyfunction]
fn write_each(fds: Vec<i32>, datas: Vec<PyBackedBytes>) -> PyResult<Vec<(usize, usize)>> {
    if fds.len() != datas.len() {
        return Err(PyValueError::new_err("write_each: one data per descriptor"));
    }
    Ok(crate::fanout::write_each(&fds, &datas))
}

/// One raw frame, no checks beyond field widths (for tests and fuzzing).
#[pyfunction]
#[pyo3(signature = (opcode, payload, *, fin = true, rsv1 = false, rsv2 = false, rsv3 = false, mask = None))]
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
fn encode_frame<'py>(
    py: Python<'py>,
    opcode: u8,
    payload: &[u8],
    fin: bool,
    rsv1: bool,
    rsv2: bool,
    rsv3: bool,
    mask: Option<&[u8]>,
) -> PyResult<Bound<'py, PyBytes>> {
    if opcode > 0x0f {
        return Err(PyValueError::new_err(format!(
            "opcode must be 0..15, not {opcode}"
        )));
    }
    let key = mask.map(mask_key).transpose()?;
    let b0 = first_byte(opcode, fin, rsv1, rsv2, rsv3);
    to_bytes(py, &Prepared::new(b0, key, payload))
}

fn mask_key(mask: &[u8]) -> PyResult<[u8; 4]> {
    <[u8; 4]>::try_from(mask).map_err(|_| PyValueError::new_err("mask must be exactly 4 bytes"))
}

/// XOR `data` with the 4-byte `mask`, word-wise (the fast path).
#[pyfunction]
fn apply_mask<'py>(data: &Bound<'py, PyAny>, mask: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let key = mask_key(mask)?;
    let data_ref = Data::get(data)?;
    bytes_from_parts(data.py(), &[], data_ref.as_bytes(), Some(key))
}

/// The same result with a plain byte loop (the reference for tests).
#[pyfunction]
fn apply_mask_simple<'py>(data: &Bound<'py, PyAny>, mask: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let key = mask_key(mask)?;
    let data_ref = Data::get(data)?;
    let src = data_ref.as_bytes();
    PyBytes::new_with(data.py(), src.len(), |out| {
        out.copy_from_slice(src);
        mask::apply_mask_simple(out, key, 0);
        Ok(())
    })
}

/// One message compressed as permessage-deflate sends it.
#[pyfunction]
#[pyo3(signature = (data, *, level = 6, window_bits = 15))]
fn deflate_raw<'py>(
    py: Python<'py>,
    data: &[u8],
    level: i64,
    window_bits: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let out = deflate::deflate_raw(data, self::level(level)?, self::window_bits(window_bits)?);
    Ok(PyBytes::new(py, &out))
}

/// The inverse of deflate_raw.
#[pyfunction]
#[pyo3(signature = (data, *, max_size, window_bits = 15))]
fn inflate_raw<'py>(
    py: Python<'py>,
    data: &[u8],
    max_size: usize,
    window_bits: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    match deflate::inflate_raw(data, max_size, self::window_bits(window_bits)?) {
        Ok(out) => Ok(PyBytes::new(py, &out)),
        Err(InflateError::TooBig) => {
            let e = CodecError::MessageTooBig {
                max: u64::try_from(max_size).unwrap_or(u64::MAX),
            };
            Err(frame_error(
                py,
                MESSAGE_TOO_BIG,
                e.to_string(),
                PyList::empty(py),
            ))
        }
        Err(InflateError::Corrupt(why)) => {
            let e = CodecError::CorruptDeflate(why);
            Err(frame_error(
                py,
                INVALID_PAYLOAD,
                e.to_string(),
                PyList::empty(py),
            ))
        }
    }
}

/// `pyserver._frames._testing`: what only the tests and benchmarks call (raw frames with any
/// bits, the two maskers, one-shot deflate and inflate), kept out of the codec's own API. A
/// submodule of an extension is not importable by path on its own, so it is also put in
/// `sys.modules` under its full name: `from pyserver._frames._testing import encode_frame`.
fn add_testing(m: &Bound<'_, PyModule>) -> PyResult<()> {
    const NAME: &str = "pyserver._frames._testing";
    let py = m.py();
    let testing = PyModule::new(py, NAME)?;
    testing.add_function(wrap_pyfunction!(encode_frame, &testing)?)?;
    testing.add_function(wrap_pyfunction!(apply_mask, &testing)?)?;
    testing.add_function(wrap_pyfunction!(apply_mask_simple, &testing)?)?;
    testing.add_function(wrap_pyfunction!(deflate_raw, &testing)?)?;
    testing.add_function(wrap_pyfunction!(inflate_raw, &testing)?)?;
    testing.delattr("__all__")?;
    m.add_submodule(&testing)?; // as `_testing`, the last part of its name
    py.import("sys")?
        .getattr("modules")?
        .set_item(NAME, &testing)?;
    Ok(())
}

/// The Rust WebSocket frame codec (crate `rust_frames`), RFC 6455 and RFC 7692.
#[pymodule]
fn _frames(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("OP_CONTINUATION", OpCode::Continuation as u8)?;
    m.add("OP_TEXT", OpCode::Text as u8)?;
    m.add("OP_BINARY", OpCode::Binary as u8)?;
    m.add("OP_CLOSE", OpCode::Close as u8)?;
    m.add("OP_PING", OpCode::Ping as u8)?;
    m.add("OP_PONG", OpCode::Pong as u8)?;
    // Import the base's module here, so that a failure is this import's ImportError rather
    // than the panic of a lazily imported type.
    m.py().import("pyserver.errors")?;
    m.add("FrameError", m.py().get_type::<FrameError>())?;
    m.add_class::<PyPing>()?;
    m.add_class::<PyPong>()?;
    m.add_class::<PyClose>()?;
    m.add_class::<PyDeflate>()?;
    m.add_class::<PyDecoder>()?;
    m.add_class::<PyEncoder>()?;
    m.add_function(wrap_pyfunction!(negotiate_deflate, m)?)?;
    m.add_function(wrap_pyfunction!(accept_deflate, m)?)?;
    m.add_function(wrap_pyfunction!(encode_message, m)?)?;
    #[cfg(unix)]
    m.add_function(wrap_pyfunction!(write_many, m)?)?;
    #[cfg(unix)]
    m.add_function(wrap_pyfunction!(write_each, m)?)?;
    add_testing(m)?;
    // `Message = str | bytes | Ping | Pong | Close`, as in the stub (a `types.UnionType`).
    let py = m.py();
    let mut message = py.get_type::<PyString>().into_any();
    for t in [
        py.get_type::<PyBytes>(),
        py.get_type::<PyPing>(),
        py.get_type::<PyPong>(),
        py.get_type::<PyClose>(),
    ] {
        message = message.bitor(t)?;
    }
    m.add("Message", message)?;
    // PyO3 keeps an `__all__`; the stub has none (everything public is exported anyway).
    m.delattr("__all__")?;
    Ok(())
}
