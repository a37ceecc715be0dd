//! A push parser for HTTP/1.1 request heads (RFC 9112 §2–§6).
//!
//! [`HeadParser::parse`] looks at the bytes of a head received so far and answers
//! [`Status::Complete`] with what the server needs to know about the request,
//! [`Status::Partial`] when more bytes are needed, or an [`Error`] as soon as the bytes
//! seen cannot start a valid request. It owns no buffer and does no I/O: between calls
//! it keeps a few positions and flags, so a head trickled in over many reads is scanned
//! once, and a request split across any number of reads parses to exactly the same
//! result as the request read whole. [`parse_head`] is the one-call form.
//!
//! The server answers every request the same way, so only framing and connection
//! semantics are extracted: method (HEAD and CONNECT matter), version, `Host`
//! (presence and validity), `Content-Length`, `Transfer-Encoding`, `Connection` and
//! `Expect`.

use super::chars::{FIELD_VALUE, REG_NAME, TARGET, TOKEN};
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
    /// The request-target is empty or holds a byte other than visible ASCII.
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
    /// An HTTP/1.1 request without `Host`, a request with more than one, or a `Host`
    /// value that is not `uri-host [ ":" port ]`.
    Host,
    /// `Content-Length` is not a number, is too large, or has conflicting values.
    ContentLength,
    /// `Transfer-Encoding` does not end in `chunked`, applies `chunked` more than once,
    /// or came in an HTTP/1.0 request.
    TransferEncoding,
    /// `Transfer-Encoding` ends in `chunked` but applies another coding before it,
    /// which this server does not implement.
    UnsupportedTransferCoding,
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
            Error::UnsupportedTransferCoding => 501,
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
            Error::Host => "missing, repeated or invalid Host",
            Error::ContentLength => "invalid Content-Length",
            Error::TransferEncoding => "invalid Transfer-Encoding",
            Error::UnsupportedTransferCoding => "unsupported transfer coding",
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

/// `Fields::content_length` when no `Content-Length` was seen (above any accepted value).
const NO_LENGTH: u64 = u64::MAX;

/// Largest head limit honoured: positions are kept as `u32`, so a larger `max_head`
/// is treated as this one.
const MAX_LIMIT: usize = u32::MAX as usize - 1;

/// Header fields that matter for framing and connection handling, accumulated as
/// field lines complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    /// `Content-Length`, or [`NO_LENGTH`].
    content_length: u64,
    /// `Host` field lines seen (saturating).
    hosts: u8,
    transfer_encoding: bool,
    /// The last transfer coding seen so far is `chunked`.
    chunked_last: bool,
    /// A coding followed `chunked`: it is not final, or applied twice.
    chunked_early: bool,
    /// A coding other than `chunked` was seen.
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl Fields {
    const fn new() -> Fields {
        Fields {
            content_length: NO_LENGTH,
            hosts: 0,
            transfer_encoding: false,
            chunked_last: false,
            chunked_early: false,
            other_coding: false,
            close: false,
            keep_alive: false,
            expect_continue: false,
        }
    }
}

/// Which of the fields that matter a field line is, known once its colon is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Other,
    Host,
    Expect,
    Connection,
    ContentLength,
    TransferEncoding,
}

/// Where the parser is, byte by byte, in
///
/// ```text
/// HTTP-message = start-line CRLF *( field-line CRLF ) CRLF
/// request-line = method SP request-target SP HTTP-version
/// field-line   = field-name ":" OWS field-value OWS
/// ```
///
/// (RFC 9112 §2.1, §3, §5), where a bare LF is accepted for CRLF (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the request line, where empty lines are ignored (RFC 9112 §2.2).
    Start,
    /// A CR in an empty line before the request line.
    StartLf,
    /// In the method; `mark` is where it starts.
    Method,
    /// In the request-target; `mark` is where it starts.
    Target,
    /// In `HTTP-version = "HTTP/" DIGIT "." DIGIT`, `at` bytes of it seen; `mark` is
    /// where it starts.
    Version { at: u8 },
    /// After the version: a line ending must follow.
    VersionEnd,
    /// A CR after the version.
    RequestLineLf,
    /// At the start of a field line, or of the empty line that ends the head.
    LineStart,
    /// A CR at the start of a line: its LF ends the head.
    EndLf,
    /// In a field name; `mark` is where it starts.
    Name,
    /// After the colon, in the OWS before the value.
    ValueStart,
    /// In a field value (and trailing OWS); `mark` is where it starts.
    Value,
    /// A CR after a field value.
    ValueLf,
    /// The head is complete; `pos` is its length.
    Done,
    /// The head was refused.
    Failed(Error),
}

/// Parse state for one request head, carried between reads.
///
/// It holds positions (as offsets from the head's first byte), flags and the framing
/// fields seen so far: 32 bytes, nothing borrowed. The bytes themselves stay in the
/// caller's buffer, which must keep the head at its start.
///
/// ```
/// use vrypt_server::testing::{Body, HeadParser, Status};
///
/// let req = b"HEAD /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
/// let mut p = HeadParser::new();
/// assert_eq!(p.parse(&req[..3], 8192), Ok(Status::Partial));
/// assert!(!p.is_head()); // the method is not complete yet
/// assert_eq!(p.parse(&req[..20], 8192), Ok(Status::Partial));
/// assert!(p.is_head());
/// let Ok(Status::Complete(head)) = p.parse(req, 8192) else { panic!() };
/// assert_eq!((head.len, head.body), (req.len() - 3, Body::Length(3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadParser {
    /// Bytes of the head scanned so far.
    pos: u32,
    /// Where the current method, target, version, field name or field value starts.
    mark: u32,
    state: State,
    /// What the current field line is, once its name is complete.
    kind: Kind,
    /// Known once the request line is complete.
    version: Version,
    is_head: bool,
    is_connect: bool,
    fields: Fields,
}

impl Default for HeadParser {
    fn default() -> HeadParser {
        HeadParser::new()
    }
}

