//! Timestamps read from JSON, as the rows of related tables arrive inside
//! one statement (`2026-11-26T23:48:00.224709+00:00` from Postgres, the
//! stored text from SQLite). A status lookup reads a dozen of them, and
//! chrono's general RFC 3339 parser was the largest single cost of decoding
//! its rows; so the UTC forms both backends write are read here directly,
//! and anything else (another offset, another layout) goes to chrono.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, de::Error};

/// A timestamp (see the module's docs), for `#[serde(deserialize_with)]`.
pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = Cow::<'de, str>::deserialize(deserializer)?;
    parse(&text).map_err(D::Error::custom)
}

/// A timestamp or null, for `#[serde(deserialize_with)]`.
pub fn optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<Cow<'de, str>>::deserialize(deserializer)? {
        Some(text) => parse(&text).map(Some).map_err(D::Error::custom),
        None => Ok(None),
    }
}

fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match utc(text) {
        Some(at) => Ok(at),
        None => text.parse(),
    }
}

/// `YYYY-MM-DD(T| )HH:MM:SS[.fraction][ ](Z|+00:00|+00)`, or `None`.
fn utc(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = bytes.get(range)?;
        digits
            .iter()
            .try_fold(0_u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| bytes.get(at) != Some(&c))
        || !matches!(bytes.get(10), Some(b'T' | b' '))
    {
        return None;
    }
    let date =
        NaiveDate::from_ymd_opt(i32::try_from(number(0..4)?).ok()?, number(5..7)?, number(8..10)?)?;
    let mut at = 19;
    let mut nanos = 0;
    if bytes.get(at) == Some(&b'.') {
        let digits = bytes[at + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = number(at + 1..at + 1 + digits)? * 10_u32.pow(9 - u32::try_from(digits).ok()?);
        at += 1 + digits;
    }
    let offset = text.get(at..)?.trim_start_matches(' ');
    if !matches!(offset, "Z" | "+00:00" | "+00") {
        return None;
    }
    let time = date.and_hms_nano_opt(number(11..13)?, number(14..16)?, number(17..19)?, nanos)?;
    Some(time.and_utc())
}

/// The length of a timestamp as [`write_micros`] writes it.
pub const MICROS_LEN: usize = "2026-11-26T23:48:00.224709Z".len();

/// Writes `at` as RFC 3339 in UTC with microseconds and `Z`
/// (`2026-11-26T23:48:00.224709Z`), exactly as chrono's
/// `to_rfc3339_opts(SecondsFormat::Micros, true)` writes it, into `out`;
/// `None` for what that layout cannot hold (a year outside 0..=9999, a
/// leap second), which chrono writes in a longer form. A response writes a
/// dozen timestamps, and chrono's formatter was the largest cost of writing
/// them.
pub fn write_micros<'a>(at: &DateTime<Utc>, out: &'a mut [u8; MICROS_LEN]) -> Option<&'a str> {
    use chrono::{Datelike, Timelike};
    // In UTC already: the naive parts need no offset applied per accessor.
    let utc = at.naive_utc();
    let (date, time) = (utc.date(), utc.time());
    let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999)?;
    let nanos = time.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut put = |from: usize, width: usize, mut n: u32| {
        for at in (from..from + width).rev() {
            out[at] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, date.month());
    put(8, 2, date.day());
    put(11, 2, time.hour());
    put(14, 2, time.minute());
    put(17, 2, time.second());
    put(20, 6, nanos / 1_000);
    for (at, c) in
        [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (26, b'Z')]
    {
        out[at] = c;
    }
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        use chrono::{Datelike, SecondsFormat, TimeZone};
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut buffer = [0; MICROS_LEN];
        let mut written = 0;
        for _ in 0..20_000 {
            let seconds = (next() % 400_000_000_000) as i64 - 100_000_000_000;
            let nanos = match next() % 4 {
                0 => 0,
                1 => (next() % 1_000) as u32 * 1_000,
                _ => (next() % 1_000_000_000) as u32,
            };
            let at = Utc.timestamp_opt(seconds, nanos).unwrap();
            let chrono = at.to_rfc3339_opts(SecondsFormat::Micros, true);
            match write_micros(&at, &mut buffer) {
                Some(ours) => {
                    assert_eq!(ours, chrono);
                    written += 1;
                }
                None => assert!(at.year() < 0 || at.year() > 9999, "{chrono}"),
            }
        }
        assert!(written > 1_000, "most fit the layout");
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|day| day.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .map(|at| at.and_utc())
            .unwrap();
        assert_eq!(write_micros(&leap, &mut buffer), None, "a leap second is chrono's to write");
    }

    #[test]
    fn the_utc_forms_read_as_chrono_reads_them() {
        let texts = [
            "2026-11-26T23:48:00.224709+00:00",
            "2026-11-26T23:48:00.224709Z",
            "2026-11-26T23:48:00Z",
            "2026-11-26T23:48:00.5+00:00",
            "2026-11-26T23:48:00.123456789Z",
            "2026-11-26 23:48:00.224709 +00:00",
            "2026-11-26 23:48:00.224709+00",
            "2024-02-29T00:00:00Z",
        ];
        for text in texts {
            let fast = utc(text);
            assert!(fast.is_some(), "not read directly: {text}");
            let reference = text
                .replace(' ', "T")
                .replacen("T+", "+", 1)
                .replace("+00:00", "Z")
                .replace("+00", "Z");
            let reference = DateTime::parse_from_rfc3339(&reference).map(|at| at.to_utc());
            assert_eq!(fast, reference.ok(), "{text}");
        }
    }

    #[test]
    fn anything_else_is_left_to_chrono() {
        for text in [
            "2026-11-27T00:48:00.224709+01:00",
            "2026-02-30T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T23:48:00.Z",
            "2026-11-26T23:48:00.1234567890Z",
            "2026-11-26T23:48:00",
            "2026-11-26",
            "",
            "２０２６-11-26T23:48:00Z",
        ] {
            assert!(utc(text).is_none(), "read directly: {text}");
        }
        let shifted = parse("2026-11-27T00:48:00.224709+01:00").ok();
        assert_eq!(shifted, utc("2026-11-26T23:48:00.224709Z"), "another offset, through chrono");
        assert!(parse("2026-02-30T00:00:00Z").is_err());
    }
}
