//! The PostgreSQL → Iceberg type mapping, and change-log rows → Arrow.
//!
//! | PostgreSQL | Iceberg | value in the change log |
//! |---|---|---|
//! | `boolean` | `boolean` | JSON boolean |
//! | `smallint`, `integer` | `int` | JSON number |
//! | `bigint`, `oid` | `long` | JSON number |
//! | `real` | `float` | JSON number, or `"NaN"`/`"Infinity"`/`"-Infinity"` |
//! | `double precision` | `double` | same |
//! | `numeric(p,s)` with 0 ≤ s ≤ p ≤ 38 | `decimal(p,s)` | exact text (`NaN` becomes null) |
//! | `numeric` without precision, p > 38, or a scale outside 0…p | `string` | exact text |
//! | `text`, `varchar`, `char(n)`, `name` | `string` | text |
//! | `bytea` | `binary` | `\x` hex |
//! | `date` | `date` | `YYYY-MM-DD` (±infinity become null) |
//! | `time` | `time` | `HH:MM:SS[.ffffff]` |
//! | `timestamp` | `timestamp` (µs) | `YYYY-MM-DD HH:MM:SS[.ffffff]` |
//! | `timestamptz` | `timestamptz` (µs, UTC) | same with `+00` (sessions run in UTC) |
//! | `uuid` | `uuid` | text |
//! | pgvector's `vector`, `halfvec` | `list<float>` (elements required) | text, `[1,2.5,3]` |
//! | `json`, `jsonb`, arrays, and every other type (hstore, citext, ltree, cube, …) | `string` | the JSON or text form |
//!
//! Field ids are assigned by the lake (`table`): a column is followed by its
//! PostgreSQL `attnum`, which PostgreSQL never reuses within a table, so a
//! rename keeps the field id (an Iceberg rename), a type change keeps it
//! where Iceberg allows the promotion, and a dropped column's id is never
//! reused. The changelog columns `_op`, `_lsn`, `_xid`, `_commit_ts` are
//! proposed with ids 10001–10004; the catalog renumbers a new table's fields
//! in order (source columns 1…n, then those four), and evolution keeps
//! whatever ids the table has.
//!
//! Values come from a tenant's change log: any of them may be malformed
//! (a forged or damaged row), and each is parsed with checked arithmetic
//! into an error naming the column, never a panic.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int32Builder, Int64Builder, LargeBinaryBuilder, ListBuilder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use iceberg::spec::{ListType, NestedField, PrimitiveType, Schema, Type};
use model::Change;
use serde_json::Value;

use crate::error::{LakeError, Result};
use crate::spec::{CHANGELOG_COLUMNS, COMMIT_TS, LSN, OP, XID};

pub use crate::spec::{CHANGELOG_FIELD_IDS, COMMIT_TS_FIELD_ID, LSN_FIELD_ID, OP_FIELD_ID, XID_FIELD_ID};

pub use model::SourceColumn;

/// The Iceberg type a PostgreSQL column is stored as.
pub fn iceberg_type(type_oid: i32, type_name: &str) -> PrimitiveType {
    match type_oid {
        16 => PrimitiveType::Boolean,
        21 | 23 => PrimitiveType::Int,
        20 | 26 => PrimitiveType::Long,
        700 => PrimitiveType::Float,
        701 => PrimitiveType::Double,
        1700 => match numeric_precision(type_name) {
            // PostgreSQL allows a scale above the precision or below 0; Iceberg and Arrow do not.
            Some((precision, scale)) if (1..=38).contains(&precision) && scale <= precision => {
                PrimitiveType::Decimal { precision, scale }
            }
            _ => PrimitiveType::String,
        },
        17 => PrimitiveType::Binary,
        1082 => PrimitiveType::Date,
        1083 => PrimitiveType::Time,
        1114 => PrimitiveType::Timestamp,
        1184 => PrimitiveType::Timestamptz,
        2950 => PrimitiveType::Uuid,
        _ => PrimitiveType::String,
    }
}

