//! Reaching the collector, on the pusher thread: resolving a host name in the
//! background, keeping a non-blocking UDP socket connected to one of its
//! addresses, sending datagrams, and moving on to the next address or resolving
//! again when sends fail. Every failure is a rate-limited warning, never an error.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::mpsc::{self, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use super::{order_addrs, Pusher, Target, RERESOLVE_AFTER_ERROR, RERESOLVE_EVERY};
use crate::log::Level;

impl Pusher {
    /// Sends one datagram.
    ///
    /// On a connected UDP socket, "connection refused" reports an ICMP "port
    /// unreachable" caused by an *earlier* datagram, and the datagram passed to
    /// this call was not sent. So the datagram is sent once more: to the next
    /// resolved address when there is one (the collector may listen on the
    /// other family), else to the same one (a collector that has just started
    /// gets it; a dead one costs one extra syscall per flush).
    pub(super) fn send(&mut self, datagram: &[u8]) {
        for _attempt in 0..2 {
            let Some(sock) = &self.socket else { return };
            let err = match sock.send(datagram) {
                Ok(_) => return,
                Err(e) => e,
            };
            let now = Instant::now();
            self.resolve_soon = true;
            let addr = self.addrs.get(self.current).copied();
            if let Some(n) = self.warn.allow(now) {
                crate::log!(
                    Level::Warn,
                    "statsd_send_failed",
                    "target={} addr={} error={} suppressed={}",
                    crate::log::quote(&self.cfg.target),
                    addr.map_or_else(|| "-".to_string(), |a| a.to_string()),
                    crate::log::quote(&err.to_string()),
                    n
                );
            }
            if err.kind() != io::ErrorKind::ConnectionRefused {
                return;
            }
            if self.addrs.len() > 1 {
                self.current = (self.current + 1) % self.addrs.len();
                self.connect_current();
            }
        }
    }

    /// Starts a new resolution when it is due.
    pub(super) fn maybe_resolve(&mut self, now: Instant) {
        if matches!(self.target, Target::Addr(_)) || self.pending.is_some() {
            return;
        }
        let since = self
            .last_resolve
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let due = since >= RERESOLVE_EVERY
            || (since >= RERESOLVE_AFTER_ERROR && (self.resolve_soon || self.socket.is_none()));
        if due {
            self.start_resolve(now);
        }
    }

    pub(super) fn start_resolve(&mut self, now: Instant) {
        let Target::Name(host, port) = &self.target else {
            return;
        };
        let (host, port) = (host.clone(), *port);
        let (tx, rx) = mpsc::channel();
        self.last_resolve = Some(now);
        self.resolve_soon = false;
        // A thread per resolution keeps a hanging DNS server from ever delaying
        // a flush or shutdown; at most one runs at a time, and a stale one just
        // finds the receiver gone.
        let spawned = thread::Builder::new()
            .name("statsd-resolve".to_string())
            .spawn(move || {
                let r = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>());
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => self.pending = Some(rx),
            Err(e) => self.warn_resolve(now, &e),
        }
    }

    /// Takes the result of a finished resolution, if any.
    pub(super) fn poll_resolve(&mut self, now: Instant) {
        let Some(rx) = &self.pending else { return };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                Err(io::Error::other("resolver thread ended without an answer"))
            }
        };
        self.pending = None;
        match result {
            Ok(list) if !list.is_empty() => self.use_addrs(order_addrs(list)),
            Ok(_) => self.warn_resolve(now, &io::Error::other("no addresses")),
            Err(e) => self.warn_resolve(now, &e),
        }
    }

    fn warn_resolve(&mut self, now: Instant, e: &io::Error) {
        if let Some(n) = self.warn.allow(now) {
            crate::log!(
                Level::Warn,
                "statsd_resolve_failed",
                "target={} error={} suppressed={}",
                crate::log::quote(&self.cfg.target),
                crate::log::quote(&e.to_string()),
                n
            );
        }
    }

    /// Switches to a new address list, keeping the socket when the address in
    /// use is still in it.
    pub(super) fn use_addrs(&mut self, addrs: Vec<SocketAddr>) {
        let in_use = self
            .socket
            .as_ref()
            .and_then(|_| self.addrs.get(self.current).copied());
        if let Some(a) = in_use {
            if let Some(i) = addrs.iter().position(|x| *x == a) {
                self.addrs = addrs;
                self.current = i;
                return;
            }
        }
        self.addrs = addrs;
        self.current = 0;
        self.connect_current();
        if let Some(a) = self.addrs.get(self.current) {
            crate::log!(
                Level::Debug,
                "statsd_target",
                "target={} addr={}",
                crate::log::quote(&self.cfg.target),
                a
            );
        }
    }

    /// Opens a non-blocking UDP socket connected to the current address.
    fn connect_current(&mut self) {
        self.socket = None;
        let Some(&addr) = self.addrs.get(self.current) else {
            return;
        };
        let bind: SocketAddr = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let opened = UdpSocket::bind(bind).and_then(|s| {
            s.connect(addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        });
        match opened {
            Ok(s) => self.socket = Some(s),
            Err(e) => {
                self.resolve_soon = true;
                if let Some(n) = self.warn.allow(Instant::now()) {
                    crate::log!(
                        Level::Warn,
                        "statsd_socket_failed",
                        "target={} addr={} error={} suppressed={}",
                        crate::log::quote(&self.cfg.target),
                        addr,
                        crate::log::quote(&e.to_string()),
                        n
                    );
                }
            }
        }
    }
}
