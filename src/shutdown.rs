//! SIGTERM/SIGINT handling without an async runtime.
//!
//! The signals are blocked in every thread (the mask is inherited from the main
//! thread, which blocks them before spawning anything) and a dedicated thread takes
//! them with `sigwait`. The first signal starts the graceful shutdown; a second one
//! ends the process at once.

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
pub fn block_signals() -> io::Result<()> {
    let set = shutdown_set();
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Starts the thread that waits for SIGTERM/SIGINT. `on_first` runs once, on the
/// first signal; a second signal exits the process immediately with status 1.
pub fn spawn_signal_thread<F>(on_first: F) -> io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name("vrypt-signals".into())
        .spawn(move || {
            let set = shutdown_set();
            let mut on_first = Some(on_first);
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is a valid signal set blocked in this thread; `sig` is writable.
                let rc = unsafe { libc::sigwait(&set, &mut sig) };
                if rc != 0 {
                    continue;
                }
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
            }
        })
}
