//! One reading of an instant for every place that takes one: restores and
//! bookmarks, `AS OF`, diffs, growth and activity, the CLI.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// An instant as µs since the epoch, from
/// - RFC 3339: `2026-11-28T07:00:00Z`, `2026-11-28T07:00:00.5+01:00`;
/// - PostgreSQL's text: `2026-11-28 07:00:00[.ffffff][+HH[:MM]]`, minutes
///   alone allowed (`2026-11-28 07:00`), `T` or a space between date and
///   time, `Z` for UTC;
/// - a date alone: `2026-11-28`, its midnight.
///
/// Without an offset the instant is UTC. `None` for anything else.
pub fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    let mut text = text.to_owned();
    if text.len() > 10 && matches!(text.as_bytes()[10], b'T' | b't') {
        text.replace_range(10..11, " ");
    }
    if let Some(utc) = text.strip_suffix(['Z', 'z']) {
        text = format!("{utc}+00");
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M%#z"] {
        if let Ok(t) = DateTime::parse_from_str(&text, format) {
            return Some(t.timestamp_micros());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// An instant (µs since the epoch) as PostgreSQL prints a `timestamptz` in
/// UTC: `2026-11-28 07:00:00.123456+00`, trailing zeros of the fraction
/// left out (and the fraction, when it is zero). [`parse_instant`] reads it
/// back. None outside the range a date can hold.
pub fn format_instant(micros: i64) -> Option<String> {
    let at = DateTime::from_timestamp_micros(micros)?;
    let mut text = at.format("%Y-%m-%d %H:%M:%S").to_string();
    let fraction = micros.rem_euclid(1_000_000);
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push_str("+00");
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_instant_reads_the_same() {
        // 2026-11-28 07:00:00 UTC.
        let at = 1_795_849_200_000_000;
        for text in [
            "2026-11-28T07:00:00Z",
            "2026-11-28T07:00:00+00:00",
            "2026-11-28 07:00:00+00",
            "2026-11-28 07:00:00",
            " 2026-11-28 07:00:00.000000+00 ",
            "2026-11-28T07:00:00",
            "2026-11-28 07:00",
            "2026-11-28 08:00:00+01",
            "2026-11-28T09:30:00+02:30",
            "2026-11-28 07:00:00z",
        ] {
            assert_eq!(parse_instant(text), Some(at), "{text}");
        }
        assert_eq!(parse_instant("2026-11-28 07:00:00.123456+00"), Some(at + 123_456));
        assert_eq!(parse_instant("2026-11-28T07:00:00.5Z"), Some(at + 500_000));
        assert_eq!(parse_instant("2026-11-28"), Some(at - 7 * 3_600_000_000));
        for micros in [at, at + 123_456, at + 500_000, -1, 0] {
            assert_eq!(parse_instant(&format_instant(micros).unwrap()), Some(micros));
        }
        assert_eq!(format_instant(at + 120_000).unwrap(), "2026-11-28 07:00:00.12+00");
        assert_eq!(format_instant(at).unwrap(), "2026-11-28 07:00:00+00");
        for bad in ["", "yesterday", "2026-13-01", "2026-11-28 25:00:00", "lsn:5", "12345", "2026-11-28 07:00:00+99"] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }
}