/// The Iceberg type column `c` is stored as: [`iceberg_type`]'s, or for
/// pgvector's types a list of floats whose element has field id
/// `element_id`.
pub fn column_type(c: &SourceColumn, element_id: i32) -> Type {
    if c.is_vector() {
        Type::List(ListType::new(NestedField::list_element(element_id, Type::Primitive(PrimitiveType::Float), true).into()))
    } else {
        Type::Primitive(iceberg_type(c.type_oid, &c.type_name))
    }
}

/// `numeric(p,s)` → (p, s); `numeric(p)` → (p, 0); plain `numeric` → None.
fn numeric_precision(type_name: &str) -> Option<(u32, u32)> {
    let args = type_name.strip_prefix("numeric(")?.strip_suffix(')')?;
    let mut parts = args.split(',').map(|p| p.trim().parse::<u32>());
    let precision = parts.next()?.ok()?;
    let scale = match parts.next() {
        Some(s) => s.ok()?,
        None => 0,
    };
    Some((precision, scale))
}


/// The changelog table's schema for one schema version of a source table,
/// with the Iceberg field id of each column and of the changelog columns.
///
/// A list column's element gets an id above all of these (the catalog
/// numbers a new table's fields afresh).
pub fn changelog_schema(columns: &[SourceColumn], field_ids: &[i32], changelog_ids: [i32; 4]) -> Result<Schema> {
    let above = field_ids.iter().chain(&changelog_ids).max().copied().unwrap_or(0);
    let element_ids: Vec<i32> = (1..=columns.len() as i32).map(|i| above + i).collect();
    changelog_schema_keeping(columns, field_ids, &element_ids, Vec::new(), changelog_ids)
}

/// The changelog schema, keeping `retired` fields (columns the table no
/// longer has, with the values they held) between the columns and the
/// changelog's own. `element_ids` gives each list column's element its
/// field id (ignored for other columns).
pub fn changelog_schema_keeping(
    columns: &[SourceColumn],
    field_ids: &[i32],
    element_ids: &[i32],
    retired: Vec<Arc<NestedField>>,
    changelog_ids: [i32; 4],
) -> Result<Schema> {
    if columns.len() != field_ids.len() || columns.len() != element_ids.len() {
        return Err(LakeError::Mapping(format!(
            "{} columns but {} field ids",
            columns.len(),
            field_ids.len()
        )));
    }
    let mut fields: Vec<Arc<NestedField>> = columns
        .iter()
        .zip(field_ids.iter().zip(element_ids))
        .map(|(c, (id, element_id))| NestedField::optional(*id, c.name.clone(), column_type(c, *element_id)).into())
        .collect();
    fields.extend(retired);
    let [op, lsn, xid, commit_ts] = changelog_ids;
    fields.extend([
        NestedField::required(op, OP, Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(lsn, LSN, Type::Primitive(PrimitiveType::Long)).into(),
        NestedField::required(xid, XID, Type::Primitive(PrimitiveType::Long)).into(),
        NestedField::required(commit_ts, COMMIT_TS, Type::Primitive(PrimitiveType::Timestamptz)).into(),
    ]);
    Ok(Schema::builder().with_fields(fields).build()?)
}

/// Arrow rows of the changelog table for these changes (all of one table
/// and one schema version). An insert or update carries its new row, a
/// delete its old row, a truncate no row.
///
/// One pass over each change's entries: rows list their columns in table
/// order, as the schema does, so a column is usually found at the next
/// position without a lookup.
pub fn record_batch(schema: &Schema, changes: &[&Change]) -> Result<RecordBatch> {
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(schema)?);
    let fields = arrow.fields();
    let mut columns = fields
        .iter()
        .map(|f| Column::new(f.data_type(), changes.len()))
        .collect::<Result<Vec<_>>>()?;
    let position = |name: &str| fields.iter().position(|f| f.name() == name);
    let meta = CHANGELOG_COLUMNS.map(position);
    let source: Vec<(usize, &str)> = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| !meta.contains(&Some(*i)))
        .map(|(i, f)| (i, f.name().as_str()))
        .collect();
    let mut filled = vec![false; fields.len()];
    let put = |columns: &mut Vec<Column>, filled: &mut Vec<bool>, i: usize, value: &Value| {
        filled[i] = true;
        columns[i]
            .append(value)
            .map_err(|e| LakeError::Mapping(format!("column {}: {e}", fields[i].name())))
    };
    for change in changes {
        filled.fill(false);
        let values = [
            Meta::Text(Some(change.op.as_str())),
            Meta::Long(change.lsn as i64),
            Meta::Long(change.xid as i64),
            Meta::Text(change.commit_ts.as_deref()),
        ];
        for (slot, value) in meta.iter().zip(values) {
            if let Some(i) = *slot {
                filled[i] = true;
                columns[i]
                    .append_meta(value)
                    .map_err(|e| LakeError::Mapping(format!("column {}: {e}", fields[i].name())))?;
            }
        }
        if let Some(row) = change.row() {
            let mut next = 0;
            for (name, value) in row {
                let found = if source.get(next).is_some_and(|(_, n)| n == name) {
                    Some(next)
                } else {
                    source.iter().position(|(_, n)| n == name)
                };
                if let Some(s) = found {
                    put(&mut columns, &mut filled, source[s].0, value)?;
                    next = s + 1;
                }
            }
        }
        for (i, column) in columns.iter_mut().enumerate() {
            if !filled[i] {
                column.append_null();
            }
        }
    }
    let arrays: Vec<ArrayRef> = columns.iter_mut().map(Column::finish).collect();
    Ok(RecordBatch::try_new(arrow, arrays)?)
}

