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
//! packet the read consumed, which is when the bytes read (and the head they
//! complete) had all arrived.
//!
//! The stamps are `CLOCK_REALTIME`; [`Clock::arrival_us`] maps one onto the worker's
//! monotonic clock by the two clocks' offset at the time of the read, and keeps the
//! result within [`MAX_LAG_US`] before the read and never after it, so a step of the
//! wall clock costs at most the old behaviour (the delay counts from the read).

use std::io;
use std::os::fd::AsRawFd;

/// An arrival stamp more than this before the read is not believed: the wall clock
/// stepped. The delay then counts from the read.
pub(crate) const MAX_LAG_US: u64 = 1_000_000;

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

/// The worker's clock (`now_us`, monotonic) and the wall clock read together.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    pub(crate) now_us: u64,
    pub(crate) real_ns: u64,
}

impl Clock {
    /// The worker-clock time (µs) of an arrival stamped `stamp_ns`: no later than
    /// now, no earlier than [`MAX_LAG_US`] before it, and now itself when the wall
    /// clock was not read.
    pub(crate) fn arrival_us(self, stamp_ns: u64) -> u64 {
        if self.real_ns == 0 {
            return self.now_us;
        }
        let ago_us = self.real_ns.saturating_sub(stamp_ns) / 1000;
        if ago_us > MAX_LAG_US {
            return self.now_us;
        }
        self.now_us.saturating_sub(ago_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arrival_maps_to_the_worker_clock_and_never_after_now() {
        let c = Clock {
            now_us: 5_000_000,
            real_ns: 1_700_000_000_000_000_000,
        };
        assert_eq!(c.arrival_us(c.real_ns - 2_500_000), 4_997_500);
        // A stamp "in the future" (the wall clock stepped back): now.
        assert_eq!(c.arrival_us(c.real_ns + 1_000_000), 5_000_000);
        // Too old to be believed (the wall clock stepped forward): now.
        assert_eq!(c.arrival_us(c.real_ns - 2_000_000_000), 5_000_000);
        let unread = Clock {
            now_us: 7,
            real_ns: 0,
        };
        assert_eq!(unread.arrival_us(123), 7);
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
