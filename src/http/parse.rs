//! A push parser for HTTP/1.1 request heads (RFC 9112 §2–§6).
//!
//! [`parse_head`] looks at the bytes received so far and answers [`Status::Complete`]
//! with what the server needs to know about the request, [`Status::Partial`] when more
//! bytes are needed, or an [`Error`] as soon as the bytes seen cannot start a valid
//! request. It owns no buffer and does no I/O, so a request split across any number of
//! reads parses to exactly the same result as the request read whole.
//!
//! The server answers every request the same way, so only framing and connection
//! semantics are extracted: method (HEAD and CONNECT matter), version, `Host`
//! presence, `Content-Length`, `Transfer-Encoding`, `Connection` and `Expect`.

use super::chars::{FIELD_VALUE, TARGET, TOKEN};
use std::fmt;

/// Protocol version of a request. HTTP/1.x with a minor version above 1 is treated
/// as HTTP/1.1 (RFC 9110 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request's content is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No content.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked` content follows the head.
    Chunked,
}

/// What the server needs to know about one parsed request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, including empty lines before the request line and the
    /// empty line that ends the header section.
    pub len: usize,
    /// The method is `HEAD`: answer without content.
    pub is_head: bool,
    /// The method is `CONNECT`, which a static responder cannot honour.
    pub is_connect: bool,
    pub version: Version,
    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    pub body: Body,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// Result of looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A whole head is in the buffer.
    Complete(RequestHead),
    /// The bytes so far are a valid prefix of a head; more are needed.
    Partial,
}

/// Why a request was rejected. Each maps to the status code the client receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The method is not a token.
    Method,
    /// The request-target is empty or holds a forbidden byte.
    Target,
    /// The request line does not have the form `method SP target SP HTTP-version`.
    RequestLine,
    /// The version is not `HTTP/DIGIT.DIGIT`.
    Version,
    /// The version is well-formed but its major number is not 1.
    UnsupportedVersion,
    /// A field name is not a token, or whitespace precedes the colon.
    HeaderName,
    /// A field value holds a forbidden byte.
    HeaderValue,
    /// A line starts with whitespace (obsolete line folding).
    ObsFold,
    /// A CR not followed by LF.
    BareCr,
    /// An HTTP/1.1 request without `Host`, or with more than one.
    Host,
    /// `Content-Length` is not a number, overflows, or has conflicting values.
    ContentLength,
    /// `Transfer-Encoding` does not end in `chunked`, or came in an HTTP/1.0 request.
    TransferEncoding,
    /// Both `Content-Length` and `Transfer-Encoding` are present.
    LengthAndEncoding,
    /// The request line alone is longer than the head limit.
    TargetTooLong,
    /// The head is longer than the limit.
    HeadTooLarge,
}

impl Error {
    /// The status code that answers this error.
    pub fn status(self) -> u16 {
        match self {
            Error::TargetTooLong => 414,
            Error::HeadTooLarge => 431,
            Error::UnsupportedVersion => 505,
            _ => 400,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Method => "invalid method",
            Error::Target => "invalid request-target",
            Error::RequestLine => "invalid request line",
            Error::Version => "invalid HTTP version",
            Error::UnsupportedVersion => "unsupported HTTP version",
            Error::HeaderName => "invalid header name",
            Error::HeaderValue => "invalid header value",
            Error::ObsFold => "obsolete line folding",
            Error::BareCr => "CR not followed by LF",
            Error::Host => "missing or repeated Host",
            Error::ContentLength => "invalid Content-Length",
            Error::TransferEncoding => "invalid Transfer-Encoding",
            Error::LengthAndEncoding => "both Content-Length and Transfer-Encoding",
            Error::TargetTooLong => "request-target too long",
            Error::HeadTooLarge => "header section too large",
        })
    }
}

impl std::error::Error for Error {}

/// Largest request content length accepted (bytes are discarded, never stored,
/// so this only keeps arithmetic far from overflow).
const MAX_CONTENT_LENGTH: u64 = 1 << 62;

/// Outcome of looking for a line ending at `buf[i]`.
enum Eol {
    /// `buf[i..]` starts with CRLF or LF; the value is its length.
    Yes(usize),
    /// No line ending here.
    No,
    /// A CR at the very end: cannot decide yet.
    NeedMore,
}

