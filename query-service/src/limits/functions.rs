//! Functions whose output size the query chooses — `generate_series` and
//! `range` (a list of any length), `repeat`, `lpad`, `rpad` — reserve that
//! size from the service's memory pool before they build it. DataFusion's
//! own versions allocate whatever is asked (`generate_series(1, 5e9)` is
//! 40 GB, and DataFusion folds it while planning) and no operator counts
//! it. Also [`buckets::FUNCTION`], the series of `growth` and `activity`,
//! which refuses more buckets than the cap.
//!
//! They are volatile: DataFusion would otherwise fold a call with literal
//! arguments while planning, once, and then copy the folded value into
//! every row of a batch without asking the pool; evaluated with the batch,
//! the check sees that copy too.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use super::{Limits, buckets};
use crate::error::QueryError;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Size {
    /// `(start, stop[, step])`: integers, dates or timestamps, 8 bytes each.
    Series,
    /// `(text, n)`: the text n times.
    Repeat,
    /// `(text, n[, fill])`: n characters.
    Pad,
}

/// Put the checked functions in place of DataFusion's in `ctx`.
pub fn register(ctx: &SessionContext, limits: &Limits) -> Result<(), QueryError> {
    let pool = ctx.runtime_env().memory_pool.clone();
    let series = ctx.udf("generate_series")?;
    let checked = [
        ("generate_series", Size::Series),
        ("range", Size::Series),
        ("repeat", Size::Repeat),
        ("lpad", Size::Pad),
        ("rpad", Size::Pad),
    ];
    for (name, size) in checked {
        let inner = ctx.udf(name)?;
        let (name, aliases) = (inner.name().to_owned(), inner.aliases().to_vec());
        ctx.register_udf(Checked::new(name, aliases, inner, size, None, pool.clone()));
    }
    let name = buckets::FUNCTION.to_owned();
    ctx.register_udf(Checked::new(name, Vec::new(), series, Size::Series, Some(limits.max_buckets), pool));
    Ok(())
}

/// A DataFusion function that reserves its output size first.
#[derive(Debug)]
struct Checked {
    name: String,
    aliases: Vec<String>,
    inner: Arc<ScalarUDF>,
    /// The inner function's, made volatile.
    signature: Signature,
    size: Size,
    /// Set for the series of `growth` and `activity`.
    max_buckets: Option<u64>,
    pool: Arc<dyn MemoryPool>,
}

impl PartialEq for Checked {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.inner == other.inner
            && self.size == other.size
            && self.max_buckets == other.max_buckets
            && Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for Checked {}

impl Hash for Checked {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (&self.name, &self.inner, self.size, self.max_buckets).hash(state);
    }
}

impl Checked {
    fn new(
        name: String,
        aliases: Vec<String>,
        inner: Arc<ScalarUDF>,
        size: Size,
        max_buckets: Option<u64>,
        pool: Arc<dyn MemoryPool>,
    ) -> ScalarUDF {
        let mut signature = inner.signature().clone();
        signature.volatility = Volatility::Volatile;
        ScalarUDF::new_from_impl(Self { name, aliases, inner, signature, size, max_buckets, pool })
    }

    /// Refuse the call if its output would not fit in the pool (as it is now).
    fn reserve(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        if let Some(cap) = self.max_buckets {
            check_buckets(&arrays, cap)?;
        }
        let (amount, bytes) = match self.size {
            Size::Series => {
                let values = series_values(&arrays)?;
                (format!("{values} values"), values.saturating_mul(8))
            }
            Size::Repeat => {
                let bytes = repeated_bytes(&arrays)?;
                (format!("{bytes} bytes"), bytes)
            }
            Size::Pad => {
                let bytes = arrays.get(1).map(positive_sum).transpose()?.unwrap_or(0);
                (format!("{bytes} characters"), bytes)
            }
        };
        // A value computed once from literals is copied into every row.
        let copies = if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) { rows.max(1) as u64 } else { 1 };
        let bytes = bytes.saturating_mul(copies);
        if bytes == 0 {
            return Ok(());
        }
        let amount = if copies > 1 { format!("{amount} for each of {copies} rows") } else { amount };
        let reservation = MemoryConsumer::new(format!("{}() building {amount}", self.name)).register(&self.pool);
        // Held while the output is built only: the gate keeps any one call
        // from growing past what the pool has left.
        reservation.try_grow(usize::try_from(bytes).unwrap_or(usize::MAX))
    }
}