impl HeadParser {
    /// A parser before the first byte of a head.
    pub const fn new() -> HeadParser {
        HeadParser {
            pos: 0,
            mark: 0,
            state: State::Start,
            kind: Kind::Other,
            version: Version::Http11,
            is_head: false,
            is_connect: false,
            fields: Fields::new(),
        }
    }

    /// `buf` holds the bytes of this head received so far, starting at the head's first
    /// byte. Each call must pass the same bytes as the previous call, possibly with more
    /// appended, and the same `max_head`. Scanning resumes where the previous call
    /// stopped, so the work over all calls is linear in the final length. Returns exactly
    /// what [`parse_head`]`(buf, max_head)` returns; once that is `Complete` or an error,
    /// every later call returns it again. (A `buf` shorter than the previous one, against
    /// this contract, is taken as no new bytes; nothing panics.)
    ///
    /// `max_head` bounds the head (request line plus header section); only the first
    /// `max_head + 1` bytes of `buf` are looked at. A head longer than that is refused
    /// with [`Error::HeadTooLarge`], or [`Error::TargetTooLong`] when the request line
    /// alone is too long, whether or not it has been received completely. An error found
    /// within those bytes is returned instead.
    pub fn parse(&mut self, buf: &[u8], max_head: usize) -> Result<Status, Error> {
        match self.state {
            State::Failed(e) => return Err(e),
            State::Done => return self.head().map(Status::Complete),
            _ => {}
        }
        let max_head = max_head.min(MAX_LIMIT);
        let end = buf.len().min(max_head + 1);
        let result = match self.scan(buf, end) {
            Ok(true) => self.head().and_then(|head| {
                if head.len > max_head {
                    Err(Error::HeadTooLarge)
                } else {
                    Ok(head)
                }
            }),
            Ok(false) if buf.len() > max_head => Err(if self.in_request_line() {
                Error::TargetTooLong
            } else {
                Error::HeadTooLarge
            }),
            Ok(false) => return Ok(Status::Partial),
            Err(e) => Err(e),
        };
        self.state = match result {
            Ok(_) => State::Done,
            Err(e) => State::Failed(e),
        };
        result.map(Status::Complete)
    }

    /// Whether the method seen so far is exactly `HEAD` (false until the method is
    /// complete). Valid also after [`parse`](Self::parse) returned an error, so that the
    /// error can be answered to a HEAD request without content.
    pub fn is_head(&self) -> bool {
        self.is_head
    }

    /// Whether no byte of this head has been scanned yet.
    pub fn is_fresh(&self) -> bool {
        self.pos == 0
    }

    /// Whether no line ending has been seen after the first byte of the request line.
    fn in_request_line(&self) -> bool {
        matches!(
            self.state,
            State::Start
                | State::StartLf
                | State::Method
                | State::Target
                | State::Version { .. }
                | State::VersionEnd
                | State::RequestLineLf
        )
    }

