//! Listening sockets: one per worker, all bound to the same address with
//! `SO_REUSEPORT` so the kernel spreads new connections across workers.

use crate::config::Listen;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// The listeners for all workers and the address they are bound to.
pub(crate) struct Bound {
    pub(crate) listeners: Vec<TcpListener>,
    pub(crate) addr: SocketAddr,
    /// Whether an IPv6 wildcard socket also accepts IPv4 (dual-stack).
    pub(crate) dual_stack: bool,
}

fn socket_for(addr: &SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
        // Accepted sockets inherit TCP_NODELAY from the listener, which saves a
        // setsockopt call per connection.
        socket.set_tcp_nodelay(true)?;
    }
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // Dual-stack: IPv4 clients arrive as ::ffff:a.b.c.d on the same socket.
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// Fails with `EADDRINUSE` when anything holds `addr`, including another process
/// that bound it with `SO_REUSEPORT` (which a `SO_REUSEPORT` bind would silently join).
fn probe_free(addr: &SocketAddr) -> io::Result<()> {
    let probe = socket_for(addr, false)?;
    probe.bind(&(*addr).into())
}

/// Creates `count` listening sockets on `addr`.
fn bind_on(addr: SocketAddr, count: usize, backlog: i32) -> io::Result<Bound> {
    if addr.port() != 0 {
        probe_free(&addr)?;
    }
    let mut listeners = Vec::with_capacity(count);
    let mut bound_addr = addr;
    for _ in 0..count {
        let socket = socket_for(&bound_addr, true)?;
        socket.bind(&bound_addr.into())?;
        socket.listen(backlog)?;
        if bound_addr.port() == 0 {
            // Port 0: the kernel chose a port; the other workers join that one.
            if let Some(a) = socket.local_addr()?.as_socket() {
                bound_addr = a;
            }
        }
        listeners.push(TcpListener::from(socket));
    }
    let dual_stack = addr.is_ipv6() && addr.ip().is_unspecified();
    Ok(Bound {
        listeners,
        addr: bound_addr,
        dual_stack,
    })
}

/// Binds the listeners for `listen`: for the default wildcard, `[::]` dual-stack
/// first and `0.0.0.0` when the host has no IPv6.
pub(crate) fn bind(listen: &Listen, count: usize, backlog: i32) -> io::Result<Bound> {
    let candidates = listen.candidates();
    let mut last_err = None;
    for (i, addr) in candidates.iter().enumerate() {
        match bind_on(*addr, count, backlog) {
            Ok(b) => return Ok(b),
            Err(e) => {
                let no_ipv6 = matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
                );
                let err = io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
                if no_ipv6 && i + 1 < candidates.len() {
                    last_err = Some(err);
                    continue;
                }
                return Err(err);
            }
        }
    }
    Err(last_err
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

/// `net.core.somaxconn`, the kernel's cap on any listen backlog, if readable.
pub(crate) fn somaxconn() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay_and_workers_share_the_port() {
        let bound = bind(&Listen::Exact("127.0.0.1:0".parse().unwrap()), 2, 16).unwrap();
        assert_eq!(bound.listeners.len(), 2);
        assert_ne!(bound.addr.port(), 0);
        for l in &bound.listeners {
            assert_eq!(l.local_addr().unwrap(), bound.addr);
            l.set_nonblocking(false).unwrap();
        }
        let _client = std::net::TcpStream::connect(bound.addr).unwrap();
        // SO_REUSEPORT hashes the connection to one of the two listeners.
        for l in &bound.listeners {
            l.set_nonblocking(true).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let accepted = loop {
            if let Some(s) = bound.listeners.iter().find_map(|l| l.accept().ok()) {
                break s.0;
            }
            assert!(std::time::Instant::now() < deadline, "nothing accepted");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY not inherited from the listener"
        );
    }
}
