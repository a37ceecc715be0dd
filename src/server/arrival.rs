//! When input arrived: the kernel's receive timestamps (`SO_TIMESTAMPNS`), so that a
//! `--delay` counts from when a request's head reached the host, not from when the
//! worker got round to reading it.
//!
//! Under load a worker reads a socket some time after its bytes arrived: it is
//! writing a burst of answers that came due together, or handling the rest of a
//! batch of events. Counting the delay from the read adds that lag to every answer,
//! and with a fixed delay the lag repeats every cycle, so closed-loop clients fall
//! short of the throughput Little's law promises. The kernel stamps every packet on
//! arrival when a socket asks for it; `recvmsg` hands back the stamp of the last
//! packet the read consumed.
//!
//! An answer must never be early, so a stamp is believed only when it cannot be
//! earlier than the head's completion:
//! - Segments received out of order are merged with the stamp of the segment that
//!   came first, which can be long before the gap was filled and the head complete.
//!   A connection that has received any segment out of order (`tcpi_rcv_ooopack`)
//!   counts from the read, as does a kernel that does not report that count.
//! - The stamps are `CLOCK_REALTIME`; [`Clock::arrival_us`] maps one onto the
//!   worker's monotonic clock by the two clocks' offset, read wall clock first (an
//!   error then makes answers later, not earlier). [`Wall`] notices a step of the
//!   wall clock (the offset moving faster than any slew) and from then on believes
//!   only stamps taken after it. A stamp more than [`MAX_LAG_US`] old is not
//!   believed either.
//! - Below [`MIN_LAG_US`] the read time is used: the stamp would change the answer
//!   by less than the delay timer's resolution, and the check above costs a system
//!   call.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// An arrival stamp more than this before the read is not believed: the wall clock
/// stepped. The delay then counts from the read.
pub(crate) const MAX_LAG_US: u64 = 1_000_000;

/// A stamp less than this before the read is not worth checking: the read's time is
/// used (later by at most this, never earlier).
pub(crate) const MIN_LAG_US: u64 = 100;

/// How far the offset between the wall clock and the monotonic clock may move
/// without being a step. NTP's slewing moves both clocks together; only a step
/// (settimeofday, a leap second) changes the offset, and reading the two clocks one
/// after the other adds a little jitter.
const STEP_MARGIN_NS: i128 = 50_000;

/// Asks the kernel to stamp what arrives on `sock` (and on the connections a
/// listening socket accepts: they inherit the option).
pub(crate) fn enable(sock: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is a socket owned by the caller; the option value is a
    // valid c_int that the call only reads, with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("SO_TIMESTAMPNS: {e}")));
    }
    Ok(())
}

/// Room for one `SCM_TIMESTAMPNS` message (a header and a timespec of up to 16
/// bytes), aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// Reads into `buf` like `read(2)`; returns the byte count and, when the kernel
/// sent one, the arrival stamp (`CLOCK_REALTIME`, ns) of the last packet consumed.
pub(crate) fn recv_stamped(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, Option<u64>)> {
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: `msg` points at one iovec covering `buf`, writable for its length,
    // and at `control`, writable for `msg_controllen` bytes; both outlive the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize; // not negative, checked above
    let mut stamp = None;
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of
    // well-formed control messages; CMSG_FIRSTHDR/CMSG_NXTHDR stay within them.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points at a header inside `control`.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SO_TIMESTAMPNS {
            // SAFETY: the data of this message lies inside `control`, after the header,
            // for `cmsg_len - CMSG_LEN(0)` bytes.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            // SAFETY: CMSG_LEN only computes a length.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let len = (hdr.cmsg_len as usize).saturating_sub(header);
            // SAFETY: `data` is valid for `len` bytes (see above), within `control`.
            let bytes = unsafe { std::slice::from_raw_parts(data, len.min(16)) };
            stamp = timespec_ns(bytes);
        }
        // SAFETY: as for CMSG_FIRSTHDR; returns null after the last message.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
    }
    Ok((n, stamp))
}

