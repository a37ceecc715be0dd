//! Response bytes, built once at start and patched only to refresh `Date`.
//!
//! Every answer the server can give is a template: the complete response bytes
//! with the offset of the 29-byte date inside. A worker owns its own copy of the
//! [`Templates`] and rewrites the date in place at most once per second, so the
//! request path only copies bytes that already exist.

use super::date::{write_imf_fixdate, IMF_FIXDATE_LEN};

/// The standard reason phrase of a status code (RFC 9110 §15), if it has one.
pub(crate) fn reason(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => return None,
    })
}

/// What the configured response looks like. Validated by the config module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseSpec {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: String,
    /// Extra header lines, already validated: token name, value without CR/LF/NUL.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) server_header: bool,
    /// The statuses of `--status-mix`, in order (each gets its own family).
    pub(crate) status_mix: Vec<u16>,
    /// `--body-size`: the body is `body` repeated (or `x`) to this many bytes.
    pub(crate) body_size: Option<usize>,
    /// A body already built and shared (a long or sized body, built once per
    /// process); it replaces `body` when set.
    pub(crate) shared_body: Option<std::sync::Arc<[u8]>>,
}

impl Default for ResponseSpec {
    fn default() -> Self {
        ResponseSpec {
            status: 200,
            body: b"Vrypt".to_vec(),
            content_type: "text/plain".to_string(),
            headers: Vec::new(),
            server_header: true,
            status_mix: Vec::new(),
            body_size: None,
            shared_body: None,
        }
    }
}

/// The `Connection` header a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// HTTP/1.1 default: no header, the connection stays open.
    Default,
    /// `Connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
    /// `Connection: close`: the server closes after this response.
    Close,
}

/// Error answers the server generates itself; all close the connection.
pub(crate) const ERROR_STATUSES: [u16; 6] = [400, 408, 414, 431, 501, 505];

/// The interim answer to `Expect: 100-continue` (RFC 9110 §10.1.1, §15.2.1).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Bodies longer than this are kept once per process and sent as a second
/// buffer; shorter ones are stored right after their head, so a response is one
/// contiguous buffer.
pub(crate) const INLINE_BODY_MAX: usize = 16 * 1024;

/// The bytes at the start of every response that can change after it was built:
/// status line, `Server` and `Date` all fit, since extra headers come after `Date`.
pub(crate) const MUTABLE_PREFIX_MAX: usize = 128;

/// Which answer a complete request gets: the configured response, the health
/// path's own answers, or one status of `--status-mix`. Each family has a GET and a
/// HEAD form, each with the three `Connection` variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Family(u8);

impl Family {
    /// The response the server was configured with.
    pub(crate) const CONFIGURED: Family = Family(0);
    /// `--health-path` while serving: `200 ok`.
    pub(crate) const HEALTH_OK: Family = Family(1);
    /// `--health-path` while shutting down: `503`.
    pub(crate) const HEALTH_DOWN: Family = Family(2);

    /// The configured response with the `i`-th status of `--status-mix`.
    pub(crate) fn mix(i: usize) -> Family {
        Family(FIXED_FAMILIES + u8::try_from(i).unwrap_or(0))
    }

    /// The health path's answers.
    #[inline]
    pub(crate) fn is_health(self) -> bool {
        self == Family::HEALTH_OK || self == Family::HEALTH_DOWN
    }

    /// `i` for [`Family::mix`]`(i)`.
    #[inline]
    pub(crate) fn mix_index(self) -> Option<usize> {
        self.0.checked_sub(FIXED_FAMILIES).map(usize::from)
    }
}

/// Body of the health path's answer while serving.
pub(crate) const HEALTH_OK_BODY: &[u8] = b"ok\n";
/// Body of the health path's answer while shutting down.
pub(crate) const HEALTH_DOWN_BODY: &[u8] = b"shutting down\n";

/// Statuses `--status-mix` may name at most.
pub(crate) const MAX_MIX: usize = 32;

/// Names one of the responses in [`Templates`]: an error answer, `100 Continue`,
/// or an answer of a [`Family`] (for GET or HEAD, with each `Connection` variant).
///
/// A connection queues these references, not bytes, so what it holds for output
/// does not depend on the size of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RespId(u8);

const ERRORS_AT: u8 = 0;
const CONTINUE_AT: u8 = ERRORS_AT + 2 * ERROR_STATUSES.len() as u8;
/// Families start here, 6 answers each.
const ANSWERS_AT: u8 = CONTINUE_AT + 1;
const FIXED_FAMILIES: u8 = 3;
const _: () = assert!(ANSWERS_AT as usize + 6 * (FIXED_FAMILIES as usize + MAX_MIX) <= 256);