/// A change's own value for one of the changelog columns.
#[derive(Clone, Copy)]
enum Meta<'a> {
    Long(i64),
    Text(Option<&'a str>),
}

/// One Arrow column being built from change-log values.
enum Column {
    Bool(BooleanBuilder),
    Int(Int32Builder),
    Long(Int64Builder),
    Float(Float32Builder),
    Double(Float64Builder),
    /// The builder, precision and scale.
    Decimal(Decimal128Builder, u8, i8),
    Str(StringBuilder),
    Binary(LargeBinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Uuid(FixedSizeBinaryBuilder),
    /// pgvector's values: lists of floats.
    Floats(ListBuilder<Float32Builder>),
}

impl Column {
    fn new(data_type: &DataType, rows: usize) -> Result<Self> {
        Ok(match data_type {
            DataType::Boolean => Self::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Int32 => Self::Int(Int32Builder::with_capacity(rows)),
            DataType::Int64 => Self::Long(Int64Builder::with_capacity(rows)),
            DataType::Float32 => Self::Float(Float32Builder::with_capacity(rows)),
            DataType::Float64 => Self::Double(Float64Builder::with_capacity(rows)),
            DataType::Decimal128(p, s) => Self::Decimal(
                Decimal128Builder::with_capacity(rows).with_precision_and_scale(*p, *s)?,
                *p,
                *s,
            ),
            DataType::Utf8 => Self::Str(StringBuilder::with_capacity(rows, rows * 16)),
            DataType::LargeBinary => Self::Binary(LargeBinaryBuilder::with_capacity(rows, rows * 16)),
            DataType::Date32 => Self::Date(Date32Builder::with_capacity(rows)),
            DataType::Time64(TimeUnit::Microsecond) => Self::Time(Time64MicrosecondBuilder::with_capacity(rows)),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(tz.clone()),
            ),
            DataType::FixedSizeBinary(16) => Self::Uuid(FixedSizeBinaryBuilder::with_capacity(rows, 16)),
            DataType::List(element) if element.data_type() == &DataType::Float32 => {
                Self::Floats(ListBuilder::with_capacity(Float32Builder::new(), rows).with_field(element.clone()))
            }
            other => return Err(LakeError::Mapping(format!("no builder for Arrow type {other}"))),
        })
    }

