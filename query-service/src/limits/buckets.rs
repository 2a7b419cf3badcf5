//! The buckets of `growth` and `activity`: one instant from `start` every
//! `interval` up to `end`. They are counted before any is made, and refused
//! past the cap or out of range: while the query is planned when the bounds
//! are literals (the HTTP endpoints always give literals), else by
//! [`FUNCTION`] when it runs, before it builds the series.

use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::compute::kernels::cast_utils::{
    IntervalParseConfig, IntervalUnit, parse_interval_month_day_nano_config,
};
use datafusion::arrow::datatypes::{IntervalMonthDayNano, TimestampMicrosecondType};
use datafusion::arrow::temporal_conversions::timestamp_us_to_datetime;

use crate::error::QueryError;

/// The series function the rewrite of `growth` and `activity` calls:
/// `generate_series(start, end, interval)` once the buckets are checked.
pub const FUNCTION: &str = "tidelake_buckets";

/// The instants a series can hold, in µs: DataFusion steps series in
/// nanoseconds, which reach from 1677-09-21 to 2262-04-11.
const FIRST_MICROS: i64 = i64::MIN / 1000 + 1;
const END_MICROS: i64 = i64::MAX / 1000;

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// An interval as DataFusion reads `INTERVAL '<text>'` (a bare number is
/// seconds), which must be positive.
pub fn interval(function: &str, text: &str) -> Result<IntervalMonthDayNano, QueryError> {
    let step = parse_interval_month_day_nano_config(text, IntervalParseConfig::new(IntervalUnit::Second))
        .map_err(|_| {
            QueryError::InvalidArgument(format!(
                "{function}: '{text}' is not an interval (e.g. '1 day', '15 minutes', '1 month')"
            ))
        })?;
    positive(function, step, text)?;
    Ok(step)
}

fn positive(function: &str, step: IntervalMonthDayNano, text: &str) -> Result<(), QueryError> {
    let IntervalMonthDayNano { months, days, nanoseconds } = step;
    if months < 0 || days < 0 || nanoseconds < 0 || (months == 0 && days == 0 && nanoseconds == 0) {
        return Err(QueryError::InvalidArgument(format!(
            "{function}: the interval must be positive, not '{text}'"
        )));
    }
    Ok(())
}

/// Refuse an instant (µs) no series can hold.
pub fn instant(function: &str, micros: i64) -> Result<(), QueryError> {
    if !(FIRST_MICROS..END_MICROS).contains(&micros) {
        return Err(QueryError::InvalidArgument(format!(
            "{function}: {} is out of range: instants of a series are between 1677-09-22 and 2262-04-11",
            show(micros)
        )));
    }
    Ok(())
}

/// The number of buckets from `start` to `end` (µs) every `step`, refused
/// if a bound is out of range, `start` is after `end`, or there are more
/// than `cap`.
pub fn check(function: &'static str, start: i64, end: i64, step: IntervalMonthDayNano, cap: u64) -> Result<u64, QueryError> {
    instant(function, start)?;
    instant(function, end)?;
    positive(function, step, &describe(step))?;
    if start > end {
        return Err(QueryError::InvalidArgument(format!(
            "{function}: start {} is after end {}",
            show(start),
            show(end)
        )));
    }
    let span_nanos = (i128::from(end) - i128::from(start)) * 1000;
    let fixed_nanos = i128::from(step.days) * NANOS_PER_DAY + i128::from(step.nanoseconds);
    let too_many = |asked: String| QueryError::TooManyBuckets {
        function,
        asked,
        span: format!("from {} to {} every {}", show(start), show(end), describe(step)),
        cap,
    };
    if step.months == 0 {
        let count = span_nanos / fixed_nanos + 1;
        return match u64::try_from(count) {
            Ok(count) if count <= cap => Ok(count),
            _ => Err(too_many(count.to_string())),
        };
    }
    // Months differ in length: step as DataFusion does, at most cap + 1 times.
    let utc: Tz = "+00:00".parse().expect("UTC is a time zone");
    let (mut at, mut count) = (start, 0u64);
    while at <= end {
        count += 1;
        if count > cap {
            // An average month (30.436875 days) is close enough to say how many.
            let average = i128::from(step.months) * 2_629_746_000_000_000 + fixed_nanos;
            return Err(too_many(format!("about {}", span_nanos / average + 1)));
        }
        match TimestampMicrosecondType::add_month_day_nano(at, step, utc) {
            Some(next) if next > at => at = next,
            _ => break,
        }
    }
    Ok(count)
}