fn persistence_index(p: Persistence) -> u8 {
    match p {
        Persistence::Default => 0,
        Persistence::KeepAlive => 1,
        Persistence::Close => 2,
    }
}

impl RespId {
    /// `HTTP/1.1 100 Continue`.
    pub(crate) const CONTINUE: RespId = RespId(CONTINUE_AT);

    /// The configured response; `is_head` leaves the body out.
    #[inline]
    pub(crate) fn configured(is_head: bool, persistence: Persistence) -> RespId {
        RespId::answer(Family::CONFIGURED, is_head, persistence)
    }

    /// An answer of `family`; `is_head` leaves the body out.
    #[inline]
    pub(crate) fn answer(family: Family, is_head: bool, persistence: Persistence) -> RespId {
        RespId(ANSWERS_AT + family.0 * 6 + u8::from(is_head) * 3 + persistence_index(persistence))
    }

    /// The error answer for `status`, one of [`ERROR_STATUSES`] (400 for any other).
    /// An answer to `HEAD` has the same header fields and no body (RFC 9110 §9.3.2).
    pub(crate) fn error(status: u16, is_head: bool) -> RespId {
        let i = ERROR_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(0) as u8;
        RespId(ERRORS_AT + u8::from(is_head) * ERROR_STATUSES.len() as u8 + i)
    }

    /// The same response announcing `Connection: close`, when it is an answer that
    /// would have kept the connection open; `None` otherwise.
    pub(crate) fn closing(self) -> Option<RespId> {
        let k = self.0.checked_sub(ANSWERS_AT)?;
        (k % 3 != 2).then(|| RespId(self.0 - k % 3 + 2))
    }

    /// Whether the connection is closed after this response.
    pub(crate) fn closes(self) -> bool {
        match self.0.checked_sub(ANSWERS_AT) {
            Some(k) => k % 3 == 2,
            None => self.0 != CONTINUE_AT,
        }
    }
}

/// One complete response and where its date lives.
#[derive(Debug, Clone)]
struct Template {
    /// The head, followed by the body when it is short (or there is none).
    bytes: Box<[u8]>,
    /// A long body, shared by every worker and every variant.
    body: Option<std::sync::Arc<[u8]>>,
    /// Where the 29-byte date starts in `bytes`, if the response has one.
    date_at: Option<usize>,
    status: u16,
}

impl Template {
    fn patch_date(&mut self, date: &[u8; IMF_FIXDATE_LEN]) {
        if let Some(at) = self.date_at {
            self.bytes[at..at + IMF_FIXDATE_LEN].copy_from_slice(date);
        }
    }

    fn len(&self) -> usize {
        self.bytes.len() + self.body.as_ref().map_or(0, |b| b.len())
    }
}

/// Every response a worker sends. Cheap to clone (a long body is shared), one copy per worker.
#[derive(Debug, Clone)]
pub(crate) struct Templates {
    all: Box<[Template]>,
    /// The statuses of `--status-mix`, in order.
    mix: Box<[u16]>,
    date_second: i64,
}

/// What a status code allows in a response (RFC 9110 §6.4.1, §8.6, §15.3.5, §15.3.6, §15.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// A body described by Content-Type and Content-Length.
    Body,
    /// 204: no content and no Content-Length.
    NoContentNoLength,
    /// 205: no content; `Content-Length: 0` tells the client there is none.
    EmptyWithLength,
    /// 304: no content, and no Content-Length (it would describe the selected representation).
    NotModified,
}

fn content_rule(status: u16) -> Content {
    match status {
        204 => Content::NoContentNoLength,
        205 => Content::EmptyWithLength,
        304 => Content::NotModified,
        _ => Content::Body,
    }
}

/// What a family of responses has in common (the GET, HEAD and `Connection` variants).
#[derive(Clone, Copy)]
struct Shape<'a> {
    status: u16,
    content_type: &'a str,
    body: &'a [u8],
    /// `body` held once for all variants and workers, when it is long.
    shared_body: Option<&'a std::sync::Arc<[u8]>>,
    headers: &'a [(String, String)],
    server_header: bool,
}

