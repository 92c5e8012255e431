//! Timestamps read from JSON, as the rows of related tables arrive inside
//! one statement (microseconds since the epoch from Postgres, the stored
//! text from SQLite, and RFC 3339 text wherever else JSON holds one), read
//! where they lie in the JSON (serde's `String` would copy them first).

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{
    Deserializer,
    de::{Error, Visitor},
};

/// A timestamp (see the module's docs), for `#[serde(deserialize_with)]`.
pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    deserializer.deserialize_any(Text)
}

/// A timestamp or null, for `#[serde(deserialize_with)]`.
pub fn optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    deserializer.deserialize_option(Optional)
}

/// Reads the text where it lies (serde's `String` or `Cow<str>` would copy
/// it into an allocation first).
struct Text;

impl Visitor<'_> for Text {
    type Value = DateTime<Utc>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an RFC 3339 timestamp or microseconds since the epoch")
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
        parse(text).map_err(E::custom)
    }

    fn visit_i64<E: Error>(self, micros: i64) -> Result<Self::Value, E> {
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| E::custom(format!("{micros} µs from the epoch is out of range")))
    }

    fn visit_u64<E: Error>(self, micros: u64) -> Result<Self::Value, E> {
        i64::try_from(micros)
            .map_err(|_| E::custom(format!("{micros} µs from the epoch is out of range")))
            .and_then(|micros| self.visit_i64(micros))
    }
}

struct Optional;

impl<'de> Visitor<'de> for Optional {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an RFC 3339 timestamp, microseconds since the epoch, or null")
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(Text).map(Some)
    }
}

/// RFC 3339 (`T` or a space between date and time, a space before the
/// offset allowed), through chrono; else the forms SQLite holds that it
/// does not read: an offset of hours alone (`+00`), and no offset at all,
/// which is UTC: SQLite's own `datetime('now')` and `CURRENT_TIMESTAMP`
/// write `2026-12-02 11:33:00`, in UTC, and other programs writing to the
/// tables use them. (A parser of its own for the UTC forms was measured
/// against this: within the noise, BENCHMARKS.md.)
fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    text.parse().or_else(|err| {
        let text = text.replacen('T', " ", 1);
        if let Ok(at) = DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f%#z") {
            return Ok(at.to_utc());
        }
        NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|at| at.and_utc())
            .map_err(|_| err)
    })
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
    *out = micros_ascii(at)?;
    std::str::from_utf8(out).ok()
}