    fn append(&mut self, value: &Value) -> std::result::Result<(), String> {
        if value.is_null() {
            self.append_null();
            return Ok(());
        }
        let text = || value.as_str().ok_or_else(|| format!("expected text, got {value}"));
        match self {
            Self::Bool(b) => b.append_value(value.as_bool().ok_or("expected a boolean")?),
            Self::Int(b) => {
                let n = value.as_i64().ok_or("expected an integer")?;
                b.append_value(i32::try_from(n).map_err(|_| format!("{n} is out of int range"))?)
            }
            Self::Long(b) => b.append_value(value.as_i64().ok_or("expected an integer")?),
            Self::Float(b) => b.append_value(float(value)? as f32),
            Self::Double(b) => b.append_value(float(value)?),
            Self::Decimal(b, precision, scale) => match decimal(text()?, *precision, *scale)? {
                Some(v) => b.append_value(v),
                None => b.append_null(),
            },
            Self::Str(b) => match value {
                Value::String(s) => b.append_value(s),
                other => b.append_value(other.to_string()),
            },
            Self::Binary(b) => b.append_value(hex_bytes(text()?)?),
            Self::Date(b) => match date_days(text()?)? {
                Some(days) => b.append_value(days),
                None => b.append_null(),
            },
            Self::Time(b) => b.append_value(time_micros(text()?)?),
            Self::Timestamp(b) => match timestamp_micros(text()?)? {
                Some(micros) => b.append_value(micros),
                None => b.append_null(),
            },
            Self::Uuid(b) => b.append_value(uuid_bytes(text()?)?).map_err(|e| e.to_string())?,
            Self::Floats(b) => {
                for n in floats(text()?)? {
                    b.values().append_value(n);
                }
                b.append(true);
            }
        }
        Ok(())
    }

    fn append_meta(&mut self, value: Meta<'_>) -> std::result::Result<(), String> {
        match (self, value) {
            (Self::Long(b), Meta::Long(n)) => b.append_value(n),
            (column, Meta::Text(None)) => column.append_null(),
            (Self::Str(b), Meta::Text(Some(text))) => b.append_value(text),
            (Self::Timestamp(b), Meta::Text(Some(text))) => match timestamp_micros(text)? {
                Some(micros) => b.append_value(micros),
                None => b.append_null(),
            },
            _ => return Err("not a changelog column's type".to_owned()),
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int(b) => b.append_null(),
            Self::Long(b) => b.append_null(),
            Self::Float(b) => b.append_null(),
            Self::Double(b) => b.append_null(),
            Self::Decimal(b, ..) => b.append_null(),
            Self::Str(b) => b.append_null(),
            Self::Binary(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Uuid(b) => b.append_null(),
            Self::Floats(b) => b.append(false),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
            Self::Long(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Double(b) => Arc::new(b.finish()),
            Self::Decimal(b, ..) => Arc::new(b.finish()),
            Self::Str(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Uuid(b) => ArrayBuilder::finish(b),
            Self::Floats(b) => Arc::new(b.finish()),
        }
    }
}

/// A vector's text form, `[1,2.5,-3e-05]`, as its floats.
fn floats(text: &str) -> std::result::Result<Vec<f32>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| format!("{} is not a vector", preview(text)))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|n| n.trim().parse::<f32>().map_err(|_| format!("{} is not a vector", preview(text))))
        .collect()
}

fn float(value: &Value) -> std::result::Result<f64, String> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a float")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => Err(format!("{other:?} is not a float")),
        },
        other => Err(format!("{other} is not a float")),
    }
}

