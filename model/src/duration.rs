//! The one reading of a duration, for the server's settings and the
//! edge's variables alike.

use std::time::Duration;

/// Parse a duration as humantime reads one — `250ms`, `30s`, `5m`, `2h`,
/// `7d`, `1h 30m` — or a bare number of seconds (`2`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration {text:?} is out of range"));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e} (e.g. 250ms, 30s, 5m, 1h 30m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration(" 1h 30m ").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("10min").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("-5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("99999999999999999999999999d").is_err());
    }
}
