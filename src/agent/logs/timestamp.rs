//! RFC3339 timestamps as the CRI log format writes them: UTC with nine
//! fractional digits, `2026-11-27T10:00:00.123456789Z` (always 30 bytes).
//!
//! Formatting is on the writer's hot path, so [`TimestampCache`] keeps the
//! `YYYY-MM-DDTHH:MM:SS.` prefix of the current second and only writes the
//! nine nanosecond digits per call. Parsing accepts what other writers put
//! there too (Go's RFC3339Nano trims trailing zeros and may carry an offset).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The length of a formatted timestamp.
pub(crate) const TIMESTAMP_LEN: usize = 30;

/// The last second representable with a four-digit year
/// (9999-12-31T23:59:59Z): later clocks are clamped rather than printed wrong.
const MAX_SECS: u64 = 253_402_300_799;

/// Formats timestamps, remembering the date and time of the last second seen.
#[derive(Debug, Default)]
pub(crate) struct TimestampCache {
    /// The second `prefix` was formatted for; `None` before the first call.
    secs: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.` for `secs`.
    prefix: [u8; 20],
}

impl TimestampCache {
    /// Formats `time`. A clock before 1970 is written as the epoch and one
    /// after year 9999 as its last second: the format has no way to say either,
    /// and a log line must still be written.
    pub(crate) fn format(&mut self, time: SystemTime) -> [u8; TIMESTAMP_LEN] {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (secs, nanos) = if since_epoch.as_secs() > MAX_SECS {
            (MAX_SECS, 999_999_999)
        } else {
            (since_epoch.as_secs(), since_epoch.subsec_nanos())
        };
        if self.secs != Some(secs) {
            self.prefix = format_prefix(secs);
            self.secs = Some(secs);
        }
        let mut out = [0u8; TIMESTAMP_LEN];
        out[..20].copy_from_slice(&self.prefix);
        let mut rest = nanos;
        for slot in out[20..29].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out[29] = b'Z';
        out
    }
}

/// Formats `time` without a cache, for the odd timestamp off the hot path.
pub(crate) fn format_rfc3339_nanos(time: SystemTime) -> [u8; TIMESTAMP_LEN] {
    TimestampCache::default().format(time)
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` after the epoch (at most [`MAX_SECS`]).
fn format_prefix(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.";
    put_digits(&mut out[0..4], year as u64);
    put_digits(&mut out[5..7], u64::from(month));
    put_digits(&mut out[8..10], u64::from(day));
    put_digits(&mut out[11..13], of_day / 3600);
    put_digits(&mut out[14..16], of_day / 60 % 60);
    put_digits(&mut out[17..19], of_day % 60);
    out
}

/// Writes `value` as zero-padded decimal filling `slot`.
fn put_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// (year, month, day) of a day counted from 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an RFC3339 timestamp: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`.
/// `None` for anything else, including impossible dates.
pub(crate) fn parse_rfc3339(text: &[u8]) -> Option<SystemTime> {
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        digits.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, sep)| text.get(at) != Some(&sep))
    {
        return None;
    }
    let year = i64::from(number(0..4)?);
    let month = number(5..7)?;
    let day = number(8..10)?;
    let hour = number(11..13)?;
    let minute = number(14..16)?;
    let second = number(17..19)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut at = 19;
    let mut nanos = 0u32;
    if text.get(at) == Some(&b'.') {
        at += 1;
        let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = number(at..at + digits)? * 10u32.pow(9 - digits as u32);
        at += digits;
    }
    let offset_secs: i64 = match &text[at..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), ..] if text.len() == at + 6 && text[at + 3] == b':' => {
            let hours = number(at + 1..at + 3)?;
            let minutes = number(at + 4..at + 6)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };

    let local =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let utc = local - offset_secs;
    let time = if utc >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(utc.unsigned_abs(), nanos))?
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(utc.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))?
    };
    Some(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn formats_utc_with_nine_digits() {
        let mut cache = TimestampCache::default();
        assert_eq!(&cache.format(at(0, 0)), b"1970-01-01T00:00:00.000000000Z");
        // 2026-11-27T10:00:00Z
        assert_eq!(
            &cache.format(at(1_795_773_600, 123_456_789)),
            b"2026-11-27T10:00:00.123456789Z"
        );
        // Same second, different nanoseconds: the cached prefix must be reused correctly.
        assert_eq!(
            &cache.format(at(1_795_773_600, 5)),
            b"2026-11-27T10:00:00.000000005Z"
        );
        assert_eq!(
            &cache.format(at(951_782_400, 0)),
            b"2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn clamps_clocks_the_format_cannot_express() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(
            &format_rfc3339_nanos(before),
            b"1970-01-01T00:00:00.000000000Z"
        );
        let far = UNIX_EPOCH + Duration::from_secs(MAX_SECS * 2);
        assert_eq!(
            &format_rfc3339_nanos(far),
            b"9999-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn parses_what_it_formats_across_many_dates() {
        let mut cache = TimestampCache::default();
        // Step by a prime number of seconds so every month, leap day and
        // century rule is crossed.
        let mut secs = 0u64;
        while secs < 5_000_000_000 {
            let time = at(secs, (secs % 1_000_000_000) as u32);
            assert_eq!(parse_rfc3339(&cache.format(time)), Some(time), "{secs}");
            secs += 7_919_993;
        }
    }

    #[test]
    fn parses_trimmed_fractions_and_offsets() {
        let base = at(1_795_773_600, 0);
        assert_eq!(parse_rfc3339(b"2026-11-27T10:00:00Z"), Some(base));
        assert_eq!(
            parse_rfc3339(b"2026-11-27T10:00:00.5Z"),
            Some(base + Duration::from_millis(500))
        );
        assert_eq!(parse_rfc3339(b"2026-11-27T11:30:00+01:30"), Some(base));
        assert_eq!(parse_rfc3339(b"2026-11-27T09:00:00-01:00"), Some(base));
        assert_eq!(
            parse_rfc3339(b"1969-12-31T23:59:59.5Z"),
            Some(UNIX_EPOCH - Duration::from_millis(500))
        );
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            &b""[..],
            b"2026-11-27",
            b"2026-11-27T10:00:00",
            b"2026-11-27T10:00:00.Z",
            b"2026-11-27T10:00:00.1234567890Z",
            b"2026-02-30T10:00:00Z",
            b"2025-02-29T10:00:00Z",
            b"2026-13-01T10:00:00Z",
            b"2026-11-27T24:00:00Z",
            b"2026-11-27T10:60:00Z",
            b"2026-11-27T10:00:00+1:00",
            b"2026-11-27T10:00:00Zjunk",
            b"2026-11-27 10:00:00Z",
            b"+026-11-27T10:00:00Z",
            "2026-11-27T10:00:0\u{e9}Z".as_bytes(),
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
