//! Dates for the `Date` header (RFC 9110 §5.6.7, IMF-fixdate) and for log lines.
//!
//! Formatting is done at most once per second per worker: the worker keeps the last
//! second it formatted and patches its response templates only when it changes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const IMF_FIXDATE_LEN: usize = 29;

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Calendar fields of a Unix time (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    /// 0 = Thursday (1970-01-01 was a Thursday).
    pub(crate) weekday_from_thursday: u32,
}

/// Splits seconds since the Unix epoch into calendar fields (proleptic Gregorian, UTC).
pub(crate) fn civil(unix_secs: i64) -> Civil {
    let days = unix_secs.div_euclid(86_400);
    let rem = unix_secs.rem_euclid(86_400) as u32;
    // Days-to-civil conversion on 400-year eras (the algorithm popularised by H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3_600,
        minute: rem / 60 % 60,
        second: rem % 60,
        weekday_from_thursday: days.rem_euclid(7) as u32,
    }
}

fn two(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// Writes `unix_secs` as an IMF-fixdate into `out`.
pub(crate) fn write_imf_fixdate(unix_secs: i64, out: &mut [u8; IMF_FIXDATE_LEN]) {
    let c = civil(unix_secs);
    let year = c.year.clamp(0, 9999) as u32;
    out[0..3].copy_from_slice(DAYS[c.weekday_from_thursday as usize]);
    out[3..5].copy_from_slice(b", ");
    two(&mut out[5..7], c.day);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(c.month - 1) as usize]);
    out[11] = b' ';
    two(&mut out[12..14], year / 100);
    two(&mut out[14..16], year % 100);
    out[16] = b' ';
    two(&mut out[17..19], c.hour);
    out[19] = b':';
    two(&mut out[20..22], c.minute);
    out[22] = b':';
    two(&mut out[23..25], c.second);
    out[25..29].copy_from_slice(b" GMT");
}

/// Seconds since the Unix epoch from the coarse real-time clock (a vDSO read, no syscall).
pub(crate) fn unix_now_coarse() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_REALTIME_COARSE is a valid clock id.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc == 0 {
        // time_t is 32 bits on some 32-bit targets we ship.
        #[allow(clippy::useless_conversion)]
        i64::from(ts.tv_sec)
    } else {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// The current time as `2026-11-22T15:04:05.123Z`, for log lines.
pub(crate) fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let c = civil(now.as_secs() as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: i64) -> String {
        let mut out = [0u8; IMF_FIXDATE_LEN];
        write_imf_fixdate(secs, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn rfc_example() {
        // RFC 9110 §5.6.7: "Sun, 06 Nov 1994 08:49:37 GMT" is 784111777.
        assert_eq!(fmt(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn epoch_and_leap_days() {
        assert_eq!(fmt(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(fmt(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(fmt(1_709_210_096), "Thu, 29 Feb 2024 12:34:56 GMT");
        assert_eq!(fmt(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }
}