/// `tidelake_buckets(start, end, interval)`: each row's count against the cap.
fn check_buckets(arrays: &[ArrayRef], cap: u64) -> Result<()> {
    let [start, end, step] = arrays else { return Ok(()) };
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let (start, end) = (cast(start, &micros)?, cast(end, &micros)?);
    let (start, end) = (start.as_primitive::<TimestampMicrosecondType>(), end.as_primitive::<TimestampMicrosecondType>());
    let Some(step) = step.as_primitive_opt::<IntervalMonthDayNanoType>() else { return Ok(()) };
    for i in 0..start.len() {
        if start.is_valid(i) && end.is_valid(i) && step.is_valid(i) {
            buckets::check("growth/activity", start.value(i), end.value(i), step.value(i), cap)?;
        }
    }
    Ok(())
}

/// At most how many values `generate_series`/`range` make from these arguments.
fn series_values(arrays: &[ArrayRef]) -> Result<u64> {
    const DAY_NANOS: i128 = 86_400_000_000_000;
    let mut total: u64 = 0;
    match arrays.first().map(|a| a.data_type()) {
        Some(DataType::Int64) => {
            let ints = |i: usize| arrays.get(i).map(|a| cast(a, &DataType::Int64)).transpose();
            let (first, second, third) = (ints(0)?, ints(1)?, ints(2)?);
            let (start, stop) = match &second {
                Some(stop) => (first.as_ref().map(|a| a.as_primitive::<Int64Type>()), stop.as_primitive::<Int64Type>()),
                None => (None, first.as_ref().expect("one argument").as_primitive::<Int64Type>()),
            };
            let step = third.as_ref().map(|a| a.as_primitive::<Int64Type>());
            for i in 0..stop.len() {
                let value = |a: Option<&datafusion::arrow::array::Int64Array>, default: i64| match a {
                    Some(a) if a.is_null(i) => None,
                    Some(a) => Some(a.value(i)),
                    None => Some(default),
                };
                let (Some(start), Some(stop), Some(step)) = (value(start, 0), value(Some(stop), 0), value(step, 1)) else {
                    continue;
                };
                let span = i128::from(stop) - i128::from(start);
                if step != 0 && span.signum() * i128::from(step).signum() >= 0 {
                    total = total.saturating_add(u64::try_from(span / i128::from(step) + 1).unwrap_or(u64::MAX));
                }
            }
        }
        Some(DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) if arrays.len() == 3 => {
            let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
            let (start, stop) = (cast(&arrays[0], &micros)?, cast(&arrays[1], &micros)?);
            let (start, stop) =
                (start.as_primitive::<TimestampMicrosecondType>(), stop.as_primitive::<TimestampMicrosecondType>());
            let Some(step) = arrays[2].as_primitive_opt::<IntervalMonthDayNanoType>() else { return Ok(0) };
            for i in 0..start.len() {
                if start.is_null(i) || stop.is_null(i) || step.is_null(i) {
                    continue;
                }
                let s = step.value(i);
                // The shortest a month can be, so the count is never under.
                let nanos = (i128::from(s.months) * 28 + i128::from(s.days)) * DAY_NANOS + i128::from(s.nanoseconds);
                let span = (i128::from(stop.value(i)) - i128::from(start.value(i))).abs() * 1000;
                let count = span / nanos.abs().max(1) + 1;
                total = total.saturating_add(u64::try_from(count).unwrap_or(u64::MAX));
            }
        }
        _ => {}
    }
    Ok(total)
}

/// `repeat(text, n)`: the bytes of each text times its n.
fn repeated_bytes(arrays: &[ArrayRef]) -> Result<u64> {
    let [text, times] = arrays else { return Ok(0) };
    let Ok(lengths) = length(text.as_ref()) else { return Ok(0) };
    let lengths = cast(&lengths, &DataType::Int64)?;
    let lengths = lengths.as_primitive::<Int64Type>();
    let times = cast(times, &DataType::Int64)?;
    let times = times.as_primitive::<Int64Type>();
    let mut total: u64 = 0;
    for i in 0..lengths.len().min(times.len()) {
        if lengths.is_valid(i) && times.is_valid(i) && times.value(i) > 0 {
            let bytes = u64::try_from(lengths.value(i)).unwrap_or(0).saturating_mul(times.value(i) as u64);
            total = total.saturating_add(bytes);
        }
    }
    Ok(total)
}

