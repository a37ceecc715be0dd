//! SIGTERM/SIGINT handling without an async runtime.
//!
//! The signals are blocked in every thread (the mask is inherited from the main
//! thread, which blocks them before spawning anything) and arrive through one
//! `signalfd`. The workers have it in their epoll sets; a dedicated thread waits
//! for it, starts the graceful shutdown (sets the flag, wakes the workers) and only
//! then takes the signal off the queue. From the moment a signal arrives, a worker
//! therefore sees either the signal pending or the flag set: never neither. The
//! first signal starts the graceful shutdown; a second one ends the process at once.

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

/// Starts the thread that waits for SIGTERM/SIGINT on `fd` (from [`signal_fd`]).
/// `on_first` runs once, on the first signal, before that signal is taken off the
/// queue; a second signal exits the process immediately with status 1.
pub(crate) fn spawn_signal_thread<F>(
    fd: std::os::fd::OwnedFd,
    on_first: F,
) -> io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    use std::os::fd::AsRawFd;
    std::thread::Builder::new()
        .name("vrypt-signals".into())
        .spawn(move || {
            let mut on_first = Some(on_first);
            loop {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: `pfd` is one valid pollfd for a descriptor `fd` keeps open.
                if unsafe { libc::poll(&mut pfd, 1, -1) } != 1 {
                    continue;
                }
                // Which signal is pending, without taking it off the queue yet.
                let sig = pending_shutdown_signal();
                match on_first.take() {
                    Some(f) => {
                        crate::log!(
                            Level::Info,
                            "shutdown_started",
                            "signal={}",
                            signal_name(sig)
                        );
                        f();
                    }
                    None => {
                        crate::log!(
                            Level::Warn,
                            "shutdown_forced",
                            "signal={}",
                            signal_name(sig)
                        );
                        std::process::exit(1);
                    }
                }
                // SAFETY: an all-zero signalfd_siginfo is a valid value; read() fills it.
                let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                // SAFETY: `info` is writable for its size; `fd` is an open signalfd.
                unsafe {
                    libc::read(
                        fd.as_raw_fd(),
                        (&mut info as *mut libc::signalfd_siginfo).cast(),
                        std::mem::size_of::<libc::signalfd_siginfo>(),
                    );
                }
            }
        })
}