/// A timespec as the kernel wrote it: two 64-bit fields, or on 32-bit targets
/// with the old layout two 32-bit ones.
fn timespec_ns(bytes: &[u8]) -> Option<u64> {
    let (secs, nanos) = match bytes.len() {
        16 => (
            i64::from_ne_bytes(bytes[..8].try_into().ok()?),
            i64::from_ne_bytes(bytes[8..16].try_into().ok()?),
        ),
        8 => (
            i64::from(i32::from_ne_bytes(bytes[..4].try_into().ok()?)),
            i64::from(i32::from_ne_bytes(bytes[4..8].try_into().ok()?)),
        ),
        _ => return None,
    };
    let secs = u64::try_from(secs).ok()?;
    let nanos = u64::try_from(nanos).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// `CLOCK_REALTIME` now, in nanoseconds.
pub(crate) fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Whether `sock` has ever received a segment out of order, or cannot tell: its
/// stamps may then be earlier than the data they complete.
pub(crate) fn reordered(sock: &impl AsRawFd) -> bool {
    // SAFETY: tcp_info is plain data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes, and the kernel writes at most that
    // many and stores the length it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_rcv_ooopack) + 4;
    rc != 0 || (len as usize) < needed || info.tcpi_rcv_ooopack != 0
}

/// The worker's clock (`now_us`, monotonic) and the wall clock, read together.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    pub(crate) now_us: u64,
    /// `CLOCK_REALTIME` (ns), read just before `now_us`; 0 when not read.
    pub(crate) real_ns: u64,
    /// Stamps before this (wall clock, ns) are not believed: the wall clock stepped then.
    pub(crate) trusted_from_ns: u64,
}

impl Clock {
    /// The worker-clock time (µs) of an arrival stamped `stamp_ns`, or `None` when the
    /// stamp is not believed: the wall clock was not read or stepped since, or the
    /// stamp is more than [`MAX_LAG_US`] away from now.
    pub(crate) fn arrival_us(self, stamp_ns: u64) -> Option<u64> {
        if self.real_ns == 0 || stamp_ns < self.trusted_from_ns {
            return None;
        }
        if stamp_ns >= self.real_ns {
            // Arrived after the clocks were read (during this drive).
            let ahead_us = (stamp_ns - self.real_ns) / 1000;
            return (ahead_us <= MAX_LAG_US).then(|| self.now_us + ahead_us);
        }
        let ago_us = (self.real_ns - stamp_ns) / 1000;
        (ago_us <= MAX_LAG_US).then(|| self.now_us.saturating_sub(ago_us))
    }
}

/// Watches the offset between the wall clock and the worker's clock for steps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wall {
    /// Wall clock minus worker clock (ns) at the last reading.
    offset_ns: i128,
    /// The worker clock (µs) at the last reading; 0 before the first.
    at_us: u64,
    trusted_from_ns: u64,
}

impl Wall {
    /// The clocks `real_ns` (read first) and `now_us` (read just after), as a
    /// [`Clock`] that does not believe stamps from before a step seen now or earlier.
    pub(crate) fn observe(&mut self, real_ns: u64, now_us: u64) -> Clock {
        let offset = i128::from(real_ns) - i128::from(now_us) * 1000;
        if self.at_us == 0 {
            // The first reading (when the worker starts): nothing to compare with.
        } else if (offset - self.offset_ns).abs() > STEP_MARGIN_NS {
            self.trusted_from_ns = real_ns;
        }
        self.offset_ns = offset;
        self.at_us = now_us.max(1);
        Clock {
            now_us,
            real_ns,
            trusted_from_ns: self.trusted_from_ns,
        }
    }
}

/// A worker's view of arrivals: its clock's zero and the step watch.
pub(crate) struct Arrivals {
    epoch: Instant,
    wall: Wall,
}

impl Arrivals {
    /// For a worker whose clock counts from `epoch`; takes the first reading now, so
    /// that a step before the first request is noticed.
    pub(crate) fn new(epoch: Instant) -> Arrivals {
        let mut a = Arrivals {
            epoch,
            wall: Wall::default(),
        };
        a.now();
        a
    }

    /// Both clocks now, the wall clock first (a pause between the two readings then
    /// maps arrivals later, never earlier).
    fn now(&mut self) -> Clock {
        let real_ns = realtime_ns();
        let now_us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.wall.observe(real_ns, now_us)
    }

