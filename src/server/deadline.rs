//! Which deadline a connection runs under, derived from its state and its progress.
//!
//! One pure function, [`next_timer`], decides after every step of a connection
//! which timer it should have and whether that timer keeps running or restarts.
//! The rules make each deadline bound what it promises, so that a client cannot
//! push one back by doing something else:
//!
//! - **write**: while output is owed; restarts only when bytes were written
//!   (reading the client's input does not count);
//! - **header**: while a request head (or a chunked trailer section) is
//!   incomplete; runs from the first byte of that head and restarts only when a
//!   request boundary passes (a head or a body completes);
//! - **body**: while request content is skipped; runs from the end of the head;
//! - **idle**: between requests, with nothing owed; restarts when a request is
//!   answered or bytes are written, not when empty lines are read;
//! - **linger**: after the final response, until the client closes; never restarts.

use super::timer::TimerKind;

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// The next request (nothing held, nothing owed).
    Request,
    /// The rest of a request head.
    PartialHead,
    /// More request content.
    Body,
    /// The rest of a chunked trailer section.
    Trailer,
    /// The client to read what the server owes it.
    Output,
    /// The client to close after the final response.
    Linger,
    /// Nothing (an injected stall): the idle deadline closes the connection.
    Stall,
    /// The delay of the next response (`--delay`): no deadline; the worker wakes
    /// the connection when the delay is over.
    Delay,
}

impl Waiting {
    /// The timer that bounds this wait.
    pub(crate) fn timer(self) -> TimerKind {
        match self {
            Waiting::Request => TimerKind::Idle,
            Waiting::PartialHead | Waiting::Trailer => TimerKind::Header,
            Waiting::Body => TimerKind::Body,
            Waiting::Output => TimerKind::Write,
            Waiting::Linger => TimerKind::Linger,
            Waiting::Stall | Waiting::Delay => TimerKind::Idle,
        }
    }
}

/// What happened in one step of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Progress {
    /// Bytes were read.
    pub(crate) read: bool,
    /// Bytes were written.
    pub(crate) wrote: bool,
    /// Request heads and bodies completed.
    pub(crate) boundaries: u32,
}

/// What to do with a connection's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerChange {
    /// Leave the running timer as it is.
    Keep,
    /// (Re)start this timer from now.
    Start(TimerKind),
    /// Run no timer.
    Stop,
}