    /// Scans `buf[self.pos..end]`; returns whether the head ended there (`self.pos` is
    /// then its length).
    ///
    /// The phases below follow the grammar in order. `state` says where the previous call
    /// stopped, so each phase is entered only to resume it or from the one before; a
    /// head read whole runs straight through. Every byte is looked at once, plus once
    /// more for the byte that ends a run and once for each byte of a name or value that
    /// matters, when its line completes.
    fn scan(&mut self, buf: &[u8], end: usize) -> Result<bool, Error> {
        let mut i = self.pos as usize;
        if i >= end {
            // Nothing new (or, against the contract, fewer bytes than last time).
            return Ok(false);
        }
        let ended = 'scan: {
            // RFC 9112 §2.2: ignore at least one empty line before the request line.
            while matches!(self.state, State::Start | State::StartLf) {
                if i == end {
                    break 'scan false;
                }
                examined(1);
                match (self.state, buf[i]) {
                    (State::Start, b'\n') => {}
                    (State::Start, b'\r') => self.state = State::StartLf,
                    (State::Start, _) => {
                        // The request line starts here: the method looks at this byte again.
                        self.mark = i as u32;
                        self.state = State::Method;
                        break;
                    }
                    (_, b'\n') => self.state = State::Start,
                    _ => return Err(Error::BareCr),
                }
                i += 1;
            }

            // method = token
            if matches!(self.state, State::Method) {
                i = skip(buf, i, end, &TOKEN);
                if i == end {
                    break 'scan false;
                }
                let method = &buf[self.mark as usize..i];
                if buf[i] != b' ' || method.is_empty() {
                    return Err(Error::Method);
                }
                examined(method.len());
                self.is_head = method == b"HEAD";
                self.is_connect = method == b"CONNECT";
                i += 1;
                self.mark = i as u32;
                self.state = State::Target;
            }

            // request-target: one or more visible bytes.
            if matches!(self.state, State::Target) {
                i = skip(buf, i, end, &TARGET);
                if i == end {
                    break 'scan false;
                }
                let empty = i == self.mark as usize;
                match buf[i] {
                    b' ' if !empty => {}
                    // "GET /\r\n": an HTTP/0.9-style line without a version.
                    b'\r' | b'\n' if !empty => return Err(Error::RequestLine),
                    _ => return Err(Error::Target),
                }
                i += 1;
                self.mark = i as u32;
                self.state = State::Version { at: 0 };
            }

            // HTTP-version = "HTTP/" DIGIT "." DIGIT
            if matches!(self.state, State::Version { at: 0 })
                && end - i >= 8
                && is_version(&buf[i..i + 8])
            {
                // All of it at once: what the steps below would do one byte at a time.
                examined(8);
                i += 8;
                self.state = State::VersionEnd;
            }
            while let State::Version { at } = self.state {
                if i == end {
                    break 'scan false;
                }
                examined(1);
                let b = buf[i];
                let ok = match at {
                    0..=4 => b == b"HTTP/"[usize::from(at)],
                    6 => b == b'.',
                    _ => b.is_ascii_digit(),
                };
                if !ok {
                    return Err(Error::Version);
                }
                i += 1;
                self.state = if at == 7 {
                    State::VersionEnd
                } else {
                    State::Version { at: at + 1 }
                };
            }

            // The request line's CRLF or LF.
            if matches!(self.state, State::VersionEnd) {
                if i == end {
                    break 'scan false;
                }
                examined(1);
                match buf[i] {
                    b'\n' => {
                        self.end_request_line(buf)?;
                        self.state = State::LineStart;
                    }
                    b'\r' => self.state = State::RequestLineLf,
                    _ => return Err(Error::Version),
                }
                i += 1;
            }
            if matches!(self.state, State::RequestLineLf) {
                if i == end {
                    break 'scan false;
                }
                examined(1);
                if buf[i] != b'\n' {
                    return Err(Error::BareCr);
                }
                self.end_request_line(buf)?;
                self.state = State::LineStart;
                i += 1;
            }

            // *( field-line CRLF ) CRLF, with field-line = field-name ":" OWS field-value OWS
            loop {
                if matches!(self.state, State::LineStart) {
                    if i == end {
                        break 'scan false;
                    }
                    examined(1);
                    match buf[i] {
                        b'\n' => {
                            i += 1;
                            break 'scan true;
                        }
                        b'\r' => self.state = State::EndLf,
                        b' ' | b'\t' => return Err(Error::ObsFold),
                        b if TOKEN[b as usize] => {
                            self.mark = i as u32;
                            self.state = State::Name;
                        }
                        _ => return Err(Error::HeaderName),
                    }
                    i += 1;
                }
                if matches!(self.state, State::EndLf) {
                    if i == end {
                        break 'scan false;
                    }
                    examined(1);
                    if buf[i] != b'\n' {
                        return Err(Error::BareCr);
                    }
                    i += 1;
                    break 'scan true;
                }
                // field-name = token
                if matches!(self.state, State::Name) {
                    i = skip(buf, i, end, &TOKEN);
                    if i == end {
                        break 'scan false;
                    }
                    if buf[i] != b':' {
                        return Err(Error::HeaderName);
                    }
                    self.kind = kind(&buf[self.mark as usize..i]);
                    i += 1;
                    self.state = State::ValueStart;
                }
                if matches!(self.state, State::ValueStart) {
                    // Mostly one SP, then the value.
                    let one = i + 1 < end && buf[i] == b' ' && !matches!(buf[i + 1], b' ' | b'\t');
                    let run = if one {
                        1
                    } else {
                        buf[i..end]
                            .iter()
                            .position(|&b| b != b' ' && b != b'\t')
                            .unwrap_or(end - i)
                    };
                    examined(run + usize::from(i + run < end));
                    i += run;
                    if i == end {
                        break 'scan false;
                    }
                    // The value starts here: the next phase looks at this byte again.
                    self.mark = i as u32;
                    self.state = State::Value;
                }
                if matches!(self.state, State::Value) {
                    i = skip(buf, i, end, &FIELD_VALUE);
                    if i == end {
                        break 'scan false;
                    }
                    match buf[i] {
                        b'\n' => {
                            self.end_field(buf, i)?;
                            self.state = State::LineStart;
                        }
                        b'\r' => self.state = State::ValueLf,
                        _ => return Err(Error::HeaderValue),
                    }
                    i += 1;
                }
                if matches!(self.state, State::ValueLf) {
                    if i == end {
                        break 'scan false;
                    }
                    examined(1);
                    if buf[i] != b'\n' {
                        return Err(Error::BareCr);
                    }
                    self.end_field(buf, i - 1)?;
                    self.state = State::LineStart;
                    i += 1;
                }
            }
        };
        self.pos = i as u32;
        Ok(ended)
    }

    /// The request line ends (its LF is being consumed); the version starts at `mark`.
    fn end_request_line(&mut self, buf: &[u8]) -> Result<(), Error> {
        let v = self.mark as usize;
        examined(2);
        if buf[v + 5] != b'1' {
            return Err(Error::UnsupportedVersion);
        }
        self.version = if buf[v + 7] == b'0' {
            Version::Http10
        } else {
            Version::Http11
        };
        Ok(())
    }

    /// A field line ends: its value is `buf[mark..value_end]`, trailing OWS included.
    #[inline]
    fn end_field(&mut self, buf: &[u8], value_end: usize) -> Result<(), Error> {
        if matches!(self.kind, Kind::Other) {
            return Ok(());
        }
        let value = &buf[self.mark as usize..value_end];
        examined(value.len());
        field(&mut self.fields, self.kind, trim_ows(value))
    }

    /// The head as parsed so far, once complete.
    fn head(&self) -> Result<RequestHead, Error> {
        head_from_fields(
            &self.fields,
            self.is_head,
            self.is_connect,
            self.version,
            self.pos as usize,
        )
    }
}

/// Parses a request head from the start of `buf` in one call: the same as
/// [`HeadParser::parse`] on a new parser.
///
/// ```
/// use vrypt_server::testing::{parse_head, Body, Status};
///
/// let req = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
/// assert_eq!(parse_head(&req[..20], 8192), Ok(Status::Partial));
/// let Ok(Status::Complete(head)) = parse_head(req, 8192) else { panic!() };
/// assert_eq!((head.len, head.body, head.keep_alive), (req.len() - 3, Body::Length(3), true));
/// assert_eq!(parse_head(b"GET / HTTP/2.0\r\n\r\n", 8192).unwrap_err().status(), 505);
/// ```
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Status, Error> {
    let mut p = HeadParser::new();
    p.parse(buf, max_head)
}