#[inline]
fn eol(buf: &[u8], i: usize) -> Result<Eol, Error> {
    match buf.get(i) {
        Some(b'\n') => Ok(Eol::Yes(1)),
        Some(b'\r') => match buf.get(i + 1) {
            Some(b'\n') => Ok(Eol::Yes(2)),
            Some(_) => Err(Error::BareCr),
            None => Ok(Eol::NeedMore),
        },
        _ => Ok(Eol::No),
    }
}

/// Header fields that matter for framing and connection handling.
#[derive(Default)]
struct Fields {
    hosts: u32,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    chunked_seen_early: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

/// Parses a request head from the start of `buf`.
///
/// `max_head` bounds the head (request line plus header section). A head longer than
/// that is refused with [`Error::HeadTooLarge`], or [`Error::TargetTooLong`] when the
/// request line alone is too long, whether or not it has been received completely.
///
/// ```
/// use vrypt_server::http::{parse_head, Body, Status};
///
/// let req = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
/// assert_eq!(parse_head(&req[..20], 8192), Ok(Status::Partial));
/// let Ok(Status::Complete(head)) = parse_head(req, 8192) else { panic!() };
/// assert_eq!((head.len, head.body, head.keep_alive), (req.len() - 3, Body::Length(3), true));
/// assert_eq!(parse_head(b"GET / HTTP/2.0\r\n\r\n", 8192).unwrap_err().status(), 505);
/// ```
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Status, Error> {
    // Only look at max_head + 1 bytes: anything beyond is over the limit anyway.
    let limit_hit = buf.len() > max_head;
    let buf = if limit_hit { &buf[..max_head + 1] } else { buf };
    match parse_bounded(buf) {
        Ok(Status::Complete(head)) if head.len > max_head => Err(too_long(&buf[..head.len])),
        Ok(Status::Complete(head)) => Ok(Status::Complete(head)),
        Ok(Status::Partial) if limit_hit => Err(too_long(buf)),
        other => other,
    }
}

/// Parse state for one request head, carried between reads (placeholder: re-parses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadParser {
    is_head: bool,
}

impl HeadParser {
    /// A parser at the start of a head.
    pub const fn new() -> HeadParser {
        HeadParser { is_head: false }
    }

    /// Parses the head received so far.
    pub fn parse(&mut self, buf: &[u8], max_head: usize) -> Result<Status, Error> {
        self.is_head = buf.starts_with(b"HEAD ");
        parse_head(buf, max_head)
    }

    /// Whether the method is `HEAD`.
    pub fn is_head(&self) -> bool {
        self.is_head
    }
}

/// Which limit error applies when `buf` (already cut to limit + 1) is not a complete head.
fn too_long(buf: &[u8]) -> Error {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    if buf[start..].contains(&b'\n') {
        Error::HeadTooLarge
    } else {
        Error::TargetTooLong
    }
}

