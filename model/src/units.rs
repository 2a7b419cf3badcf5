//! The one reading of a duration and of a size, for the server's settings
//! and the edge's variables alike.

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

/// `20GB`, `512MiB`, `1.5 GiB`, `1048576`: bytes, decimal (`kB`, `MB`, `GB`,
/// `TB`) and binary (`KiB`, `MiB`, `GiB`, `TiB`) units, any case, as
/// bytesize reads them.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let size: bytesize::ByteSize = text.parse().map_err(|e| format!("expected a size like 20GB or 512MiB, got {text:?}: {e}"))?;
    // bytesize saturates: the largest value means "too large".
    if size.as_u64() == u64::MAX {
        return Err(format!("size {text:?} is out of range"));
    }
    Ok(size.as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_bytes("1kB").unwrap(), 1000);
        assert_eq!(parse_bytes(" 4096 ").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
    }

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
