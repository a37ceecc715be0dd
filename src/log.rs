//! Structured logging to stderr: one `key=value` line per event.
//!
//! Lines look like `ts=2026-11-22T15:04:05Z level=info event=listening addr=[::]:8080`.
//! The level is a process-wide atomic set once at start; a disabled level costs one
//! relaxed load. Nothing on the request path logs.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// Severity of a log line, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    /// Parses `error`, `warn`, `info` or `debug`.
    pub(crate) fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the most verbose level that is printed.
pub(crate) fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether lines of `level` are printed.
#[inline]
pub(crate) fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one line: timestamp, level, `event=<event>`, then the caller's `key=value` pairs.
pub(crate) fn write(level: Level, event: &str, fields: Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let ts = crate::http::date::rfc3339_now();
    let line = format!("ts={ts} level={} event={event} {fields}\n", level.name());
    // One write call per line so lines from several threads do not interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `log!(Level::Info, "event", "key={} other={}", a, b)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $event:expr) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, $event, format_args!(""))
        }
    };
    ($level:expr, $event:expr, $($arg:tt)+) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, $event, format_args!($($arg)+))
        }
    };
}

/// Quotes a value for a `key=value` line when it contains spaces, quotes or `=`.
pub(crate) fn quote(value: &str) -> String {
    if !value.is_empty()
        && !value
            .bytes()
            .any(|b| b <= b' ' || b == b'"' || b == b'=' || b == 0x7f)
    {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