fn parse_bounded(buf: &[u8]) -> Result<Status, Error> {
    let mut i = 0;
    // RFC 9112 §2.2: ignore at least one empty line before the request line.
    loop {
        match eol(buf, i)? {
            Eol::Yes(n) => i += n,
            Eol::NeedMore => return Ok(Status::Partial),
            Eol::No => break,
        }
    }

    // method = token
    let method_start = i;
    while i < buf.len() && TOKEN[buf[i] as usize] {
        i += 1;
    }
    if i == buf.len() {
        return Ok(Status::Partial);
    }
    if buf[i] != b' ' || i == method_start {
        return Err(Error::Method);
    }
    let method = &buf[method_start..i];
    i += 1;

    // request-target: one or more visible bytes.
    let target_start = i;
    while i < buf.len() && TARGET[buf[i] as usize] {
        i += 1;
    }
    if i == buf.len() {
        return Ok(Status::Partial);
    }
    if buf[i] != b' ' {
        return Err(if i == target_start || !matches!(buf[i], b'\r' | b'\n') {
            Error::Target
        } else {
            // "GET /\r\n": an HTTP/0.9-style line without a version.
            Error::RequestLine
        });
    }
    if i == target_start {
        return Err(Error::Target);
    }
    i += 1;

    // HTTP-version = "HTTP/" DIGIT "." DIGIT
    const PREFIX: &[u8] = b"HTTP/";
    let avail = &buf[i..];
    let n = avail.len().min(PREFIX.len());
    if avail[..n] != PREFIX[..n] {
        return Err(Error::Version);
    }
    if avail.len() < PREFIX.len() + 3 {
        let tail = &avail[n..];
        let ok = match tail {
            [] => true,
            [d] => d.is_ascii_digit(),
            [d, dot] => d.is_ascii_digit() && *dot == b'.',
            _ => false,
        };
        return if ok {
            Ok(Status::Partial)
        } else {
            Err(Error::Version)
        };
    }
    let (major, dot, minor) = (avail[5], avail[6], avail[7]);
    if !major.is_ascii_digit() || dot != b'.' || !minor.is_ascii_digit() {
        return Err(Error::Version);
    }
    i += PREFIX.len() + 3;
    match eol(buf, i)? {
        Eol::Yes(n) => i += n,
        Eol::NeedMore => return Ok(Status::Partial),
        Eol::No if i == buf.len() => return Ok(Status::Partial),
        Eol::No => return Err(Error::Version),
    }
    if major != b'1' {
        return Err(Error::UnsupportedVersion);
    }
    let version = if minor == b'0' {
        Version::Http10
    } else {
        Version::Http11
    };

    // Header section.
    let mut f = Fields::default();
    loop {
        match eol(buf, i)? {
            Eol::Yes(n) => {
                i += n;
                break;
            }
            Eol::NeedMore => return Ok(Status::Partial),
            Eol::No => {}
        }
        if i == buf.len() {
            return Ok(Status::Partial);
        }
        if matches!(buf[i], b' ' | b'\t') {
            return Err(Error::ObsFold);
        }
        let name_start = i;
        while i < buf.len() && TOKEN[buf[i] as usize] {
            i += 1;
        }
        if i == buf.len() {
            return Ok(Status::Partial);
        }
        if buf[i] != b':' || i == name_start {
            return Err(Error::HeaderName);
        }
        let name = &buf[name_start..i];
        i += 1;
        while i < buf.len() && matches!(buf[i], b' ' | b'\t') {
            i += 1;
        }
        let value_start = i;
        while i < buf.len() && FIELD_VALUE[buf[i] as usize] {
            i += 1;
        }
        let mut value_end = i;
        match eol(buf, i)? {
            Eol::Yes(n) => i += n,
            Eol::NeedMore => return Ok(Status::Partial),
            Eol::No if i == buf.len() => return Ok(Status::Partial),
            Eol::No => return Err(Error::HeaderValue),
        }
        while value_end > value_start && matches!(buf[value_end - 1], b' ' | b'\t') {
            value_end -= 1;
        }
        field(&mut f, name, &buf[value_start..value_end])?;
    }

    head_from_fields(f, method, version, i).map(Status::Complete)
}

fn head_from_fields(
    f: Fields,
    method: &[u8],
    version: Version,
    len: usize,
) -> Result<RequestHead, Error> {
    if version == Version::Http11 && f.hosts != 1 || f.hosts > 1 {
        return Err(Error::Host);
    }
    let body = if f.transfer_encoding {
        // RFC 9112 §6.1: chunked must be the final coding; HTTP/1.0 framing with
        // Transfer-Encoding is faulty; with Content-Length too it is a smuggling attempt.
        if f.content_length.is_some() {
            return Err(Error::LengthAndEncoding);
        }
        if version == Version::Http10 || !f.chunked_last || f.chunked_seen_early {
            return Err(Error::TransferEncoding);
        }
        Body::Chunked
    } else {
        match f.content_length {
            None | Some(0) => Body::None,
            Some(n) => Body::Length(n),
        }
    };
    let keep_alive = !f.close && (version == Version::Http11 || f.keep_alive);
    Ok(RequestHead {
        len,
        is_head: method == b"HEAD",
        is_connect: method == b"CONNECT",
        version,
        keep_alive,
        body,
        expect_continue: f.expect_continue,
    })
}

