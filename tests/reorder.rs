//! `--delay` over a link that reorders: the head's second segment arrives first and
//! waits out of order; the first comes later and completes the head. The kernel
//! merges the two with the stamp of the one that came first, so a delay counted
//! from that stamp would end early. The answer must still wait the whole delay
//! from the head's completion.
//!
//! The client is a hand-made TCP peer on a TUN device in a network namespace of its
//! own (only this test's thread and the server it starts live there). It needs root
//! (CAP_NET_ADMIN, CAP_SYS_ADMIN), `/dev/net/tun` and `ip`; without them the test
//! says SKIPPED on stderr and checks nothing, unless `VRYPT_TEST_NEED_NETNS` is set
//! (`.ci/run` sets it when it runs as root): then it fails.

mod common;

use common::Server;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER: [u8; 4] = [10, 9, 0, 1];
const PEER: [u8; 4] = [10, 9, 0, 2];
const PEER_PORT: u16 = 40_000;
const SERVER_PORT: u16 = 8080;

fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        match odd.take() {
            None => odd = Some(b),
            Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One IPv4 packet carrying a TCP segment from the peer to the server.
fn segment(seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + data.len());
    tcp.extend_from_slice(&PEER_PORT.to_be_bytes());
    tcp.extend_from_slice(&SERVER_PORT.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags]);
    tcp.extend_from_slice(&65_535u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    tcp.extend_from_slice(data);
    let len = u16::try_from(tcp.len()).unwrap();
    let pseudo = [&PEER[..], &SERVER[..], &[0, 6], &len.to_be_bytes()].concat();
    let sum = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + len).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&PEER);
    ip.extend_from_slice(&SERVER);
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

struct Tun(OwnedFd);

impl Tun {
    /// A TUN device `tun0` in this thread's (new) network namespace, configured with
    /// the server's address; `None` when this machine does not allow it.
    fn open() -> Option<Tun> {
        // SAFETY: unshare takes a flag and changes only this thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        // SAFETY: a NUL-terminated path and flags; returns a new descriptor or -1.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // struct ifreq: a 16-byte name, then the flags (IFF_TUN | IFF_NO_PI).
        let mut ifr = [0u8; 40];
        ifr[..4].copy_from_slice(b"tun0");
        let flags: libc::c_short = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifr` is large
        // enough for.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
            return None;
        }
        for cmd in [
            "link set lo up",
            "addr add 10.9.0.1/24 dev tun0",
            "link set tun0 up",
        ] {
            let ok = Command::new("ip")
                .args(cmd.split(' '))
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None;
            }
        }
        Some(Tun(fd))
    }

    fn send(&self, packet: &[u8]) {
        // SAFETY: `packet` is valid for its length; the descriptor is ours.
        let n = unsafe { libc::write(self.0.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        assert_eq!(n, packet.len() as isize, "write to tun0");
    }

    /// The next TCP segment from the server to the peer: (seq, flags, payload).
    fn receive(&self, limit: Duration) -> Option<(u32, u8, Vec<u8>)> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65_536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&raw mut pfd, 1, ms.max(1)) } <= 0 {
                continue;
            }
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n) = usize::try_from(n) else { continue };
            let p = &buf[..n];
            if n < 40 || p[0] >> 4 != 4 || p[9] != 6 {
                continue; // not IPv4 TCP (the kernel also sends IPv6 chatter)
            }
            let ihl = usize::from(p[0] & 15) * 4;
            let t = &p[ihl..];
            if u16::from_be_bytes([t[2], t[3]]) != PEER_PORT {
                continue;
            }
            let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            let off = usize::from(t[12] >> 4) * 4;
            return Some((seq, t[13], t[off..].to_vec()));
        }
        None
    }
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// What the peer saw: how long after the head was complete the answer came.
fn answer_after_reordered_head(delay: &str, gap: Duration) -> Option<(Duration, Vec<u8>)> {
    let tun = Tun::open()?;
    // Started from this thread: the server lives in the same namespace.
    let _server = Server::start_with(common::command().args([
        "--listen",
        "10.9.0.1:8080",
        "--workers",
        "1",
        "--statsd",
        "off",
        "--delay",
        delay,
    ]));
    let isn: u32 = 1000;
    tun.send(&segment(isn, 0, SYN, b""));
    let (server_isn, flags, _) = tun.receive(Duration::from_secs(5)).expect("SYN-ACK");
    assert_eq!(flags & 0x12, 0x12, "SYN-ACK flags {flags:#x}");
    let ack = server_isn.wrapping_add(1);
    tun.send(&segment(isn + 1, ack, ACK, b""));
    let (first, second) = (&b"GET /x HTTP/1.1\r\n"[..], &b"Host: t\r\n\r\n"[..]);
    std::thread::sleep(Duration::from_millis(100));
    // The second half first: held out of order.
    tun.send(&segment(isn + 1 + first.len() as u32, ack, PSH_ACK, second));
    std::thread::sleep(gap);
    let complete = Instant::now();
    tun.send(&segment(isn + 1, ack, PSH_ACK, first));
    let give_up = complete + Duration::from_secs(5);
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        let (_, _, data) = tun.receive(left).expect("an answer within 5 s");
        if !data.is_empty() {
            return Some((complete.elapsed(), data));
        }
    }
}

#[test]
fn a_head_completed_by_a_late_segment_waits_the_whole_delay_from_its_completion() {
    let run =
        std::thread::spawn(|| answer_after_reordered_head("400ms", Duration::from_millis(300)));
    let Some((after, data)) = run.join().unwrap() else {
        // CI sets this where the test must run, so that a lost capability fails.
        assert!(
            std::env::var_os("VRYPT_TEST_NEED_NETNS").is_none(),
            "VRYPT_TEST_NEED_NETNS is set, but no network namespace with a TUN device \
             could be made"
        );
        eprintln!(
            "SKIPPED a_head_completed_by_a_late_segment_waits_the_whole_delay_from_its_completion: \
             no network namespace with a TUN device here (needs root, /dev/net/tun and ip); \
             nothing was checked"
        );
        return;
    };
    assert!(
        data.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    // Counted from the stamp of the segment that came first, it would be 100 ms.
    assert!(
        after >= Duration::from_millis(395) && after < Duration::from_millis(600),
        "answered {after:?} after the head was complete"
    );
}