    /// When the bytes of a read that has just returned had all arrived, on the
    /// worker's clock: the read's `stamp` when it is believed (see the module
    /// documentation; `reordered` asks the socket), else now. Never earlier than
    /// their arrival.
    pub(crate) fn arrived_us(
        &mut self,
        stamp: Option<u64>,
        reordered: impl FnOnce() -> bool,
    ) -> u64 {
        let clock = self.now();
        match stamp.and_then(|ns| clock.arrival_us(ns)) {
            Some(at) if at + MIN_LAG_US <= clock.now_us && !reordered() => at,
            _ => clock.now_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn an_arrival_maps_to_the_worker_clock() {
        let c = Wall::default().observe(REAL, 5_000_000);
        assert_eq!(c.arrival_us(REAL - 2_500_000), Some(4_997_500));
        // Arrived after the clocks were read: that much later.
        assert_eq!(c.arrival_us(REAL + 1_000_000), Some(5_001_000));
        // Too far either way to be believed.
        assert_eq!(c.arrival_us(REAL - 2_000_000_000), None);
        assert_eq!(c.arrival_us(REAL + 2_000_000_000), None);
        let unread = Clock {
            now_us: 7,
            ..Clock::default()
        };
        assert_eq!(unread.arrival_us(123), None);
    }

    #[test]
    fn after_a_wall_clock_step_only_later_stamps_are_believed() {
        let mut w = Wall::default();
        let c = w.observe(REAL, 1_000_000);
        assert_eq!(c.arrival_us(REAL - 1_000), Some(999_999));
        // 10 ms later by the worker's clock, 10.02 ms by the wall clock: jitter.
        let c = w.observe(REAL + 10_020_000, 1_010_000);
        assert_eq!(c.arrival_us(REAL + 10_000_000), Some(1_009_980));
        // The wall clock jumps 300 ms forward: a packet stamped 100 ms before this
        // reading (by the stepped clock) may have arrived just now.
        let c = w.observe(REAL + 320_020_000, 1_020_000);
        assert_eq!(c.arrival_us(REAL + 220_020_000), None);
        // From then on the new offset holds: later stamps are believed again.
        let c = w.observe(REAL + 320_030_000, 1_020_010);
        assert_eq!(c.arrival_us(REAL + 320_025_000), Some(1_020_005));
        assert_eq!(c.arrival_us(REAL + 320_010_000), None);
        // A step back is noticed the same way.
        let c = w.observe(REAL + 20_040_000, 1_020_020);
        assert_eq!(c.arrival_us(REAL + 20_030_000), None);
    }

    #[test]
    fn both_timespec_layouts_are_read() {
        let mut wide = Vec::new();
        wide.extend_from_slice(&3i64.to_ne_bytes());
        wide.extend_from_slice(&5i64.to_ne_bytes());
        assert_eq!(timespec_ns(&wide), Some(3_000_000_005));
        let mut narrow = Vec::new();
        narrow.extend_from_slice(&3i32.to_ne_bytes());
        narrow.extend_from_slice(&5i32.to_ne_bytes());
        assert_eq!(timespec_ns(&narrow), Some(3_000_000_005));
        assert_eq!(timespec_ns(&[0; 12]), None);
        assert_eq!(timespec_ns(&(-1i64).to_ne_bytes().repeat(2)), None);
    }

    #[test]
    fn a_read_on_a_stamped_socket_reports_when_its_bytes_arrived() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        enable(&l).unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let before = realtime_ns();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let after = realtime_ns();
        let mut buf = [0u8; 64];
        let (n, stamp) = recv_stamped(&s, &mut buf).unwrap();
        assert_eq!(n, 18);
        // Inherited from the listener; stamped on arrival, not at the read 50 ms later.
        let stamp = stamp.expect("an arrival stamp");
        assert!(
            stamp >= before.saturating_sub(1_000_000),
            "{stamp} < {before}"
        );
        assert!(
            stamp + 40_000_000 < after,
            "stamped at the read, not the arrival"
        );
    }
}