/// Splits a comma-separated list and yields each trimmed, non-empty element.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn field(f: &mut Fields, name: &[u8], value: &[u8]) -> Result<(), Error> {
    // Dispatch on length first: most headers are none of these and cost one compare.
    match name.len() {
        4 if name.eq_ignore_ascii_case(b"host") => f.hosts += 1,
        6 if name.eq_ignore_ascii_case(b"expect")
            && value.eq_ignore_ascii_case(b"100-continue") =>
        {
            f.expect_continue = true;
        }
        10 if name.eq_ignore_ascii_case(b"connection") => {
            for item in list_items(value) {
                if item.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive = true;
                }
            }
        }
        14 if name.eq_ignore_ascii_case(b"content-length") => {
            // RFC 9110 §8.6: a list of identical values may be accepted as one.
            let mut any = false;
            for item in value.split(|&b| b == b',').map(trim_ows) {
                let n = parse_decimal(item).ok_or(Error::ContentLength)?;
                if f.content_length.is_some_and(|old| old != n) {
                    return Err(Error::ContentLength);
                }
                f.content_length = Some(n);
                any = true;
            }
            if !any {
                return Err(Error::ContentLength);
            }
        }
        17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
            if list_items(value).next().is_none() {
                return Err(Error::TransferEncoding);
            }
            for item in list_items(value) {
                if f.chunked_last {
                    // Something follows chunked: chunked is not the final coding.
                    f.chunked_seen_early = true;
                }
                f.chunked_last = item.eq_ignore_ascii_case(b"chunked");
                f.transfer_encoding = true;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `1*DIGIT`, at most [`MAX_CONTENT_LENGTH`].
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    (n <= MAX_CONTENT_LENGTH).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    fn complete(s: &[u8]) -> RequestHead {
        match parse_head(s, MAX) {
            Ok(Status::Complete(h)) => h,
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(s)),
        }
    }

    fn err(s: &[u8]) -> Error {
        match parse_head(s, MAX) {
            Err(e) => e,
            other => panic!(
                "expected error, got {:?} for {:?}",
                other,
                String::from_utf8_lossy(s)
            ),
        }
    }

    #[test]
    fn simple_get() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = complete(req);
        assert_eq!(h.len, req.len());
        assert!(h.keep_alive && !h.is_head);
        assert_eq!(h.body, Body::None);
        assert_eq!(h.version, Version::Http11);
    }

    #[test]
    fn every_prefix_is_partial() {
        let req = b"\r\nPOST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: keep-alive, close\r\n\r\n";
        for n in 0..req.len() {
            assert_eq!(
                parse_head(&req[..n], MAX),
                Ok(Status::Partial),
                "prefix {n}"
            );
        }
        let h = complete(req);
        assert_eq!(h.body, Body::Length(3));
        assert!(!h.keep_alive);
    }

    #[test]
    fn http10_keep_alive_only_when_asked() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
    }

    #[test]
    fn bare_lf_lines_are_accepted() {
        let h = complete(b"HEAD / HTTP/1.1\nHost: a\n\n");
        assert!(h.is_head);
    }

    #[test]
    fn chunked_and_framing_errors() {
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                .body,
            Body::Chunked
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Error::TransferEncoding
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"),
            Error::LengthAndEncoding
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Error::ContentLength
        );
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\n\r\n").body,
            Body::Length(7)
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            Error::ContentLength
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n")
                .status(),
            400
        );
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Error::TransferEncoding
        );
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(err(b"GET  / HTTP/1.1\r\n"), Error::Target);
        assert_eq!(err(b"G(T / HTTP/1.1\r\n"), Error::Method);
        assert_eq!(err(b"GET /\r\n"), Error::RequestLine);
        assert_eq!(err(b"GET / HTTX/1.1\r\n"), Error::Version);
        assert_eq!(err(b"GET / HTTP/1.1 \r\n"), Error::Version);
        assert_eq!(err(b"GET / HTTP/2.0\r\n\r\n"), Error::UnsupportedVersion);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            Error::HeaderName
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"),
            Error::ObsFold
        );
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), Error::BareCr);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"),
            Error::HeaderValue
        );
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), Error::Host);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Error::Host
        );
    }

    #[test]
    fn limits() {
        let mut long_target = b"GET /".to_vec();
        long_target.resize(MAX + 10, b'a');
        assert_eq!(err(&long_target), Error::TargetTooLong);
        let mut big_head = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big_head.resize(MAX + 10, b'b');
        assert_eq!(err(&big_head), Error::HeadTooLarge);
        big_head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(err(&big_head), Error::HeadTooLarge);
    }
}