/// What [`write_micros`] writes, as the ASCII bytes it is, for a writer of
/// bytes (checking them as UTF-8 again costs about a third as much as
/// writing them).
pub fn micros_ascii(at: &DateTime<Utc>) -> Option<[u8; MICROS_LEN]> {
    use chrono::{Datelike, Timelike};
    let mut out = [0; MICROS_LEN];
    // In UTC already: the naive parts need no offset applied per accessor.
    let utc = at.naive_utc();
    let (date, time) = (utc.date(), utc.time());
    let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999)?;
    let nanos = time.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    // Two digits at a time, from a table: a division by 100 per pair.
    const PAIRS: [[u8; 2]; 100] = {
        let mut pairs = [[0; 2]; 100];
        let mut n = 0;
        while n < 100 {
            pairs[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
            n += 1;
        }
        pairs
    };
    let mut pair = |at: usize, n: u32| {
        out[at..at + 2].copy_from_slice(&PAIRS[(n % 100) as usize]);
    };
    let micros = nanos / 1_000;
    pair(0, year / 100);
    pair(2, year);
    pair(5, date.month());
    pair(8, date.day());
    pair(11, time.hour());
    pair(14, time.minute());
    pair(17, time.second());
    pair(20, micros / 10_000);
    pair(22, micros / 100);
    pair(24, micros);
    for (at, c) in
        [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (26, b'Z')]
    {
        out[at] = c;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        use chrono::{Datelike, SecondsFormat, TimeZone, Timelike};
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
                    // And read back, as written and as Postgres writes it.
                    let micros = at.with_nanosecond(at.nanosecond() / 1_000 * 1_000);
                    assert_eq!(parse(ours).ok(), micros, "{ours}");
                    let postgres = ours.trim_end_matches('Z').trim_end_matches('0');
                    let postgres = format!("{}+00:00", postgres.trim_end_matches('.'));
                    assert_eq!(parse(&postgres).ok(), micros, "{postgres}");
                    written += 1;
                }
                None => assert!(at.year() < 0 || at.year() > 9999, "{chrono}"),
            }
        }
        assert!(written > 1_000, "most fit the layout");
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|day| day.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .map(|at| at.and_utc())
            .unwrap();
        assert_eq!(write_micros(&leap, &mut buffer), None, "a leap second is chrono's to write");
    }

    #[test]
    fn the_utc_forms_read_as_rfc_3339_says() {
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
            let fast = parse(text).ok();
            assert!(fast.is_some(), "not read: {text}");
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
    fn fields_read_a_timestamp_where_it_lies_escaped_or_not_and_null() {
        #[derive(serde::Deserialize)]
        struct Row {
            #[serde(deserialize_with = "required")]
            at: DateTime<Utc>,
            #[serde(deserialize_with = "optional", default)]
            maybe: Option<DateTime<Utc>>,
        }
        let expected = parse("2026-11-26T23:48:00.224709Z").ok();
        let borrowed =
            r#"{"at":"2026-11-26T23:48:00.224709+00:00","maybe":"2026-11-26T23:48:00.224709Z"}"#;
        let row: Row = serde_json::from_str(borrowed).unwrap();
        assert_eq!((Some(row.at), row.maybe), (expected, expected));
        // An escape makes serde_json hand over a copy instead.
        let escaped = r#"{"at":"2026-11-26T23:48:00.224709\u002B00:00","maybe":null}"#;
        let row: Row = serde_json::from_str(escaped).unwrap();
        assert_eq!((Some(row.at), row.maybe), (expected, None));
        let absent: Row = serde_json::from_str(r#"{"at":"2026-11-26T23:48:00.224709Z"}"#).unwrap();
        assert_eq!(absent.maybe, None);
        // Microseconds since the epoch, as Postgres' JSON rows carry them.
        let micros = expected.map(|at| at.timestamp_micros()).unwrap_or_default();
        let row: Row = serde_json::from_str(&format!(r#"{{"at":{micros},"maybe":-1}}"#)).unwrap();
        assert_eq!((Some(row.at), row.maybe), (expected, DateTime::from_timestamp_micros(-1)));
        for bad in [
            r#"{"at":"yesterday"}"#,
            r#"{"at":17.5}"#,
            r#"{"at":null}"#,
            r#"{"at":true}"#,
            r#"{"at":9223372036854775807}"#,
            r#"{"at":18446744073709551615}"#,
        ] {
            assert!(serde_json::from_str::<Row>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sqlite_s_own_forms_without_an_offset_are_utc() {
        let at = parse("2026-12-02T11:33:00Z").ok();
        assert!(at.is_some());
        for text in ["2026-12-02 11:33:00", "2026-12-02T11:33:00"] {
            assert_eq!(parse(text).ok(), at, "{text}");
        }
        let fraction = parse("2026-12-02T11:33:00.250Z").ok();
        assert_eq!(parse("2026-12-02 11:33:00.250").ok(), fraction);
    }

    #[test]
    fn other_offsets_are_converted_and_the_rest_refused() {
        let shifted = parse("2026-11-27T00:48:00.224709+01:00").ok();
        assert_eq!(shifted, parse("2026-11-26T23:48:00.224709Z").ok(), "another offset");
        for text in [
            "2026-02-30T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26",
            "",
            "２０２６-11-26T23:48:00Z",
            "yesterday",
        ] {
            assert!(parse(text).is_err(), "read: {text}");
        }
    }
}
