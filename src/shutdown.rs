//! SIGTERM/SIGINT handling without an async runtime.
//!
//! The signals are blocked in every thread (the mask is inherited from the main
//! thread, which blocks them before spawning anything) and arrive through one
//! `signalfd`. The workers have it in their epoll sets; a dedicated thread waits
//! for it, starts the graceful shutdown (sets the flag, wakes the workers) and only
//! then takes the signal off the queue. From the moment a signal arrives, a worker
//! therefore sees either the signal pending or its effect (`ready` cleared, and
//! without a shutdown delay `shutdown` set): never neither. The
//! first signal starts the graceful shutdown; a second one ends the process at once.
//!
//! With `--shutdown-delay`, the shutdown has two phases: first the server keeps
//! serving and only reports not ready (so that load balancers take it out of
//! rotation), and once the delay has passed it stops accepting and drains.

use crate::log::Level;
use std::io;

fn shutdown_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own; the zeroed
    // value is only a placeholder that sigemptyset overwrites.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it spawns later.
pub(crate) fn block_signals() -> io::Result<()> {
    let set = shutdown_set();
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// A non-blocking `signalfd` that is readable while SIGTERM or SIGINT is pending.
///
/// Workers register it (edge-triggered) in their epoll sets but never read it: the
/// signal thread takes the signal with `sigwait`. It lets a worker learn of a
/// signal in the same `epoll_wait` that reports new connections, so connections
/// that arrived together with SIGTERM (for example while the process was stopped)
/// are already answered as part of the drain.
pub(crate) fn signal_fd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let set = shutdown_set();
    // SAFETY: `set` is a valid, initialised signal set; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor signalfd just created, owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// SIGTERM or SIGINT if one is pending for the process, else 0.
fn pending_shutdown_signal() -> libc::c_int {
    // SAFETY: a zeroed sigset_t is a valid argument for sigpending, which overwrites it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    if unsafe { libc::sigpending(&mut set) } != 0 {
        return 0;
    }
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: `set` was initialised by sigpending.
        if unsafe { libc::sigismember(&set, sig) } == 1 {
            return sig;
        }
    }
    0
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// What the signal thread asks of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The shutdown delay starts: keep serving, but report not ready.
    Delay,
    /// Stop accepting and drain (report not ready, if not done yet).
    Drain,
}

fn poll_readable(fd: std::os::fd::RawFd, timeout_ms: libc::c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for a descriptor the caller keeps open.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) == 1 }
}

/// Takes one pending signal off the signalfd's queue.
fn consume(fd: std::os::fd::RawFd) {
    // SAFETY: an all-zero signalfd_siginfo is a valid value; read() fills it.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is writable for its size; `fd` is an open signalfd.
    unsafe {
        libc::read(
            fd,
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            std::mem::size_of::<libc::signalfd_siginfo>(),
        );
    }
}

/// Waits for a signal on `fd`, at most until `until` (forever when `None`); returns
/// whether one is pending (not yet taken off the queue).
fn wait_signal(fd: std::os::fd::RawFd, until: Option<std::time::Instant>) -> bool {
    loop {
        let timeout = match until {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return false;
                }
                libc::c_int::try_from(left.as_millis() + 1).unwrap_or(libc::c_int::MAX)
            }
        };
        if poll_readable(fd, timeout) {
            return true;
        }
    }
}

fn forced_exit(sig: libc::c_int) -> ! {
    crate::log!(
        Level::Warn,
        "shutdown_forced",
        "signal={}",
        signal_name(sig)
    );
    std::process::exit(1);
}

/// Starts the thread that waits for SIGTERM/SIGINT on `fd` (from [`signal_fd`]).
/// On the first signal, before taking it off the queue, it calls `on_phase`: with
/// [`Phase::Drain`] at once when `delay` is zero; else with [`Phase::Delay`], and
/// with [`Phase::Drain`] once `delay` has passed. A second signal at any time exits
/// the process immediately with status 1.
pub(crate) fn spawn_signal_thread<F>(
    fd: std::os::fd::OwnedFd,
    delay: std::time::Duration,
    mut on_phase: F,
) -> io::Result<std::thread::JoinHandle<()>>
where
    F: FnMut(Phase) + Send + 'static,
{
    use std::os::fd::AsRawFd;
    std::thread::Builder::new()
        .name("vrypt-signals".into())
        .spawn(move || {
            let fd = fd.as_raw_fd();
            wait_signal(fd, None);
            // Which signal is pending, without taking it off the queue yet.
            let sig = pending_shutdown_signal();
            crate::log!(
                Level::Info,
                "shutdown_started",
                "signal={}",
                signal_name(sig)
            );
            if delay.is_zero() {
                on_phase(Phase::Drain);
                consume(fd);
            } else {
                on_phase(Phase::Delay);
                consume(fd);
                crate::log!(
                    Level::Info,
                    "shutdown_delay",
                    "delay_ms={}",
                    delay.as_millis()
                );
                if wait_signal(fd, Some(std::time::Instant::now() + delay)) {
                    forced_exit(pending_shutdown_signal());
                }
                on_phase(Phase::Drain);
            }
            loop {
                if wait_signal(fd, None) {
                    forced_exit(pending_shutdown_signal());
                }
            }
        })
}
