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

#[cfg(test)]
mod tests {
    use super::*;

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