/// The timer a connection should run after a step, given the one it runs now.
pub(crate) fn next_timer(current: Option<TimerKind>, waiting: Waiting, p: Progress) -> TimerChange {
    if waiting == Waiting::Delay {
        return TimerChange::Stop;
    }
    let wanted = waiting.timer();
    if current != Some(wanted) {
        // A brand-new connection has its header deadline from accept: its first
        // request must start before that, or it is closed without an answer.
        // (Empty lines before a request line begin no request: RFC 9112 §2.2.)
        if waiting == Waiting::Request
            && current == Some(TimerKind::Header)
            && p.boundaries == 0
            && !p.wrote
        {
            return TimerChange::Keep;
        }
        return TimerChange::Start(wanted);
    }
    let restart = match waiting {
        Waiting::Output => p.wrote,
        Waiting::PartialHead | Waiting::Trailer | Waiting::Body => p.boundaries > 0,
        // Reads alone are not activity: between requests they can only be empty
        // lines, which a client could send forever.
        Waiting::Request => p.boundaries > 0 || p.wrote,
        // A stall starts its own idle period when the stalled request arrives.
        Waiting::Stall => p.boundaries > 0,
        Waiting::Linger | Waiting::Delay => false,
    };
    if restart {
        TimerChange::Start(wanted)
    } else {
        TimerChange::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Progress = Progress {
        read: false,
        wrote: false,
        boundaries: 0,
    };
    const READ: Progress = Progress { read: true, ..NONE };
    const WROTE: Progress = Progress {
        wrote: true,
        ..NONE
    };
    const HEAD_DONE: Progress = Progress {
        read: true,
        wrote: true,
        boundaries: 1,
    };

    #[test]
    fn write_deadline_moves_only_when_bytes_are_written() {
        let w = Some(TimerKind::Write);
        assert_eq!(next_timer(w, Waiting::Output, READ), TimerChange::Keep);
        assert_eq!(next_timer(w, Waiting::Output, NONE), TimerChange::Keep);
        assert_eq!(
            next_timer(w, Waiting::Output, WROTE),
            TimerChange::Start(TimerKind::Write)
        );
        assert_eq!(
            next_timer(Some(TimerKind::Idle), Waiting::Output, READ),
            TimerChange::Start(TimerKind::Write)
        );
    }

    #[test]
    fn header_deadline_runs_from_the_heads_first_byte_and_restarts_per_head() {
        let h = Some(TimerKind::Header);
        // More bytes of the same head: the deadline keeps running.
        assert_eq!(next_timer(h, Waiting::PartialHead, READ), TimerChange::Keep);
        // A head completed and the next one began in the same read: fresh deadline.
        assert_eq!(
            next_timer(h, Waiting::PartialHead, HEAD_DONE),
            TimerChange::Start(TimerKind::Header)
        );
        assert_eq!(
            next_timer(Some(TimerKind::Idle), Waiting::PartialHead, READ),
            TimerChange::Start(TimerKind::Header)
        );
        // Trailers count under the header deadline, from their start.
        assert_eq!(
            next_timer(Some(TimerKind::Body), Waiting::Trailer, READ),
            TimerChange::Start(TimerKind::Header)
        );
        assert_eq!(next_timer(h, Waiting::Trailer, READ), TimerChange::Keep);
    }

    #[test]
    fn body_deadline_is_not_moved_by_trickled_bytes() {
        let b = Some(TimerKind::Body);
        assert_eq!(next_timer(b, Waiting::Body, READ), TimerChange::Keep);
        assert_eq!(
            next_timer(b, Waiting::Body, HEAD_DONE),
            TimerChange::Start(TimerKind::Body)
        );
        assert_eq!(
            next_timer(Some(TimerKind::Header), Waiting::Body, HEAD_DONE),
            TimerChange::Start(TimerKind::Body)
        );
    }

    #[test]
    fn idle_restarts_on_progress_and_new_connections_keep_their_header_deadline() {
        let i = Some(TimerKind::Idle);
        assert_eq!(next_timer(i, Waiting::Request, NONE), TimerChange::Keep);
        // Empty lines read between requests do not push the idle deadline back,
        // nor turn a new connection's header deadline into an idle one.
        assert_eq!(next_timer(i, Waiting::Request, READ), TimerChange::Keep);
        assert_eq!(
            next_timer(Some(TimerKind::Header), Waiting::Request, READ),
            TimerChange::Keep
        );
        assert_eq!(
            next_timer(i, Waiting::Request, HEAD_DONE),
            TimerChange::Start(TimerKind::Idle)
        );
        assert_eq!(
            next_timer(i, Waiting::Request, WROTE),
            TimerChange::Start(TimerKind::Idle)
        );
        assert_eq!(
            next_timer(Some(TimerKind::Header), Waiting::Request, NONE),
            TimerChange::Keep
        );
        assert_eq!(
            next_timer(Some(TimerKind::Write), Waiting::Request, WROTE),
            TimerChange::Start(TimerKind::Idle)
        );
        assert_eq!(
            next_timer(None, Waiting::Request, NONE),
            TimerChange::Start(TimerKind::Idle)
        );
    }

    #[test]
    fn linger_never_restarts() {
        let l = Some(TimerKind::Linger);
        assert_eq!(next_timer(l, Waiting::Linger, HEAD_DONE), TimerChange::Keep);
        assert_eq!(
            next_timer(Some(TimerKind::Write), Waiting::Linger, WROTE),
            TimerChange::Start(TimerKind::Linger)
        );
    }
}