/// Exact decimal text → unscaled i128 at `scale`, at most `precision`
/// digits; `NaN` → None.
fn decimal(text: &str, precision: u8, scale: i8) -> std::result::Result<Option<i128>, String> {
    if text == "NaN" {
        return Ok(None);
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = usize::try_from(scale).unwrap_or(0);
    let all_digits = int_part.bytes().chain(frac_part.bytes()).all(|c| c.is_ascii_digit());
    if frac_part.len() > scale || !all_digits || (int_part.is_empty() && frac_part.is_empty()) {
        return Err(format!("{text:?} does not fit decimal scale {scale}"));
    }
    // Arrow does not check the precision when appending, and Parquet would
    // cut the value to fit: check it here.
    let padded = format!("{int_part}{frac_part:0<scale$}");
    let significant = padded.trim_start_matches('0');
    if significant.len() > usize::from(precision) {
        return Err(format!("{text:?} does not fit decimal precision {precision}"));
    }
    let value: i128 = if significant.is_empty() { 0 } else { significant.parse().map_err(|_| format!("{text:?} is not a decimal"))? };
    Ok(Some(if negative { -value } else { value }))
}

/// `\\x` hex → bytes. Read byte by byte: the text may hold anything.
fn hex_bytes(text: &str) -> std::result::Result<Vec<u8>, String> {
    let hex = text.strip_prefix("\\x").ok_or_else(|| format!("{} is not \\x hex", preview(text)))?;
    if hex.len() % 2 != 0 {
        return Err(format!("odd-length hex {}", preview(text)));
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(format!("bad hex in {}", preview(text))),
        })
        .collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn uuid_bytes(text: &str) -> std::result::Result<Vec<u8>, String> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return Err(format!("{} is not a uuid", preview(text)));
    }
    hex_bytes(&format!("\\x{hex}"))
}

/// A value quoted for an error message, cut at a character boundary: a
/// change-log value may be megabytes long.
fn preview(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// PostgreSQL's dates end in 5874897 AD and begin in 4714 BC; a year
/// beyond this bound is not a date (and would overflow the arithmetic).
const MAX_YEAR: i64 = 10_000_000;

/// `YYYY-MM-DD` (with ` BC` for years before 1) → days; ±infinity → None.
fn date_days(text: &str) -> std::result::Result<Option<i32>, String> {
    if text == "infinity" || text == "-infinity" {
        return Ok(None);
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let mut parts = text.splitn(3, '-').map(|p| p.parse::<i64>());
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{} is not a date", preview(text)));
    };
    if !(0..=MAX_YEAR).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(format!("{} is not a date", preview(text)));
    }
    let y = if bc { 1 - y } else { y };
    i32::try_from(days_from_civil(y, m, d))
        .map(Some)
        .map_err(|_| format!("{} is out of range", preview(text)))
}