fn show(micros: i64) -> String {
    timestamp_us_to_datetime(micros).map_or_else(|| format!("{micros} µs after 1970"), |t| t.to_string())
}

/// `1 month 2 days 3600 seconds`.
fn describe(step: IntervalMonthDayNano) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if step.months != 0 {
        parts.push(plural(step.months.into(), "month"));
    }
    if step.days != 0 {
        parts.push(plural(step.days.into(), "day"));
    }
    if step.nanoseconds % 1_000_000_000 == 0 && step.nanoseconds != 0 {
        parts.push(plural(step.nanoseconds / 1_000_000_000, "second"));
    } else if step.nanoseconds != 0 {
        parts.push(format!("{} seconds", step.nanoseconds as f64 / 1e9));
    }
    if parts.is_empty() { "0 seconds".to_owned() } else { parts.join(" ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;
    /// 2000-01-01 and 2200-01-01 in µs.
    const Y2000: i64 = 10_957 * DAY;
    const Y2200: i64 = 84_006 * DAY;

    #[test]
    fn buckets_are_counted_exactly() {
        assert_eq!(check("growth", Y2000, Y2000, interval("growth", "1 day").unwrap(), 10).unwrap(), 1);
        assert_eq!(check("growth", Y2000, Y2000 + 9 * DAY, interval("growth", "1 day").unwrap(), 10).unwrap(), 10);
        assert_eq!(check("growth", Y2000, Y2000 + 9 * DAY + 1, interval("growth", "1 day").unwrap(), 10).unwrap(), 10);
        // 2000-01-01 … 2000-12-01: twelve months.
        let months = check("growth", Y2000, Y2000 + 335 * DAY, interval("growth", "1 month").unwrap(), 100).unwrap();
        assert_eq!(months, 12);
    }

    #[test]
    fn two_centuries_of_seconds_are_refused_with_their_count() {
        let err = check("growth", Y2000, Y2200, interval("growth", "1 second").unwrap(), 10_000).unwrap_err();
        assert_eq!(err.code(), "too_many_buckets");
        let message = err.to_string();
        assert!(message.contains(&format!("asks for {} buckets", (Y2200 - Y2000) / 1_000_000 + 1)), "{message}");
        assert!(message.contains("limit of 10000 (--query-max-buckets)"), "{message}");
        assert!(message.contains("from 2000-01-01 00:00:00 to 2200-01-01 00:00:00 every 1 second"), "{message}");
        let err = check("activity", Y2000, Y2200, interval("activity", "1 month").unwrap(), 100).unwrap_err();
        assert!(err.to_string().contains("asks for about 2401 buckets"), "{err}");
    }

    #[test]
    fn out_of_range_arguments_are_refused() {
        for text in ["0 seconds", "-1 day", "1 day -1 hour", "soon", ""] {
            let err = interval("growth", text).unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{text}");
        }
        let day = interval("growth", "1 day").unwrap();
        assert!(check("growth", Y2000 + DAY, Y2000, day, 10).unwrap_err().to_string().contains("is after end"));
        assert!(check("growth", Y2000, i64::MAX, day, 10).unwrap_err().to_string().contains("out of range"));
        assert!(check("growth", i64::MIN, Y2000, day, 10).unwrap_err().to_string().contains("out of range"));
        // A bare number is seconds, as in DataFusion's INTERVAL '…'.
        assert_eq!(interval("growth", "90").unwrap(), IntervalMonthDayNano::new(0, 0, 90_000_000_000));
    }
}
