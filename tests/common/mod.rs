//! Shared helpers for the integration tests: start the real binary on a free port,
//! talk raw HTTP/1.1 bytes to it, and read responses back exactly as a client would.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single read in a test may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `vrypt-server` child process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

/// `command()` on 127.0.0.1 with a kernel-chosen port, `workers` workers and no
/// StatsD: the base of most tests (`Server::start` uses one worker).
pub fn local_command(workers: &str) -> Command {
    let mut cmd = command();
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--workers",
        workers,
        "--statsd",
        "off",
    ]);
    cmd
}

/// A command for the binary with a clean environment (no VRYPT_* or PORT from the caller).
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vrypt-server"));
    for (k, _) in std::env::vars() {
        if k.starts_with("VRYPT_") || k == "PORT" {
            cmd.env_remove(k);
        }
    }
    cmd
}

impl Server {
    /// Starts the server on 127.0.0.1 with a kernel-chosen port, one worker and no
    /// StatsD, plus `args`.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(local_command("1").args(args))
    }

    /// Starts a prepared command and waits for its `event=listening` line.
    pub fn start_with(cmd: &mut Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = log.lock().unwrap().clone();
            if let Some(line) = text.lines().find(|l| l.contains("event=listening")) {
                let addr = line
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("addr="))
                    .and_then(|a| a.parse().ok())
                    .expect("addr= in listening line");
                return Server { child, addr, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited with {status} before listening: {text}");
            }
            assert!(Instant::now() < deadline, "server did not start: {text}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits up to `limit` for a log line containing `needle`; panics with the log
    /// if none appears.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no '{needle}' in the log within {limit:?}:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The admin listener's address, from its `event=admin_listening` line (logged
    /// before `event=listening`).
    pub fn admin_addr(&self) -> SocketAddr {
        let text = self.log_text();
        text.lines()
            .find(|l| l.contains("event=admin_listening"))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|kv| kv.strip_prefix("addr="))
                    .and_then(|a| a.parse().ok())
            })
            .unwrap_or_else(|| panic!("no admin_listening line: {text}"))
    }

    /// A client connected to 127.0.0.1 on the server's port.
    pub fn connect(&self) -> Client {
        Client::connect(SocketAddr::from(([127, 0, 0, 1], self.port())))
    }

    /// A client whose socket has a receive buffer of about `bytes` (SO_RCVBUF set
    /// before connecting, so the advertised window is small too): a slow network or
    /// a client that reads in small pieces, so the server's output backs up in its
    /// own send queue.
    pub fn connect_small_rcvbuf(&self, bytes: usize) -> Client {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port()));
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process id.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits up to `limit` for the process to exit and asserts it exited with status 0
    /// (the log is shown when it did not).
    pub fn assert_exits_cleanly(&mut self, limit: Duration) {
        let status = self.wait_exit(limit);
        assert_eq!(
            status.and_then(|st| st.code()),
            Some(0),
            "exit status {status:?}; log:\n{}",
            self.log_text()
        );
    }

    /// Sends SIGTERM, then waits up to `limit` for the exit; panics with the log if
    /// the process is still running after that.
    pub fn stop(&mut self, limit: Duration) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {limit:?} of SIGTERM; stderr:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The complete (newline-terminated) log lines so far, trailing whitespace removed.
    pub fn log_lines(&self) -> Vec<String> {
        let text = self.log_text();
        let mut lines: Vec<&str> = text.split('\n').collect();
        lines.pop(); // an unterminated line still being written, or "" after the last '\n'
        lines.iter().map(|l| l.trim_end().to_string()).collect()
    }

    /// Resident memory from /proc, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Waits up to `limit` until every thread of the process is stopped (after
    /// SIGSTOP); panics otherwise.
    pub fn wait_stopped(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let tasks = format!("/proc/{}/task", self.pid());
        loop {
            let all_stopped = std::fs::read_dir(&tasks).is_ok_and(|dir| {
                dir.flatten().all(|t| {
                    let tid: i32 = t.file_name().to_string_lossy().parse().unwrap_or(0);
                    let stat =
                        std::fs::read_to_string(format!("{tasks}/{tid}/stat")).unwrap_or_default();
                    stat.rsplit_once(')')
                        .and_then(|x| x.1.trim_start().chars().next())
                        .is_some_and(|c| c == 'T' || c == 't')
                })
            });
            if all_stopped {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "process not stopped within {limit:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// User + system CPU time of the process, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    }
}

pub fn proc_status_kib(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET path` (or another `method`) on a new connection, with `Connection: close`;
/// the response, read until the server closes.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut c = Client::connect(addr);
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
    c.response(method == "HEAD")
}

/// [`request`] with `GET`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path)
}

/// The value of the sample `name` (with its labels, as written) in a Prometheus
/// text exposition; panics when it is missing.
pub fn prom_sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .parse()
        .unwrap_or_else(|_| panic!("sample {name} is not a number in:\n{text}"))
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes the whole response took on the wire: head plus body.
    pub wire_len: usize,
}

impl Response {
    /// The value of header `name` (case-insensitive), if present once or more.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP client that keeps unread bytes between responses (for pipelining).
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response; `head_request` means the response has no body whatever
    /// its Content-Length says. Panics on timeout or EOF before a full response.
    pub fn response(&mut self, head_request: bool) -> Response {
        self.try_response(head_request)
            .expect("a complete response")
    }

    /// Like [`response`](Self::response) but returns `None` on EOF or reset before
    /// a complete response.
    pub fn try_response(&mut self, head_request: bool) -> Option<Response> {
        match self.next_response(head_request) {
            Next::Response(r) => Some(r),
            _ => None,
        }
    }

    /// Reads one response and says why there is none: EOF, the read timeout, or a
    /// failed read (a reset). Bytes of an incomplete response stay buffered, so a
    /// call after [`Next::Timeout`] continues where this one stopped.
    pub fn next_response(&mut self, head_request: bool) -> Next {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if let Some(end) = self.fill_or_end() {
                return end;
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_string();
        let status = status_line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("numeric Content-Length"))
            .unwrap_or(0);
        let len = if head_request { 0 } else { len };
        while self.buf.len() < head_end + len {
            if let Some(end) = self.fill_or_end() {
                return end;
            }
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Next::Response(Response {
            status,
            status_line,
            headers,
            body,
            wire_len: head_end + len,
        })
    }

    /// One read into the buffer: `None` when bytes arrived, else why none did.
    fn fill_or_end(&mut self) -> Option<Next> {
        match self.fill() {
            Ok(0) => Some(Next::Eof),
            Ok(_) => None,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Some(Next::Timeout)
            }
            Err(e) => Some(Next::Failed(e)),
        }
    }

    /// How the connection goes on after the responses read so far, waiting at most
    /// `wait` for something to happen: EOF, a reset, more bytes, or nothing.
    pub fn ending(&mut self, wait: Duration) -> Ending {
        if !self.buf.is_empty() {
            return Ending::Extra(std::mem::take(&mut self.buf));
        }
        let before = self.stream.read_timeout().ok().flatten();
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 16 * 1024];
        let end = match self.stream.read(&mut chunk) {
            Ok(0) => Ending::Eof,
            Ok(n) => Ending::Extra(chunk[..n].to_vec()),
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Ending::Open,
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Ending::Reset,
                k => Ending::Failed(k),
            },
        };
        self.stream.set_read_timeout(before).unwrap();
        end
    }

    /// Bytes received but not yet returned as part of a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the server closed the connection (EOF or reset) with nothing more sent,
    /// within the read timeout.
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ),
        }
    }

    /// Everything until EOF, as text.
    pub fn read_to_end(&mut self) -> String {
        let mut rest = std::mem::take(&mut self.buf);
        let _ = self.stream.read_to_end(&mut rest);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A simple GET with Host.
pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// What [`Client::next_response`] found.
pub enum Next {
    Response(Response),
    /// EOF before a complete response ([`Client::buffered`] holds any partial bytes).
    Eof,
    /// The read timeout passed before a complete response.
    Timeout,
    /// A read failed, e.g. with ECONNRESET.
    Failed(std::io::Error),
}

impl std::fmt::Debug for Next {
    /// Short: a response shows its status line and body length, never the body.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Next::Response(r) => write!(
                f,
                "response {:?} ({} body bytes)",
                r.status_line,
                r.body.len()
            ),
            Next::Eof => f.write_str("EOF before a complete response"),
            Next::Timeout => f.write_str("read timeout before a complete response"),
            Next::Failed(e) => write!(f, "read failed: {e} ({:?})", e.kind()),
        }
    }
}

/// What [`Client::ending`] saw after the responses read so far.
#[derive(PartialEq, Eq)]
pub enum Ending {
    /// The server closed the connection cleanly.
    Eof,
    /// The read failed with ECONNRESET or ECONNABORTED.
    Reset,
    /// More bytes arrived (or were already buffered).
    Extra(Vec<u8>),
    /// Nothing within the wait: the connection is still open.
    Open,
    /// Another read error.
    Failed(ErrorKind),
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Eof => f.write_str("EOF"),
            Ending::Reset => f.write_str("connection reset"),
            Ending::Extra(b) => {
                let shown = &b[..b.len().min(80)];
                write!(
                    f,
                    "{} unexpected bytes: {:?}",
                    b.len(),
                    String::from_utf8_lossy(shown)
                )
            }
            Ending::Open => f.write_str("still open, nothing sent"),
            Ending::Failed(k) => write!(f, "read failed: {k:?}"),
        }
    }
}

/// Closes `stream` with SO_LINGER 0, so the kernel sends a reset instead of a FIN.
pub fn close_with_reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let lin = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor we own, with a valid linger struct and its size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lin as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(stream);
}

/// Whether the peer has closed or reset `stream`, seen without reading from it
/// (poll for POLLRDHUP, POLLHUP or POLLERR).
pub fn peer_gone(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// `len` reproducible pseudo-random bytes (xorshift64* from `seed`): a body in which
/// a misplaced, repeated or missing piece shows up as a difference.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A file in the temporary directory, removed on drop.
pub struct TempFile {
    pub path: std::path::PathBuf,
}

impl TempFile {
    pub fn new(tag: &str, bytes: &[u8]) -> TempFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vrypt-{tag}-{}-{n}", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile { path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a `curl` binary runs on this machine.
pub fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