/// `HH:MM:SS[.ffffff]` → microseconds since midnight (24:00:00 included,
/// as PostgreSQL has it).
fn time_micros(text: &str) -> std::result::Result<i64, String> {
    let (hms, frac) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>());
    let (Some(Ok(h)), Some(Ok(m)), Some(Ok(s)), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{} is not a time", preview(text)));
    };
    let in_range = (0..=24).contains(&h) && (0..60).contains(&m) && (0..=60).contains(&s);
    if !in_range || frac.len() > 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("{} is not a time", preview(text)));
    }
    let micros: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().unwrap_or(0) };
    Ok(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]]` → microseconds since the epoch
/// (UTC when an offset is given); ±infinity → None.
pub fn timestamp_micros(text: &str) -> std::result::Result<Option<i64>, String> {
    if text == "infinity" || text == "-infinity" {
        return Ok(None);
    }
    let not_a_timestamp = || format!("{} is not a timestamp", preview(text));
    let (date, rest) = text.split_once(' ').ok_or_else(not_a_timestamp)?;
    // A BC timestamp is `… HH:MM:SS+00 BC`.
    let (rest, bc) = match rest.strip_suffix(" BC") {
        Some(rest) => (rest, " BC"),
        None => (rest, ""),
    };
    let (time, offset_secs) = match rest.rfind(['+', '-']) {
        Some(i) => {
            let (time, offset) = rest.split_at(i);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let mut hms = offset.get(1..).unwrap_or_default().split(':').map(|p| p.parse::<i64>());
            let h = hms.next().and_then(|r| r.ok()).ok_or_else(|| format!("bad offset in {}", preview(text)))?;
            let m = hms.next().and_then(|r| r.ok()).unwrap_or(0);
            let s = hms.next().and_then(|r| r.ok()).unwrap_or(0);
            if !(0..=24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&s) {
                return Err(format!("bad offset in {}", preview(text)));
            }
            (time, sign * (h * 3600 + m * 60 + s))
        }
        None => (rest, 0),
    };
    let days = date_days(&format!("{date}{bc}"))?.ok_or_else(not_a_timestamp)?;
    let time = time_micros(time)?;
    // Checked: the date's range reaches past what microseconds in an i64 can hold.
    i64::from(days)
        .checked_mul(86_400_000_000)
        .and_then(|m| m.checked_add(time))
        .and_then(|m| m.checked_sub(offset_secs * 1_000_000))
        .map(Some)
        .ok_or_else(|| format!("{} is out of range", preview(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type, Float32Type, Int32Type, Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    #[test]
    fn types_map_as_documented() {
        assert_eq!(iceberg_type(23, "integer"), PrimitiveType::Int);
        assert_eq!(iceberg_type(20, "bigint"), PrimitiveType::Long);
        assert_eq!(
            iceberg_type(1700, "numeric(12,2)"),
            PrimitiveType::Decimal { precision: 12, scale: 2 }
        );
        assert_eq!(iceberg_type(1700, "numeric(10)"), PrimitiveType::Decimal { precision: 10, scale: 0 });
        assert_eq!(iceberg_type(1700, "numeric"), PrimitiveType::String);
        assert_eq!(iceberg_type(1700, "numeric(50,2)"), PrimitiveType::String);
        assert_eq!(iceberg_type(1184, "timestamp with time zone"), PrimitiveType::Timestamptz);
        assert_eq!(iceberg_type(3802, "jsonb"), PrimitiveType::String);
        assert_eq!(iceberg_type(1007, "integer[]"), PrimitiveType::String);
    }

    #[test]
    fn text_forms_parse_exactly() {
        assert_eq!(decimal("-12.5", 8, 2).unwrap(), Some(-1250));
        assert_eq!(decimal("12345678901234567890.12", 38, 2).unwrap(), Some(1234567890123456789012));
        assert_eq!(decimal("NaN", 8, 2).unwrap(), None);
        assert_eq!(decimal("0.00", 3, 2).unwrap(), Some(0));
        assert!(decimal("1.234", 8, 2).is_err());
        assert!(decimal("123.4", 4, 2).is_err());
        assert_eq!(date_days("1970-01-01").unwrap(), Some(0));
        assert_eq!(date_days("2026-02-03").unwrap(), Some(20487));
        assert_eq!(date_days("1969-12-31").unwrap(), Some(-1));
        assert_eq!(date_days("0001-01-01").unwrap(), Some(-719162));
        // 1 BC is the proleptic year 0, a leap year.
        assert_eq!(date_days("0001-01-01 BC").unwrap(), Some(-719162 - 366));
        assert_eq!(date_days("infinity").unwrap(), None);
        assert_eq!(time_micros("23:59:59.5").unwrap(), 86_399_500_000);
        assert_eq!(
            timestamp_micros("2026-02-03 02:05:06.789+00").unwrap(),
            Some(20487 * 86_400_000_000 + (2 * 3600 + 5 * 60 + 6) * 1_000_000 + 789_000)
        );
        assert_eq!(
            timestamp_micros("2026-02-03 04:05:06+02").unwrap(),
            timestamp_micros("2026-02-03 02:05:06+00").unwrap()
        );
        assert_eq!(
            timestamp_micros("2026-02-03 04:05:06+05:30").unwrap(),
            timestamp_micros("2026-02-02 22:35:06+00").unwrap()
        );
        assert_eq!(hex_bytes("\\x00ff10").unwrap(), vec![0, 255, 16]);
        assert_eq!(uuid_bytes("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap()[0], 0xa0);
    }

    /// Whatever a change-log row holds, reading it is an error, not a panic.
    #[test]
    fn malformed_values_are_errors_not_panics() {
        for text in ["\\xé1", "\\x€€", "\\xzz", "\\x0", "\\x", "é", ""] {
            let _ = hex_bytes(text);
        }
        assert!(hex_bytes("\\xé1").is_err());
        assert_eq!(hex_bytes("\\x").unwrap(), Vec::<u8>::new());
        assert!(uuid_bytes("ééééééééééééééééa0eebc99-9c0b-4ef8").is_err());
        assert!(uuid_bytes("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380aé").is_err());
        for text in [
            "9223372036854775807-01-01", "-5-01-01", "2026-13-01", "2026-00-10", "2026-01-99", "2026-01", "x",
            "1-1-1-1", "9999999-01-01",
        ] {
            assert!(date_days(text).is_err(), "{text}");
        }
        for text in ["9223372036854775807:00:00", "25:00:00", "-1:00:00", "12:60:00", "1:2", "1:2:3:4", "10:00:00.é"] {
            assert!(time_micros(text).is_err(), "{text}");
        }
        for text in [
            "5000000-01-01 00:00:00+00", "2026-01-01 00:00:00+99", "2026-01-01 00:00:00+", "2026-01-01 é", "2026-01-01",
            "2026-01-01 00:00:00+00:99", "é é",
        ] {
            assert!(timestamp_micros(text).is_err(), "{text}");
        }
        assert!(timestamp_micros("0044-03-15 12:00:00+00 BC").unwrap().unwrap() < 0);
        assert!(decimal("1é", 8, 2).is_err());
        assert!(decimal("-", 8, 2).is_err());
        assert!(decimal(&"9".repeat(100), 38, 0).is_err());
        // A long value is cut in the message, at a character boundary.
        let long = "é".repeat(10_000);
        assert!(hex_bytes(&long).unwrap_err().len() < 200);
    }

    #[test]
    fn numerics_arrow_cannot_hold_are_strings() {
        assert_eq!(iceberg_type(1700, "numeric(2,5)"), PrimitiveType::String);
        assert_eq!(iceberg_type(1700, "numeric(5,-2)"), PrimitiveType::String);
        assert_eq!(iceberg_type(1700, "numeric(0,0)"), PrimitiveType::String);
    }

    /// A change of table `t` from its feed JSON (without the table).
    fn change(mut json: Value) -> Change {
        json["table"] = json!("t");
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn changes_become_changelog_rows() {
        let columns: Vec<SourceColumn> = serde_json::from_value(json!([
            {"name": "id", "type": "integer", "typeOid": 23, "attnum": 1, "nullable": false},
            {"name": "price", "type": "numeric(8,2)", "typeOid": 1700, "attnum": 3, "nullable": true},
            {"name": "born", "type": "date", "typeOid": 1082, "attnum": 4, "nullable": true},
        ]))
        .unwrap();
        let schema = changelog_schema(&columns, &[1, 3, 4], CHANGELOG_FIELD_IDS).unwrap();
        assert_eq!(schema.field_by_name("price").unwrap().id, 3);
        assert_eq!(schema.field_by_name("_lsn").unwrap().id, LSN_FIELD_ID);
        let changes = [
            json!({"lsn": 7, "xid": 740, "commitTs": "2026-02-03 02:05:06.789+00", "op": "insert",
                   "new": {"id": 1, "price": "19.99", "born": "2000-01-01"}, "old": null}),
            json!({"lsn": 8, "xid": 741, "commitTs": "2026-02-03 02:05:07+00", "op": "delete",
                   "new": null, "old": {"id": 1, "price": null, "born": null}}),
            json!({"lsn": 9, "xid": 742, "commitTs": "2026-02-03 02:05:08+00", "op": "truncate",
                   "new": null, "old": null}),
        ];
        let changes: Vec<Change> = changes.into_iter().map(change).collect();
        let batch = record_batch(&schema, &changes.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let id = batch.column_by_name("id").unwrap().as_primitive::<Int32Type>();
        assert_eq!((id.value(0), id.value(1), id.is_null(2)), (1, 1, true));
        let price = batch.column_by_name("price").unwrap().as_primitive::<Decimal128Type>();
        assert_eq!((price.value(0), price.is_null(1)), (1999, true));
        let born = batch.column_by_name("born").unwrap().as_primitive::<Date32Type>();
        assert_eq!(born.value(0), 10957);
        let op = batch.column_by_name("_op").unwrap().as_string::<i32>();
        assert_eq!((op.value(0), op.value(1), op.value(2)), ("insert", "delete", "truncate"));
        let lsn = batch.column_by_name("_lsn").unwrap().as_primitive::<Int64Type>();
        assert_eq!(lsn.values().to_vec(), vec![7, 8, 9]);
        let ts = batch.column_by_name("_commit_ts").unwrap().as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(1) - ts.value(0), 211_000);
    }

    #[test]
    fn values_that_do_not_fit_are_errors_not_silent_losses() {
        let columns: Vec<SourceColumn> = serde_json::from_value(json!([
            {"name": "n", "type": "numeric(4,1)", "typeOid": 1700, "attnum": 1}]))
        .unwrap();
        let schema = changelog_schema(&columns, &[1], CHANGELOG_FIELD_IDS).unwrap();
        let change = change(json!({"lsn": 1, "xid": 1, "commitTs": "2026-01-01 00:00:00+00", "op": "insert",
                                   "new": {"n": "1.25"}, "old": null}));
        let err = record_batch(&schema, &[&change]).unwrap_err();
        assert!(err.to_string().contains("column n"), "{err}");
    }

    #[test]
    fn pgvector_columns_are_lists_of_floats_and_other_extension_types_text() {
        let columns: Vec<SourceColumn> = serde_json::from_value(json!([
            {"name": "id", "type": "integer", "typeOid": 23, "attnum": 1},
            {"name": "v", "type": "public.vector(3)", "typeOid": 16500, "attnum": 2, "extension": "vector"},
            {"name": "h", "type": "halfvec", "typeOid": 16600, "attnum": 3, "extension": "vector"},
            {"name": "tags", "type": "hstore", "typeOid": 16700, "attnum": 4, "extension": "hstore"},
            // A type of the tenant's own by the same name is not pgvector's.
            {"name": "fake", "type": "vector", "typeOid": 16800, "attnum": 5},
        ]))
        .unwrap();
        let schema = changelog_schema(&columns, &[1, 2, 3, 4, 5], CHANGELOG_FIELD_IDS).unwrap();
        let Type::List(list) = schema.field_by_name("v").unwrap().field_type.as_ref() else { panic!("v is not a list") };
        assert_eq!(*list.element_field.field_type, Type::Primitive(PrimitiveType::Float));
        assert!(list.element_field.required);
        assert!(matches!(schema.field_by_name("h").unwrap().field_type.as_ref(), Type::List(_)));
        for name in ["tags", "fake"] {
            assert_eq!(*schema.field_by_name(name).unwrap().field_type, Type::Primitive(PrimitiveType::String), "{name}");
        }
        let change = change(json!({"lsn": 1, "xid": 1, "commitTs": "2026-01-01 00:00:00+00", "op": "insert",
            "new": {"id": 1, "v": "[1,2.5,-3e-05]", "h": null, "tags": "\"a\"=>\"1\"", "fake": "anything"}, "old": null}));
        let batch = record_batch(&schema, &[&change]).unwrap();
        let v = batch.column_by_name("v").unwrap().as_list::<i32>();
        assert_eq!(v.value(0).as_primitive::<Float32Type>().values().to_vec(), vec![1.0, 2.5, -3e-05]);
        assert!(batch.column_by_name("h").unwrap().is_null(0));
        assert_eq!(batch.column_by_name("tags").unwrap().as_string::<i32>().value(0), "\"a\"=>\"1\"");
        for bad in ["1,2,3", "[1,x]", "[1,2"] {
            let change = change_with(bad);
            let err = record_batch(&schema, &[&change]).unwrap_err();
            assert!(err.to_string().contains("column v"), "{bad}: {err}");
        }
        assert_eq!(floats("[]").unwrap(), Vec::<f32>::new());
    }

    fn change_with(v: &str) -> Change {
        change(json!({"lsn": 2, "xid": 2, "commitTs": "2026-01-01 00:00:00+00", "op": "insert", "new": {"id": 2, "v": v}, "old": null}))
    }
}