/// The path of the request whose complete, valid head starts `head`: the target
/// without its query, and for an absolute-form target (`http://host/path?q`) the
/// part after the authority (`/` when it has none). Not used on the request path
/// unless a health path is configured.
pub(crate) fn request_path(head: &[u8]) -> &[u8] {
    let line_start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let line = &head[line_start..];
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return b"";
    };
    let rest = &line[sp + 1..];
    let target = &rest[..rest.iter().position(|&b| b == b' ').unwrap_or(rest.len())];
    let target = &target[..target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len())];
    let starts_with_ci =
        |t: &[u8], p: &[u8]| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p);
    for scheme in [&b"http://"[..], b"https://"] {
        if starts_with_ci(target, scheme) {
            let after = &target[scheme.len()..];
            return match after.iter().position(|&b| b == b'/') {
                Some(slash) => &after[slash..],
                None => b"/",
            };
        }
    }
    target
}

// Test builds count the bytes the parser looks at, to check that resuming never rescans.
#[cfg(test)]
thread_local! {
    static EXAMINED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn examined(n: usize) {
    EXAMINED.with(|c| c.set(c.get() + n));
}

#[cfg(not(test))]
#[inline(always)]
fn examined(_: usize) {}

/// Whether `v` is `"HTTP/" DIGIT "." DIGIT`.
fn is_version(v: &[u8]) -> bool {
    matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// Index of the first byte of `buf[i..end]` not in `class`, or `end`.
#[inline]
fn skip(buf: &[u8], i: usize, end: usize, class: &[bool; 256]) -> usize {
    let run = buf[i..end]
        .iter()
        .position(|&b| !class[b as usize])
        .unwrap_or(end - i);
    examined(run + usize::from(i + run < end));
    i + run
}

fn kind(name: &[u8]) -> Kind {
    examined(name.len());
    // Dispatch on length first: most headers are none of these and cost one compare.
    // Each arm compares with a literal, so that the comparison is unrolled.
    match name.len() {
        4 if name.eq_ignore_ascii_case(b"host") => Kind::Host,
        6 if name.eq_ignore_ascii_case(b"expect") => Kind::Expect,
        10 if name.eq_ignore_ascii_case(b"connection") => Kind::Connection,
        14 if name.eq_ignore_ascii_case(b"content-length") => Kind::ContentLength,
        17 if name.eq_ignore_ascii_case(b"transfer-encoding") => Kind::TransferEncoding,
        _ => Kind::Other,
    }
}

fn head_from_fields(
    f: &Fields,
    is_head: bool,
    is_connect: bool,
    version: Version,
    len: usize,
) -> Result<RequestHead, Error> {
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any request
    // with more than one.
    if version == Version::Http11 && f.hosts != 1 || f.hosts > 1 {
        return Err(Error::Host);
    }
    let body = if f.transfer_encoding {
        // RFC 9112 §6.1, §6.3: with Content-Length too it is a smuggling attempt;
        // HTTP/1.0 framing with Transfer-Encoding is faulty; chunked must be the final
        // coding and applied once (§7), else the length cannot be determined (400).
        // Chunked after a coding the server does not implement gets 501 (§6.1).
        if f.content_length != NO_LENGTH {
            return Err(Error::LengthAndEncoding);
        }
        if version == Version::Http10 || !f.chunked_last || f.chunked_early {
            return Err(Error::TransferEncoding);
        }
        if f.other_coding {
            return Err(Error::UnsupportedTransferCoding);
        }
        Body::Chunked
    } else {
        match f.content_length {
            NO_LENGTH | 0 => Body::None,
            n => Body::Length(n),
        }
    };
    let keep_alive = !f.close && (version == Version::Http11 || f.keep_alive);
    Ok(RequestHead {
        len,
        is_head,
        is_connect,
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

/// Records one field line that matters; `value` is trimmed of OWS.
fn field(f: &mut Fields, kind: Kind, value: &[u8]) -> Result<(), Error> {
    match kind {
        Kind::Other => {}
        Kind::Host => {
            if !is_authority(value) {
                return Err(Error::Host);
            }
            f.hosts = f.hosts.saturating_add(1);
        }
        Kind::Expect => {
            if value.eq_ignore_ascii_case(b"100-continue") {
                f.expect_continue = true;
            }
        }
        Kind::Connection => {
            for item in list_items(value) {
                if item.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive = true;
                }
            }
        }
        Kind::ContentLength => {
            // RFC 9110 §8.6: a list of identical values may be accepted as one.
            for item in value.split(|&b| b == b',').map(trim_ows) {
                let n = parse_decimal(item).ok_or(Error::ContentLength)?;
                if f.content_length != NO_LENGTH && f.content_length != n {
                    return Err(Error::ContentLength);
                }
                f.content_length = n;
            }
        }
        Kind::TransferEncoding => {
            let mut any = false;
            for item in list_items(value) {
                if f.chunked_last {
                    // Something follows chunked: chunked is not the final coding, or
                    // is applied twice.
                    f.chunked_early = true;
                }
                f.chunked_last = item.eq_ignore_ascii_case(b"chunked");
                f.other_coding |= !f.chunked_last;
                f.transfer_encoding = true;
                any = true;
            }
            if !any {
                return Err(Error::TransferEncoding);
            }
        }
    }
    Ok(())
}

/// `1*DIGIT`, at most [`MAX_CONTENT_LENGTH`]. Leading zeros are not significant.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (n <= MAX_CONTENT_LENGTH).then_some(n)
}

/// A Host value (RFC 9110 §7.2, RFC 9112 §3.2): `Host = uri-host [ ":" port ]`, with
/// (RFC 3986 §3.2.2, §3.2.3)
///
/// ```text
/// host        = IP-literal / IPv4address / reg-name
/// IP-literal  = "[" ( IPv6address / IPvFuture ) "]"
/// reg-name    = *( unreserved / pct-encoded / sub-delims )
/// pct-encoded = "%" HEXDIG HEXDIG
/// port        = *DIGIT
/// ```
///
/// An IPv4address is a reg-name too, and a reg-name may be empty (RFC 9112 §3.2: a
/// request whose target has no authority sends an empty Host). A `","` is refused: it
/// would make the value a list of hosts.
fn is_authority(value: &[u8]) -> bool {
    // Most are a plain reg-name, with or without a port: one pass.
    let host = value
        .iter()
        .position(|&b| !REG_NAME[b as usize])
        .unwrap_or(value.len());
    match &value[host..] {
        [] => return true,
        [b':', port @ ..] => return port.iter().all(u8::is_ascii_digit),
        _ => {}
    }
    let (host_ok, rest) = match value {
        [b'[', inner @ ..] => match inner.iter().position(|&b| b == b']') {
            Some(close) => (is_ip_literal(&inner[..close]), &inner[close + 1..]),
            None => return false,
        },
        _ => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            (is_reg_name(&value[..end]), &value[end..])
        }
    };
    host_ok
        && match rest {
            [] => true,
            [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
            _ => false,
        }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, without `","`.
fn is_reg_name(s: &[u8]) -> bool {
    if s.iter().all(|&b| REG_NAME[b as usize]) {
        return true;
    }
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match s.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if REG_NAME[s[i] as usize] {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// The inside of `IP-literal = "[" ( IPv6address / IPvFuture ) "]"`, with
/// `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )` (no `","`).
fn is_ip_literal(s: &[u8]) -> bool {
    match s {
        [b'v' | b'V', rest @ ..] => {
            let hex = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            match &rest[hex..] {
                [b'.', tail @ ..] => {
                    hex > 0
                        && !tail.is_empty()
                        && tail.iter().all(|&b| b == b':' || REG_NAME[b as usize])
                }
                _ => false,
            }
        }
        _ => is_ipv6(s),
    }
}

/// `IPv6address` (RFC 3986 §3.2.2): eight 16-bit pieces `h16 = 1*4HEXDIG` separated by
/// `":"`, the last two of which may be written as an `IPv4address`, or fewer pieces with
/// one `"::"` standing for at least one zero piece.
fn is_ipv6(s: &[u8]) -> bool {
    let elision = s.windows(2).position(|w| w == b"::");
    match elision {
        None => pieces(s, true) == Some(8),
        Some(k) => match (pieces(&s[..k], false), pieces(&s[k + 2..], true)) {
            (Some(before), Some(after)) => before + after <= 7,
            _ => false,
        },
    }
}

/// How many 16-bit pieces `s` holds, if it is empty or `*( h16 ":" ) ( h16 / ls32 )`;
/// the last piece may be an `IPv4address` (two pieces) when `v4_last`.
fn pieces(s: &[u8], v4_last: bool) -> Option<usize> {
    if s.is_empty() {
        return Some(0);
    }
    let mut n = 0;
    let mut parts = s.split(|&b| b == b':').peekable();
    while let Some(p) = parts.next() {
        let last = parts.peek().is_none();
        if (1..=4).contains(&p.len()) && p.iter().all(u8::is_ascii_hexdigit) {
            n += 1;
        } else if last && v4_last && is_ipv4(p) {
            n += 2;
        } else {
            return None;
        }
    }
    Some(n)
}

/// `IPv4address = dec-octet "." dec-octet "." dec-octet "." dec-octet`, with
/// `dec-octet` a decimal number 0–255 without leading zeros.
fn is_ipv4(s: &[u8]) -> bool {
    let mut octets = 0;
    for part in s.split(|&b| b == b'.') {
        let ok = match part {
            [d] => d.is_ascii_digit(),
            [b'1'..=b'9', rest @ ..] if rest.len() <= 2 => {
                rest.iter().all(u8::is_ascii_digit) && parse_decimal(part).is_some_and(|n| n <= 255)
            }
            _ => false,
        };
        if !ok {
            return false;
        }
        octets += 1;
    }
    octets == 4
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
            complete(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").body,
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

    #[test]
    fn host_values() {
        for host in [
            &b""[..],
            b"example.com",
            b"example.com:8080",
            b"example.com:",
            b"127.0.0.1",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:80",
            b"[2001:db8::7]",
            b"[::ffff:192.0.2.1]:443",
            b"[1:2:3:4:5:6:7:8]",
            b"[1:2:3:4:5:6:7::]",
            b"[1:2:3:4:5:6:1.2.3.4]",
            b"[v1.fe80::a+en1]",
            b"xn--bcher-kva.example",
            b"a%20b",
            b"a_b~c!$&'()*+;=",
            b"EXAMPLE.COM",
        ] {
            let mut req = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            req.extend_from_slice(host);
            req.extend_from_slice(b" \r\n\r\n");
            complete(&req);
        }
        for host in [
            &b"a b"[..],
            b"a/b",
            b"u@a",
            b"u:p@a",
            b"a, b",
            b"a,b",
            b"a:b",
            b"a:80:80",
            b"a?b",
            b"a#b",
            b"a%2",
            b"a%zz",
            b"\"a\"",
            b"[::1",
            b"::1",
            b"[::1]x",
            b"[::1]:8a",
            b"[1:2:3:4:5:6:7:8:9]",
            b"[1:2:3:4:5:6:7]",
            b"[1::2::3]",
            b"[:::]",
            b"[12345::]",
            b"[1.2.3.4::]",
            b"[::1.2.3.256]",
            b"[::01.2.3.4]",
            b"[::1.2.3]",
            b"[g::]",
            b"[v.x]",
            b"[v1.]",
            b"[fe80::1%25en0]",
            b"\xc3\xa9.example",
        ] {
            let mut req = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            req.extend_from_slice(host);
            req.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                err(&req),
                Error::Host,
                "{:?}",
                String::from_utf8_lossy(host)
            );
        }
        // Any request with an invalid Host gets 400, HTTP/1.0 too, as soon as the line ends.
        assert_eq!(err(b"GET / HTTP/1.0\r\nHost: a b\r\n"), Error::Host);
        // An empty Host is what a request whose target has no authority sends.
        complete(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
    }

    #[test]
    fn transfer_codings() {
        let te = |v: &str| {
            let req = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
            parse_head(req.as_bytes(), MAX)
        };
        assert!(matches!(te("chunked"), Ok(Status::Complete(h)) if h.body == Body::Chunked));
        assert!(matches!(te(" , chunked ,"), Ok(Status::Complete(h)) if h.body == Body::Chunked));
        for v in ["gzip, chunked", "cow, chunked", "gzip,deflate,chunked"] {
            assert_eq!(te(v), Err(Error::UnsupportedTransferCoding), "{v}");
            assert_eq!(Error::UnsupportedTransferCoding.status(), 501);
        }
        for v in [
            "chunked, gzip",
            "gzip",
            "chunked, chunked",
            "gzip, chunked, chunked",
            "",
        ] {
            assert_eq!(te(v), Err(Error::TransferEncoding), "{v}");
        }
        // Codings on several lines form one list.
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Error::UnsupportedTransferCoding
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Error::TransferEncoding
        );
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Error::TransferEncoding
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Error::LengthAndEncoding
        );
    }

    #[test]
    fn content_length_values() {
        let cl = |v: &str| {
            let req = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
            match parse_head(req.as_bytes(), MAX) {
                Ok(Status::Complete(h)) => Ok(h.body),
                Ok(Status::Partial) => panic!("partial"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(cl("00000000000000000003"), Ok(Body::Length(3)));
        assert_eq!(cl(&"0".repeat(1000)), Ok(Body::None));
        assert_eq!(cl("0"), Ok(Body::None));
        assert_eq!(cl("4611686018427387904"), Ok(Body::Length(1 << 62)));
        assert_eq!(cl("0004611686018427387904"), Ok(Body::Length(1 << 62)));
        for v in [
            "4611686018427387905",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "999999999999999999999999999999999999999",
            "",
            "1 2",
            "+1",
            "0x10",
            "3, 4",
            "3,",
        ] {
            assert_eq!(cl(v), Err(Error::ContentLength), "{v:?}");
        }
    }

    #[test]
    fn target_is_visible_ascii() {
        for b in (0u8..=0x20).chain(0x7f..=0xff) {
            if b == b' ' || b == b'\r' || b == b'\n' {
                continue;
            }
            let mut req = b"GET /a".to_vec();
            req.push(b);
            // Refused at once: no need to wait for the rest of the line.
            assert_eq!(err(&req), Error::Target, "byte {b:#04x}");
            req.extend_from_slice(b"b HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(err(&req), Error::Target, "byte {b:#04x}");
        }
        complete(b"GET /!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~ HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[test]
    fn garbage_is_refused_at_once() {
        // A TLS ClientHello: no LF anywhere, refused on its first byte.
        let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        for n in 1..=hello.len() {
            assert_eq!(parse_head(&hello[..n], MAX), Err(Error::Method));
        }
        assert_eq!(err(b"PRI * HTTP/2.0\r\n"), Error::UnsupportedVersion);
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\r\n:x"), Error::HeaderName);
        assert_eq!(err(b"GET / HTTP/1.1\r\nHo\x01"), Error::HeaderName);
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\x7f"), Error::HeaderValue);
        assert_eq!(err(b"\r\r"), Error::BareCr);
        assert_eq!(err(b"GET / HTTP/1.1\rx"), Error::BareCr);
        assert_eq!(err(b"GET / HTTP/1.1\r\n\rx"), Error::BareCr);
        assert_eq!(err(b"GET / HTTP/1.1\r\nA: b\rx"), Error::BareCr);
        assert_eq!(err(b"GET / HTTP/1.12"), Error::Version);
        assert_eq!(err(b"GET / HTTP/1,"), Error::Version);
        assert_eq!(err(b"GET / HTTP/x"), Error::Version);
        assert_eq!(parse_head(b"GET / HTTP/1.", MAX), Ok(Status::Partial));
        assert_eq!(parse_head(b"GET / HTTP/1.1\r", MAX), Ok(Status::Partial));
    }

    #[test]
    fn is_head_and_sticky_results() {
        let mut p = HeadParser::new();
        assert_eq!(p.parse(b"HEA", MAX), Ok(Status::Partial));
        assert!(!p.is_head());
        assert_eq!(p.parse(b"HEAD", MAX), Ok(Status::Partial));
        assert!(!p.is_head());
        assert_eq!(p.parse(b"HEAD ", MAX), Ok(Status::Partial));
        assert!(p.is_head());
        assert_eq!(p.parse(b"HEAD /\x01", MAX), Err(Error::Target));
        assert!(p.is_head());
        // An error is final: the same answer whatever follows.
        assert_eq!(
            p.parse(b"HEAD /\x01 HTTP/1.1\r\n\r\n", MAX),
            Err(Error::Target)
        );
        assert!(p.is_head());

        let mut p = HeadParser::default();
        assert_eq!(p.parse(b"HEADER / HTTP/1.1\r\n", MAX), Ok(Status::Partial));
        assert!(!p.is_head());
        // Fewer bytes than last time (against the contract) are no new bytes.
        assert_eq!(p.parse(b"HEAD", MAX), Ok(Status::Partial));
        assert_eq!(p.parse(b"", MAX), Ok(Status::Partial));
        assert!(matches!(
            p.parse(b"HEADER / HTTP/1.1\r\nHost: a\r\n\r\n", MAX),
            Ok(Status::Complete(_))
        ));
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET";
        let mut p = HeadParser::new();
        let first = p.parse(req, MAX);
        assert!(matches!(first, Ok(Status::Complete(h)) if h.len == req.len() - 3));
        assert_eq!(p.parse(req, MAX), first);
        // An error on HEAD after the request line, still known to be HEAD.
        let mut p = HeadParser::new();
        assert_eq!(p.parse(b"HEAD / HTTP/1.1\r\n\r\n", MAX), Err(Error::Host));
        assert!(p.is_head());
    }

    #[test]
    fn limit_errors_split_like_whole() {
        for max in [16usize, 17, 18, 30, 31, 32, 33] {
            for req in [
                &b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n"[..],
                b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: bbbbbbbbbbbbbbbbbbbb\r\n\r\n",
                b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                b"GET / HTTP/1.1\r\n\r\n",
                b"GET /abcdefgh HTTP/1.1\r\r",
            ] {
                for n in 0..=req.len() {
                    let whole = parse_head(&req[..n], max);
                    let mut p = HeadParser::new();
                    for k in 0..=n {
                        let r = p.parse(&req[..k], max);
                        assert_eq!(r, parse_head(&req[..k], max), "max {max} {k}/{n}");
                    }
                    assert_eq!(p.parse(&req[..n], max), whole);
                }
            }
        }
        let mut line = b"GET /".to_vec();
        line.resize(31, b'a');
        assert_eq!(parse_head(&line[..30], 30), Ok(Status::Partial));
        assert_eq!(parse_head(&line, 30), Err(Error::TargetTooLong));
        // A head ending exactly one byte over the limit is too large, not complete...
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse_head(req, req.len() - 1), Err(Error::HeadTooLarge));
        assert!(matches!(
            parse_head(req, req.len()),
            Ok(Status::Complete(_))
        ));
        // ...unless it is invalid anyway.
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n\r\n", 17), Err(Error::Host));
    }

    #[test]
    fn parser_is_small() {
        // Stored per connection while a partial head is buffered.
        assert!(std::mem::size_of::<HeadParser>() <= 32);
    }

    #[test]
    fn request_paths() {
        for (head, path) in [
            (
                &b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"[..],
                &b"/healthz"[..],
            ),
            (b"\r\nGET /healthz?x=1 HTTP/1.1\r\n\r\n", b"/healthz"),
            (b"HEAD http://a:80/healthz?q HTTP/1.1\r\n\r\n", b"/healthz"),
            (b"GET HTTPS://a HTTP/1.1\r\n\r\n", b"/"),
            (b"OPTIONS * HTTP/1.1\r\n\r\n", b"*"),
            (b"GET /healthz/ HTTP/1.1\r\n\r\n", b"/healthz/"),
        ] {
            assert_eq!(
                request_path(head),
                path,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// A head of exactly `len` bytes: a long target, many field lines (some that the
    /// parser evaluates, with long values) and long values, ending in the empty line.
    fn big_head(len: usize) -> Vec<u8> {
        let mut h = b"\r\nGET /".to_vec();
        h.resize(8000, b'p');
        h.extend_from_slice(b" HTTP/1.1\r\nHost: example.com:8080\r\n");
        let lines: [&[u8]; 6] = [
            b"X-Short: 1\r\n",
            b"Connection: keep-alive, keep-alive, keep-alive, keep-alive, keep-alive\r\n",
            b"Content-Length: 0000000000000000000000000000000000000000000000000000000000000007\r\n",
            b"Expect:                                                       100-continue   \r\n",
            b"A:b\nC:   \t d\r\n",
            b"X-Filler:",
        ];
        let mut k = 0;
        while h.len() + 300 < len {
            let line = lines[k % lines.len()];
            h.extend_from_slice(line);
            if line == b"X-Filler:" {
                let n = 1 + k * 37 % 200;
                h.resize(h.len() + n, b'v');
                h.extend_from_slice(b"\r\n");
            }
            k += 1;
        }
        h.extend_from_slice(b"X-Last: ");
        h.resize(len - 4, b'z');
        h.extend_from_slice(b"\r\n\r\n");
        assert_eq!(h.len(), len);
        h
    }

    /// Feeds `data` one more byte per call; returns the last result and the bytes examined.
    fn trickle(data: &[u8], max: usize) -> (Result<Status, Error>, usize) {
        EXAMINED.with(|c| c.set(0));
        let mut p = HeadParser::new();
        let mut last = Ok(Status::Partial);
        for n in 1..=data.len() {
            last = p.parse(&data[..n], max);
            if last != Ok(Status::Partial) {
                break;
            }
        }
        (last, EXAMINED.with(|c| c.get()))
    }

    #[test]
    fn trickled_head_is_scanned_once() {
        const LIMIT: usize = 64 * 1024;
        let head = big_head(LIMIT);
        let (res, work) = trickle(&head, LIMIT);
        let Ok(Status::Complete(h)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(
            (h.len, h.body, h.expect_continue),
            (LIMIT, Body::Length(7), true)
        );
        assert!(work <= 3 * LIMIT, "{work} bytes examined for {LIMIT}");
        assert_eq!(parse_head(&head, LIMIT), res);

        // One byte over the limit: refused after looking at LIMIT + 1 bytes, each once.
        let mut over = big_head(LIMIT);
        over.insert(9000, b'x');
        let (res, work) = trickle(&over, LIMIT);
        assert_eq!(res, Err(Error::HeadTooLarge));
        assert!(work <= 3 * LIMIT, "{work} bytes examined for {LIMIT}");

        // A request line longer than the limit.
        let mut line = b"GET /".to_vec();
        line.resize(LIMIT + 100, b'a');
        let (res, work) = trickle(&line, LIMIT);
        assert_eq!(res, Err(Error::TargetTooLong));
        assert!(work <= 3 * LIMIT, "{work} bytes examined for {LIMIT}");

        // Whole, the same head costs about one look per byte.
        EXAMINED.with(|c| c.set(0));
        assert_eq!(parse_head(&head, LIMIT), Ok(Status::Complete(h)));
        let work = EXAMINED.with(|c| c.get());
        assert!(work <= 3 * LIMIT, "{work} bytes examined for {LIMIT}");
    }

    /// The whole-buffer parser this one replaced (it rescanned from byte 0 on every
    /// call), with today's rules: an independent oracle for the state machine.
    mod reference {
        use super::super::*;

        enum Eol {
            Yes(usize),
            No,
            NeedMore,
        }

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

        pub(crate) fn parse_head(buf: &[u8], max_head: usize) -> Result<Status, Error> {
            let limit_hit = buf.len() > max_head;
            let buf = if limit_hit { &buf[..max_head + 1] } else { buf };
            match parse_bounded(buf) {
                Ok(Status::Complete(head)) if head.len > max_head => {
                    Err(too_long(&buf[..head.len]))
                }
                Ok(Status::Partial) if limit_hit => Err(too_long(buf)),
                other => other,
            }
        }

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
            loop {
                match eol(buf, i)? {
                    Eol::Yes(n) => i += n,
                    Eol::NeedMore => return Ok(Status::Partial),
                    Eol::No => break,
                }
            }
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
                    Error::RequestLine
                });
            }
            if i == target_start {
                return Err(Error::Target);
            }
            i += 1;
            const PREFIX: &[u8] = b"HTTP/";
            let avail = &buf[i..];
            let n = avail.len().min(PREFIX.len());
            if avail[..n] != PREFIX[..n] {
                return Err(Error::Version);
            }
            if avail.len() < PREFIX.len() + 3 {
                let ok = match &avail[n..] {
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
            let mut f = Fields::new();
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
                let value_end = i;
                match eol(buf, i)? {
                    Eol::Yes(n) => i += n,
                    Eol::NeedMore => return Ok(Status::Partial),
                    Eol::No if i == buf.len() => return Ok(Status::Partial),
                    Eol::No => return Err(Error::HeaderValue),
                }
                field(&mut f, kind(name), trim_ows(&buf[value_start..value_end]))?;
            }
            head_from_fields(&f, method == b"HEAD", method == b"CONNECT", version, i)
                .map(Status::Complete)
        }
    }

    use crate::testing::Rng;

    const REQUEST_LINES: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"HEAD /x?y HTTP/1.0\r\n",
        b"POST /a/b HTTP/1.1\n",
        b"CONNECT a:1 HTTP/1.1\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"GET http://a/ HTTP/1.9\r\n",
    ];

    const BAD_REQUEST_LINES: &[&[u8]] = &[
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTP/1.1 \r\n",
        b"GET /\r\n",
        b"GET /\x80 HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];

    const FIELD_LINES: &[&[u8]] = &[
        b"host:example.com:8080\n",
        b"Host: [::1]:80\r\n",
        b"Host: [v1.x]\r\n",
        b"Host:\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 00000000000000000003\r\n",
        b"Content-Length: 3, 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close\r\n",
        b"Connection: Keep-Alive, x\r\n",
        b"Expect: 100-continue\r\n",
        b"X-A:  b c \t\r\n",
        b"X-B:\xff\x80\r\n",
        b"X-C:\r\n",
    ];

    const BAD_FIELD_LINES: &[&[u8]] = &[
        b"Host: a, b\r\n",
        b"Host: u@a\r\n",
        b"Host: a b\r\n",
        b"Content-Length: 3, 4\r\n",
        b"content-length: 99999999999999999999999\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: chunked, gzip\r\n",
        b"Transfer-Encoding: chunked, chunked\r\n",
        b"Transfer-Encoding: ,\r\n",
        b"X-C: a\rb\r\n",
        b"X-D: a\0\r\n",
        b" folded\r\n",
        b"Bad Name: x\r\n",
        b": x\r\n",
    ];

    const NOISE: &[&[u8]] = &[
        b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"\0", b"\x7f", b"\xff",
    ];

    /// Mostly well-formed heads (request line, field lines, end), some cut short, some
    /// with a bad line, a byte changed or noise inserted, some long enough to meet the
    /// limits.
    fn generate(rng: &mut Rng) -> Vec<u8> {
        fn pick(rng: &mut Rng, good: &[&[u8]], bad: &[&[u8]]) -> Vec<u8> {
            if rng.below(8) == 0 {
                bad[rng.below(bad.len())].to_vec()
            } else {
                good[rng.below(good.len())].to_vec()
            }
        }
        let mut out = Vec::new();
        for _ in 0..rng.below(3).saturating_sub(1) {
            out.extend_from_slice(b"\r\n");
        }
        if rng.below(8) == 0 {
            // A long target.
            out.extend_from_slice(b"GET /");
            let n = rng.below(120);
            out.extend(std::iter::repeat_n(b'p', n));
            out.extend_from_slice(b" HTTP/1.1\r\n");
        } else {
            out.extend_from_slice(&pick(rng, REQUEST_LINES, BAD_REQUEST_LINES));
        }
        if rng.below(4) != 0 {
            out.extend_from_slice(b"Host: a\r\n");
        }
        for _ in 0..rng.below(6) {
            if rng.below(6) == 0 {
                out.extend_from_slice(b"X-Long: ");
                let n = rng.below(80);
                out.extend(std::iter::repeat_n(b'v', n));
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(&pick(rng, FIELD_LINES, BAD_FIELD_LINES));
            }
        }
        if rng.below(8) != 0 {
            out.extend_from_slice(if rng.below(4) == 0 { b"\n" } else { b"\r\n" });
        }
        if rng.below(3) == 0 {
            let i = rng.below(out.len() + 1);
            match rng.below(3) {
                0 if i < out.len() => out[i] = rng.next() as u8,
                1 => out.truncate(i),
                _ => {
                    let noise = NOISE[rng.below(NOISE.len())];
                    out.splice(i..i, noise.iter().copied());
                }
            }
        }
        out.extend_from_slice(b"GET / HTTP/1.1\r\n");
        out
    }

    #[test]
    fn state_machine_agrees_with_whole_buffer_parser() {
        let mut rng = Rng(0x5EED);
        for case in 0..30_000 {
            let data = generate(&mut rng);
            let max = [24, 40, 64, 100, 8192][case % 5];
            let mut p = HeadParser::new();
            let mut n = 0;
            while n < data.len() {
                n = (n + 1 + rng.below(8)).min(data.len());
                let got = p.parse(&data[..n], max);
                let want = reference::parse_head(&data[..n], max);
                assert_eq!(
                    got,
                    want,
                    "case {case}: {:?} up to {n}, max {max}",
                    String::from_utf8_lossy(&data)
                );
                assert_eq!(parse_head(&data[..n], max), want);
            }
        }
    }
}