/// The sum of the positive values of an integer column.
fn positive_sum(array: &ArrayRef) -> Result<u64> {
    let ints = cast(array, &DataType::Int64)?;
    let ints = ints.as_primitive::<Int64Type>();
    Ok(ints.iter().flatten().filter(|n| *n > 0).fold(0u64, |total, n| total.saturating_add(n as u64)))
}

// Every method delegates to DataFusion's function, but for the name and the
// size check before it runs.
impl ScalarUDFImpl for Checked {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.reserve(&args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use datafusion::prelude::SessionConfig;

    fn session(limits: &Limits) -> SessionContext {
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), super::super::runtime(limits));
        register(&ctx, limits).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<datafusion::arrow::array::RecordBatch>, QueryError> {
        Ok(ctx.sql(sql).await?.collect().await?)
    }

    #[tokio::test]
    async fn a_series_larger_than_the_pool_is_refused_before_it_is_built() {
        let limits = Limits { memory: 64 << 20, ..Limits::default() };
        let ctx = session(&limits);
        let err = run(&ctx, "SELECT max(x) FROM unnest(generate_series(1, 5000000000)) t(x)").await.unwrap_err();
        assert_eq!(err.code(), "query_memory_exceeded", "{err}");
        let message = err.to_string();
        assert!(message.contains("limit of 64 MiB (--query-memory"), "{message}");
        assert!(message.contains("generate_series() building 5000000000 values"), "{message}");
        for sql in [
            "SELECT range(0, 100000000)",
            // 84 006 days: small once, 3 GB copied into 5 000 rows.
            "SELECT generate_series(DATE '1970-01-01', DATE '2200-01-01', INTERVAL '1 day') FROM generate_series(1, 5000)",
            "SELECT length(repeat('x', 200000000))",
            "SELECT length(lpad('x', 100000000))",
        ] {
            let err = run(&ctx, sql).await.unwrap_err();
            assert_eq!(err.code(), "query_memory_exceeded", "{sql}: {err}");
        }
        // Under the limit the functions answer as DataFusion's own.
        let batches = run(&ctx, "SELECT max(x) AS m, count(*) AS n FROM unnest(generate_series(1, 1000000)) t(x)").await.unwrap();
        let row = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(row.contains("| 1000000 | 1000000 |"), "{row}");
        let batches = run(&ctx, "SELECT repeat('ab', 3) AS r, lpad('x', 3, '-') AS l, range(1, 4) AS s").await.unwrap();
        let row = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(row.contains("| ababab | --x | [1, 2, 3] |"), "{row}");
        // Nothing stays reserved once a function has run.
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }

    #[tokio::test]
    async fn the_pool_refuses_an_unspillable_join_and_names_the_limit() {
        let limits = Limits { memory: 16 << 20, ..Limits::default() };
        let ctx = session(&limits);
        let err = run(
            &ctx,
            "SELECT count(*) FROM generate_series(1, 3000000) a(x) JOIN generate_series(1, 3000000) b(y) ON a.x = b.y",
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "query_memory_exceeded", "{err}");
        assert!(err.to_string().contains("limit of 16 MiB (--query-memory"), "{err}");
    }

    #[tokio::test]
    async fn buckets_past_the_cap_are_refused_when_the_bounds_are_expressions() {
        let limits = Limits { max_buckets: 100, ..Limits::default() };
        let ctx = session(&limits);
        let sql = "SELECT count(*) FROM unnest(tidelake_buckets(to_timestamp_micros(0), \
                   to_timestamp_micros(0) + INTERVAL '1 day', INTERVAL '1 minute')) t(x)";
        let err = run(&ctx, sql).await.unwrap_err();
        assert_eq!(err.code(), "too_many_buckets", "{err}");
        assert!(err.to_string().contains("asks for 1441 buckets") && err.to_string().contains("limit of 100"), "{err}");
        let sql = "SELECT count(*) AS n FROM unnest(tidelake_buckets(to_timestamp_micros(0), \
                   to_timestamp_micros(0) + INTERVAL '1 day', INTERVAL '1 hour')) t(x)";
        let batches = run(&ctx, sql).await.unwrap();
        let row = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(row.contains("| 25 |"), "{row}");
    }
}
