//! Response bytes, built once at start and patched only to refresh `Date`.
//!
//! Every answer the server can give is a template: the complete response bytes
//! with the offset of the 29-byte date inside. A worker owns its own copy of the
//! [`Templates`] and rewrites the date in place at most once per second, so the
//! request path only copies bytes that already exist.

use super::date::{write_imf_fixdate, IMF_FIXDATE_LEN};

/// The standard reason phrase of a status code (RFC 9110 §15), if it has one.
pub fn reason(code: u16) -> Option<&'static str> {
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
pub struct ResponseSpec {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: String,
    /// Extra header lines, already validated: token name, value without CR/LF/NUL.
    pub headers: Vec<(String, String)>,
    pub server_header: bool,
}

impl Default for ResponseSpec {
    fn default() -> Self {
        ResponseSpec {
            status: 200,
            body: b"Vrypt".to_vec(),
            content_type: "text/plain".to_string(),
            headers: Vec::new(),
            server_header: true,
        }
    }
}

/// The `Connection` header a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: no header, the connection stays open.
    Default,
    /// `Connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
    /// `Connection: close`: the server closes after this response.
    Close,
}

/// Error answers the server generates itself; all close the connection.
pub const ERROR_STATUSES: [u16; 6] = [400, 408, 414, 431, 501, 505];

/// One complete response and where its date lives.
#[derive(Debug, Clone)]
struct Template {
    bytes: Box<[u8]>,
    date_at: usize,
}

impl Template {
    fn patch_date(&mut self, date: &[u8; IMF_FIXDATE_LEN]) {
        self.bytes[self.date_at..self.date_at + IMF_FIXDATE_LEN].copy_from_slice(date);
    }
}

/// Every response a worker sends. Cheap to clone, one copy per worker.
#[derive(Debug, Clone)]
pub struct Templates {
    /// Indexed by `[is_head][persistence]`.
    configured: [[Template; 3]; 2],
    errors: [Template; ERROR_STATUSES.len()],
    status: u16,
    date_second: i64,
}

fn persistence_index(p: Persistence) -> usize {
    match p {
        Persistence::Default => 0,
        Persistence::KeepAlive => 1,
        Persistence::Close => 2,
    }
}

/// Builds one response. `body` is `None` for a HEAD answer (headers as for GET).
fn build(
    status: u16,
    content_type: &str,
    body: &[u8],
    send_body: bool,
    headers: &[(String, String)],
    server_header: bool,
    persistence: Persistence,
) -> Template {
    let mut out = Vec::with_capacity(160 + body.len());
    let reason = reason(status).unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    if server_header {
        out.extend_from_slice(b"Server: vrypt\r\n");
    }
    out.extend_from_slice(b"Date: ");
    let date_at = out.len();
    out.extend_from_slice(&[b' '; IMF_FIXDATE_LEN]);
    out.extend_from_slice(b"\r\n");
    // RFC 9110 §6.4.1 / §8.6: 204 and 304 have no content; 204 has no Content-Length.
    let bodiless = status == 204 || status == 304;
    if !bodiless {
        out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    }
    if status != 204 {
        let len = if bodiless { 0 } else { body.len() };
        out.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes());
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
    if send_body && !bodiless {
        out.extend_from_slice(body);
    }
    let mut t = Template {
        bytes: out.into_boxed_slice(),
        date_at,
    };
    t.patch_date(&[b'-'; IMF_FIXDATE_LEN]);
    t
}

impl Templates {
    /// Builds every response for `spec`, dated `unix_secs`.
    pub fn new(spec: &ResponseSpec, unix_secs: i64) -> Templates {
        let p = [
            Persistence::Default,
            Persistence::KeepAlive,
            Persistence::Close,
        ];
        let configured = [false, true].map(|is_head| {
            p.map(|pers| {
                build(
                    spec.status,
                    &spec.content_type,
                    &spec.body,
                    !is_head,
                    &spec.headers,
                    spec.server_header,
                    pers,
                )
            })
        });
        let errors = ERROR_STATUSES.map(|code| {
            let body = reason(code).unwrap_or("Error").as_bytes();
            build(
                code,
                "text/plain",
                body,
                true,
                &[],
                spec.server_header,
                Persistence::Close,
            )
        });
        let mut t = Templates {
            configured,
            errors,
            status: spec.status,
            date_second: i64::MIN,
        };
        t.refresh_date(unix_secs);
        t
    }

    /// Rewrites the date in every template when `unix_secs` is a new second.
    #[inline]
    pub fn refresh_date(&mut self, unix_secs: i64) {
        if unix_secs == self.date_second {
            return;
        }
        self.date_second = unix_secs;
        let mut date = [0u8; IMF_FIXDATE_LEN];
        write_imf_fixdate(unix_secs, &mut date);
        for t in self
            .configured
            .iter_mut()
            .flatten()
            .chain(self.errors.iter_mut())
        {
            t.patch_date(&date);
        }
    }

    /// The configured response.
    #[inline]
    pub fn configured(&self, is_head: bool, persistence: Persistence) -> &[u8] {
        &self.configured[usize::from(is_head)][persistence_index(persistence)].bytes
    }

    /// Status code of the configured response.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The error response for `status`, one of [`ERROR_STATUSES`] (400 otherwise).
    pub fn error(&self, status: u16) -> &[u8] {
        let i = ERROR_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(0);
        &self.errors[i].bytes
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
            text(t.configured(false, Persistence::Default)),
            "HTTP/1.1 200 OK\r\nServer: vrypt\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nVrypt"
        );
        let head = text(t.configured(true, Persistence::Close));
        assert!(
            head.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn date_refresh_patches_all() {
        let mut t = Templates::new(&ResponseSpec::default(), 0);
        t.refresh_date(784_111_777);
        assert!(text(t.error(431)).contains("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
        assert!(text(t.error(431)).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text(t.configured(false, Persistence::KeepAlive))
            .contains("Connection: keep-alive\r\n"));
    }

    #[test]
    fn no_content_has_no_length() {
        let spec = ResponseSpec {
            status: 204,
            ..ResponseSpec::default()
        };
        let t = Templates::new(&spec, 0);
        let r = text(t.configured(false, Persistence::Default));
        assert!(r.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(
            !r.contains("Content-Length") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
    }
}