/// Builds one response. `send_body` is false for an answer to HEAD (headers as for GET).
fn build(shape: &Shape<'_>, send_body: bool, persistence: Persistence) -> Template {
    let Shape {
        status,
        content_type,
        body,
        shared_body,
        headers,
        server_header,
    } = *shape;
    let rule = content_rule(status);
    let mut out = Vec::with_capacity(160 + body.len().min(INLINE_BODY_MAX));
    let reason = reason(status).unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    if server_header {
        out.extend_from_slice(b"Server: vrypt\r\n");
    }
    out.extend_from_slice(b"Date: ");
    let date_at = out.len();
    out.extend_from_slice(&[b'-'; IMF_FIXDATE_LEN]);
    out.extend_from_slice(b"\r\n");
    debug_assert!(out.len() <= MUTABLE_PREFIX_MAX);
    match rule {
        Content::Body => {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        Content::EmptyWithLength => out.extend_from_slice(b"Content-Length: 0\r\n"),
        Content::NoContentNoLength | Content::NotModified => {}
    }
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    match persistence {
        Persistence::Default => {}
        Persistence::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    let mut separate = None;
    if send_body && rule == Content::Body {
        match shared_body {
            Some(shared) => separate = Some(shared.clone()),
            None => out.extend_from_slice(body),
        }
    }
    Template {
        bytes: out.into_boxed_slice(),
        body: separate,
        date_at: Some(date_at),
        status,
    }
}

/// The body to hold once per process and share, when it is long or sized
/// (`--body-size`); `None` when it is short enough to live in every template.
pub(crate) fn shared_body(spec: &ResponseSpec) -> Option<std::sync::Arc<[u8]>> {
    match spec.body_size {
        Some(size) => Some(repeat_to(&spec.body, size)),
        None => (spec.body.len() > INLINE_BODY_MAX).then(|| spec.body.as_slice().into()),
    }
}

/// `unit` repeated to exactly `size` bytes, built in place (a 1 GiB body is never
/// held twice).
fn repeat_to(unit: &[u8], size: usize) -> std::sync::Arc<[u8]> {
    let unit: &[u8] = if unit.is_empty() { b"x" } else { unit };
    let mut arc: std::sync::Arc<[std::mem::MaybeUninit<u8>]> =
        std::sync::Arc::new_uninit_slice(size);
    let Some(buf) = std::sync::Arc::get_mut(&mut arc) else {
        unreachable!("a new Arc has no other owner")
    };
    let dst = buf.as_mut_ptr().cast::<u8>();
    let first = unit.len().min(size);
    // SAFETY: `dst` points to `size` writable bytes and `first <= size`; `unit` is a
    // separate allocation, so the regions do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(unit.as_ptr(), dst, first) };
    let mut filled = first;
    while filled < size {
        // Doubling copies of what is written so far keep the pattern going, since
        // `filled` is a multiple of the unit's length.
        let n = filled.min(size - filled);
        // SAFETY: `[0, n)` is initialised and `[filled, filled + n)` lies within the
        // `size` bytes; `n <= filled`, so the two ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(dst, dst.add(filled), n) };
        filled += n;
    }
    // SAFETY: the loop wrote every byte of `[0, size)` (`filled == size` at the end;
    // `unit` is not empty, so every pass makes progress).
    unsafe { arc.assume_init() }
}

impl Templates {
    /// Builds every response for `spec`, dated `unix_secs`.
    pub(crate) fn new(spec: &ResponseSpec, unix_secs: i64) -> Templates {
        let shared = match &spec.shared_body {
            Some(b) => Some(b.clone()),
            None => shared_body(spec),
        };
        let body: &[u8] = match &shared {
            Some(b) => b,
            None => &spec.body,
        };
        let configured = Shape {
            status: spec.status,
            content_type: &spec.content_type,
            body,
            shared_body: shared.as_ref(),
            headers: &spec.headers,
            server_header: spec.server_header,
        };
        let health = |status: u16, body: &'static [u8]| Shape {
            status,
            content_type: "text/plain",
            body,
            shared_body: None,
            headers: &[],
            server_header: spec.server_header,
        };
        let mut families = vec![
            configured,
            health(200, HEALTH_OK_BODY),
            health(503, HEALTH_DOWN_BODY),
        ];
        for &status in spec.status_mix.iter().take(MAX_MIX) {
            families.push(Shape {
                status,
                ..configured
            });
        }
        let mut all = Vec::with_capacity(usize::from(ANSWERS_AT) + 6 * families.len());
        for k in 0..2 * ERROR_STATUSES.len() {
            let code = ERROR_STATUSES[k % ERROR_STATUSES.len()];
            let error = Shape {
                status: code,
                content_type: "text/plain",
                body: reason(code).unwrap_or("Error").as_bytes(),
                shared_body: None,
                headers: &[],
                server_header: spec.server_header,
            };
            all.push(build(&error, k < ERROR_STATUSES.len(), Persistence::Close));
        }
        all.push(Template {
            bytes: CONTINUE.into(),
            body: None,
            date_at: None,
            status: 100,
        });
        for shape in &families {
            for send_body in [true, false] {
                for persistence in [
                    Persistence::Default,
                    Persistence::KeepAlive,
                    Persistence::Close,
                ] {
                    all.push(build(shape, send_body, persistence));
                }
            }
        }
        let mut t = Templates {
            all: all.into_boxed_slice(),
            mix: spec.status_mix.iter().copied().take(MAX_MIX).collect(),
            date_second: i64::MIN,
        };
        t.refresh_date(unix_secs);
        t
    }

    /// Rewrites the date in every template when `unix_secs` is a new second.
    #[inline]
    pub(crate) fn refresh_date(&mut self, unix_secs: i64) {
        if unix_secs == self.date_second {
            return;
        }
        self.date_second = unix_secs;
        let mut date = [0u8; IMF_FIXDATE_LEN];
        write_imf_fixdate(unix_secs, &mut date);
        for t in self.all.iter_mut() {
            t.patch_date(&date);
        }
    }

    /// The response's bytes as two parts: the head (with a short body), and a
    /// long body (empty when there is none or it is inline).
    #[inline]
    pub(crate) fn parts(&self, id: RespId) -> (&[u8], &[u8]) {
        let t = &self.all[usize::from(id.0)];
        (&t.bytes, t.body.as_deref().unwrap_or(&[]))
    }

    /// Total length of the response.
    #[inline]
    pub(crate) fn len(&self, id: RespId) -> usize {
        self.all[usize::from(id.0)].len()
    }

    /// Where the part of the response that changes over time (the date) ends:
    /// bytes from here on never change. At most [`MUTABLE_PREFIX_MAX`].
    #[inline]
    pub(crate) fn mutable_end(&self, id: RespId) -> usize {
        self.all[usize::from(id.0)]
            .date_at
            .map_or(0, |at| at + IMF_FIXDATE_LEN)
    }

    /// The statuses of `--status-mix`, in order.
    pub(crate) fn mix_statuses(&self) -> &[u16] {
        &self.mix
    }

    /// Status code of the response `id`.
    #[inline]
    pub(crate) fn status_of(&self, id: RespId) -> u16 {
        self.all[usize::from(id.0)].status
    }

    /// The whole response as one byte vector (tests and the model; not for the request path).
    pub(crate) fn bytes(&self, id: RespId) -> Vec<u8> {
        let (head, body) = self.parts(id);
        [head, body].concat()
    }

    /// The configured response.
    #[cfg(test)]
    pub(crate) fn configured(&self, is_head: bool, persistence: Persistence) -> Vec<u8> {
        self.bytes(RespId::configured(is_head, persistence))
    }

    /// The error response for `status`, one of [`ERROR_STATUSES`] (400 otherwise), to a GET.
    #[cfg(test)]
    pub(crate) fn error(&self, status: u16) -> Vec<u8> {
        self.bytes(RespId::error(status, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn default_response() {
        let t = Templates::new(&ResponseSpec::default(), 784_111_777);
        assert_eq!(
            text(&t.configured(false, Persistence::Default)),
            "HTTP/1.1 200 OK\r\nServer: vrypt\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nVrypt"
        );
        let head = text(&t.configured(true, Persistence::Close));
        assert!(
            head.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn date_refresh_patches_all() {
        let mut t = Templates::new(&ResponseSpec::default(), 0);
        t.refresh_date(784_111_777);
        assert!(text(&t.error(431)).contains("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
        assert!(text(&t.error(431)).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text(&t.configured(false, Persistence::KeepAlive))
            .contains("Connection: keep-alive\r\n"));
    }

    #[test]
    fn no_content_has_no_length() {
        let spec = ResponseSpec {
            status: 204,
            ..ResponseSpec::default()
        };
        let t = Templates::new(&spec, 0);
        let r = text(&t.configured(false, Persistence::Default));
        assert!(r.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(
            !r.contains("Content-Length") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
    }

    #[test]
    fn reset_content_and_not_modified_have_no_body() {
        for (status, length) in [(205, Some("Content-Length: 0\r\n")), (304, None)] {
            let spec = ResponseSpec {
                status,
                ..ResponseSpec::default()
            };
            let t = Templates::new(&spec, 0);
            let r = text(&t.configured(false, Persistence::Default));
            assert!(r.ends_with("\r\n\r\n"), "{r}");
            match length {
                Some(l) => assert!(r.contains(l), "{r}"),
                None => assert!(!r.contains("Content-Length"), "{r}"),
            }
            assert!(!r.contains("Content-Type"), "{r}");
        }
    }

    #[test]
    fn error_answers_to_head_have_headers_but_no_body() {
        let t = Templates::new(&ResponseSpec::default(), 0);
        for status in ERROR_STATUSES {
            let get = t.bytes(RespId::error(status, false));
            let head = t.bytes(RespId::error(status, true));
            let body = reason(status).unwrap().as_bytes();
            assert!(get.ends_with(body));
            assert_eq!(&get[..get.len() - body.len()], &head[..]);
            assert!(RespId::error(status, true).closes());
        }
    }

    #[test]
    fn closing_variant_and_long_bodies_are_shared() {
        let spec = ResponseSpec {
            body: vec![b'z'; 100_000],
            ..ResponseSpec::default()
        };
        let t = Templates::new(&spec, 0);
        let keep = RespId::configured(false, Persistence::Default);
        let close = keep.closing().unwrap();
        assert_eq!(close, RespId::configured(false, Persistence::Close));
        assert!(close.closing().is_none() && close.closes() && !keep.closes());
        let (head, body) = t.parts(close);
        assert!(text(head).ends_with("Content-Length: 100000\r\nConnection: close\r\n\r\n"));
        assert_eq!(body.len(), 100_000);
        assert_eq!(t.len(close), head.len() + 100_000);
        let (_, head_body) = t.parts(RespId::configured(true, Persistence::Default));
        assert!(head_body.is_empty());
        let copy = t.clone();
        assert_eq!(
            copy.parts(keep).1.as_ptr(),
            body.as_ptr(),
            "one copy of a long body"
        );
        assert_eq!(t.bytes(RespId::CONTINUE), b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(t.mutable_end(keep) <= MUTABLE_PREFIX_MAX && t.mutable_end(RespId::CONTINUE) == 0);
    }

    #[test]
    fn sized_bodies_repeat_the_body_exactly() {
        for (unit, size) in [
            (&b"abc"[..], 10),
            (b"", 5),
            (b"0123456789", 3),
            (b"ab", 1 << 20),
        ] {
            let b = repeat_to(unit, size);
            let u: &[u8] = if unit.is_empty() { b"x" } else { unit };
            assert_eq!(b.len(), size);
            assert!(b.iter().enumerate().all(|(i, &c)| c == u[i % u.len()]));
        }
        let spec = ResponseSpec {
            body_size: Some(1000),
            ..ResponseSpec::default()
        };
        let t = Templates::new(&spec, 0);
        let (head, body) = t.parts(RespId::configured(false, Persistence::Default));
        assert!(text(head).contains("Content-Length: 1000\r\n"));
        assert_eq!(&body[..7], b"VryptVr");
    }

    #[test]
    fn health_answers_ignore_the_configured_response() {
        let spec = ResponseSpec {
            status: 404,
            body: b"nothing here".to_vec(),
            headers: vec![("X-A".into(), "1".into())],
            ..ResponseSpec::default()
        };
        let t = Templates::new(&spec, 0);
        let ok = text(&t.bytes(RespId::answer(
            Family::HEALTH_OK,
            false,
            Persistence::Default,
        )));
        assert!(
            ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("\r\n\r\nok\n"),
            "{ok}"
        );
        assert!(!ok.contains("X-A"), "{ok}");
        let down = RespId::answer(Family::HEALTH_DOWN, true, Persistence::KeepAlive);
        let text_down = text(&t.bytes(down));
        assert!(text_down.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text_down.ends_with("Content-Length: 14\r\nConnection: keep-alive\r\n\r\n"));
        assert_eq!(
            down.closing(),
            Some(RespId::answer(
                Family::HEALTH_DOWN,
                true,
                Persistence::Close
            ))
        );
        assert_eq!(t.status_of(down), 503);
        let conf = text(&t.bytes(RespId::configured(false, Persistence::Close)));
        assert!(conf.starts_with("HTTP/1.1 404 Not Found\r\n") && conf.contains("X-A: 1\r\n"));
    }
}
