//! An answer's encodings over HTTP — JSON, CSV, an Arrow IPC stream —
//! written as the query's batches arrive and refused as soon as the answer
//! passes its caps: the rest of the query is never read (dropping its stream
//! stops it), so a request holds at most the byte cap and a slice of a batch.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, LargeListArray, ListArray, RecordBatch, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::WriterBuilder as JsonWriterBuilder;
use datafusion::arrow::json::writer::{JsonArray, Writer as JsonWriter};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::QueryError;
use crate::limits::{Limits, ResultBudget};

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The answer is checked against the byte cap after every slice of about
/// this many bytes of Arrow arrays.
const SLICE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `{"columns": [{"name", "type"}], "rows": [{…}], "rowCount": n}`.
    Json,
    Csv,
    ArrowStream,
}

impl Encoding {
    /// The encoding an `Accept` header asks for (JSON unless it names another).
    pub fn from_accept(accept: &str) -> Self {
        if accept.contains(ARROW_STREAM) {
            Self::ArrowStream
        } else if accept.contains("text/csv") {
            Self::Csv
        } else {
            Self::Json
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv",
            Self::ArrowStream => ARROW_STREAM,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Csv => "CSV",
            Self::ArrowStream => "an Arrow stream",
        }
    }
}

/// Read `stream` to its end into `encoding`, within the caps of `limits`.
pub async fn encode(
    mut stream: SendableRecordBatchStream,
    encoding: Encoding,
    limits: &Limits,
) -> Result<Vec<u8>, QueryError> {
    let schema = stream.schema();
    let mut writer = Writer::new(encoding, &schema)?;
    let mut budget = ResultBudget::new(limits);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        // Counted before any of it is encoded: a batch past the row cap is
        // refused whole.
        budget.rows(batch.num_rows())?;
        for slice in slices(&batch) {
            writer.write(&slice).map_err(internal)?;
            budget.bytes(writer.len(), encoding.name())?;
            // Encoding is work on this thread: let other tasks run between slices.
            tokio::task::coop::consume_budget().await;
        }
    }
    let bytes = writer.finish(&schema, budget.row_count()).map_err(internal)?;
    budget.bytes(bytes.len(), encoding.name())?;
    Ok(bytes)
}

fn internal(e: ArrowError) -> QueryError {
    QueryError::Internal(format!("encode the answer: {e}"))
}

/// The batch in slices of about [`SLICE_BYTES`] (at least one row each).
fn slices(batch: &RecordBatch) -> impl Iterator<Item = RecordBatch> + '_ {
    let rows = batch.num_rows();
    let per_row = batch.get_array_memory_size() / rows.max(1);
    let step = (SLICE_BYTES / per_row.max(1)).max(1);
    (0..rows).step_by(step).map(move |offset| batch.slice(offset, step.min(rows - offset)))
}

enum Writer {
    Json { writer: JsonWriter<Vec<u8>, JsonArray> },
    Csv { bytes: Vec<u8>, header: bool },
    Arrow(StreamWriter<Vec<u8>>),
}

impl Writer {
    fn new(encoding: Encoding, schema: &Schema) -> Result<Self, QueryError> {
        Ok(match encoding {
            Encoding::Json => {
                // The rows array is written after the columns, in place.
                let columns: Vec<Value> =
                    schema.fields().iter().map(|f| json!({"name": f.name(), "type": f.data_type().to_string()})).collect();
                let mut head = b"{\"columns\":".to_vec();
                serde_json::to_writer(&mut head, &columns).map_err(|e| QueryError::Internal(e.to_string()))?;
                head.extend_from_slice(b",\"rows\":");
                // NULLs are written as null, not left out.
                Self::Json { writer: JsonWriterBuilder::new().with_explicit_nulls(true).build(head) }
            }
            Encoding::Csv => Self::Csv { bytes: Vec::new(), header: true },
            Encoding::ArrowStream => Self::Arrow(StreamWriter::try_new(Vec::new(), schema).map_err(internal)?),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        match self {
            Self::Json { writer } => writer.write(&decimals_as_text(batch)?),
            Self::Csv { bytes, header } => {
                CsvWriterBuilder::new().with_header(*header).build(&mut *bytes).write(batch)?;
                *header = false;
                Ok(())
            }
            Self::Arrow(writer) => writer.write(batch),
        }
    }

    /// Bytes written so far.
    fn len(&self) -> usize {
        match self {
            Self::Json { writer } => writer.get_ref().len(),
            Self::Csv { bytes, .. } => bytes.len(),
            Self::Arrow(writer) => writer.get_ref().len(),
        }
    }

    fn finish(self, schema: &Schema, rows: u64) -> Result<Vec<u8>, ArrowError> {
        match self {
            Self::Json { mut writer } => {
                writer.finish()?;
                let mut bytes = writer.into_inner();
                bytes.extend_from_slice(format!(",\"rowCount\":{rows}}}").as_bytes());
                Ok(bytes)
            }
            // An answer without rows still names its columns.
            Self::Csv { mut bytes, header: true } => {
                let empty = RecordBatch::new_empty(std::sync::Arc::new(schema.clone()));
                CsvWriterBuilder::new().with_header(true).build(&mut bytes).write(&empty)?;
                Ok(bytes)
            }
            Self::Csv { bytes, .. } => Ok(bytes),
            Self::Arrow(writer) => writer.into_inner(),
        }
    }
}

/// The batch with every decimal — also inside structs (`table_diff`'s
/// `before`/`after`) and lists — as its exact text, every digit and the
/// scale kept (`12345678901234567890.1234567891`, `1.50`): JSON numbers are
/// read as doubles by most clients, which keep 15–17 digits. The tenant API
/// answers `numeric` the same way.
fn decimals_as_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch.schema().fields().iter().any(|f| holds_decimal(f.data_type())) {
        return Ok(batch.clone());
    }
    let columns = batch.columns().iter().map(decimal_text).collect::<Result<Vec<_>, _>>()?;
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn holds_decimal(t: &DataType) -> bool {
    match t {
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => true,
        DataType::Struct(fields) => fields.iter().any(|f| holds_decimal(f.data_type())),
        DataType::List(f) | DataType::LargeList(f) => holds_decimal(f.data_type()),
        _ => false,
    }
}

fn decimal_text(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    if !holds_decimal(array.data_type()) {
        return Ok(array.clone());
    }
    match array.data_type() {
        DataType::Struct(_) => {
            let structs = array.as_struct();
            let columns = structs.columns().iter().map(decimal_text).collect::<Result<Vec<_>, _>>()?;
            let fields: Fields = structs
                .fields()
                .iter()
                .zip(&columns)
                .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
                .collect();
            Ok(Arc::new(StructArray::try_new(fields, columns, structs.nulls().cloned())?))
        }
        DataType::List(field) => {
            let list = array.as_list::<i32>();
            let values = decimal_text(list.values())?;
            let field = Arc::new(field.as_ref().clone().with_data_type(values.data_type().clone()));
            Ok(Arc::new(ListArray::try_new(field, list.offsets().clone(), values, list.nulls().cloned())?))
        }
        DataType::LargeList(field) => {
            let list = array.as_list::<i64>();
            let values = decimal_text(list.values())?;
            let field = Arc::new(field.as_ref().clone().with_data_type(values.data_type().clone()));
            Ok(Arc::new(LargeListArray::try_new(field, list.offsets().clone(), values, list.nulls().cloned())?))
        }
        _ => cast(array, &DataType::Utf8),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Decimal128Array, Int64Array, StringArray};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::stream;

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]))
    }

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        let names: Vec<Option<String>> = ids.clone().map(|i| (i % 2 == 0).then(|| format!("n{i}"))).collect();
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from_iter_values(ids)), Arc::new(StringArray::from(names))])
            .unwrap()
    }

    /// A stream of `batches`, then (if `endless`) batches for ever, counting
    /// how many were read.
    fn source(batches: Vec<RecordBatch>, endless: bool, read: Arc<std::sync::atomic::AtomicUsize>) -> SendableRecordBatchStream {
        let more = stream::iter(std::iter::repeat_with(|| batch(0..1000)).take(if endless { usize::MAX } else { 0 }));
        let all = stream::iter(batches).chain(more).map(move |b| {
            read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, datafusion::error::DataFusionError>(b)
        });
        Box::pin(RecordBatchStreamAdapter::new(schema(), all))
    }

    #[tokio::test]
    async fn each_encoding_holds_every_row() {
        let limits = Limits::default();
        let read = Arc::new(Default::default());
        let json = encode(source(vec![batch(0..2), batch(2..3)], false, read), Encoding::Json, &limits).await.unwrap();
        let json: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            json,
            json!({"columns": [{"name": "id", "type": "Int64"}, {"name": "name", "type": "Utf8"}],
                   "rows": [{"id": 0, "name": "n0"}, {"id": 1, "name": null}, {"id": 2, "name": "n2"}],
                   "rowCount": 3})
        );
        let read = Arc::new(Default::default());
        let csv = encode(source(vec![batch(0..2), batch(2..3)], false, read), Encoding::Csv, &limits).await.unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "id,name\n0,n0\n1,\n2,n2\n");
        let read = Arc::new(Default::default());
        let empty = encode(source(vec![], false, read), Encoding::Csv, &limits).await.unwrap();
        assert_eq!(String::from_utf8(empty).unwrap(), "id,name\n");
        let read = Arc::new(Default::default());
        let empty = encode(source(vec![], false, read), Encoding::Json, &limits).await.unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&empty).unwrap()["rows"], json!([]));
        let read = Arc::new(Default::default());
        let arrow = encode(source(vec![batch(0..5000)], false, read), Encoding::ArrowStream, &limits).await.unwrap();
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None).unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 5000);
    }

    #[tokio::test]
    async fn decimals_keep_every_digit_and_their_scale_in_json() {
        let decimals = Decimal128Array::from(vec![Some(123456789012345678901234567891_i128), Some(15000), None])
            .with_precision_and_scale(30, 10)
            .unwrap();
        let decimals: ArrayRef = Arc::new(decimals);
        let after = StructArray::from(vec![(Arc::new(Field::new("amount", decimals.data_type().clone(), true)), decimals.clone())]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("amount", decimals.data_type().clone(), true),
            Field::new("after", after.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), vec![decimals, Arc::new(after)]).unwrap();
        let stream = Box::pin(RecordBatchStreamAdapter::new(schema, stream::iter(vec![Ok(batch)])));
        let json = encode(stream, Encoding::Json, &Limits::default()).await.unwrap();
        let json: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["columns"][0], json!({"name": "amount", "type": "Decimal128(30, 10)"}));
        assert_eq!(
            json["rows"],
            json!([
                {"amount": "12345678901234567890.1234567891", "after": {"amount": "12345678901234567890.1234567891"}},
                {"amount": "0.0000015000", "after": {"amount": "0.0000015000"}},
                {"amount": null, "after": {"amount": null}},
            ])
        );
    }

    #[tokio::test]
    async fn an_endless_answer_is_refused_without_reading_it_all() {
        for (limits, what) in [
            (Limits { max_result_rows: 10_000, ..Limits::default() }, "more than 10000 rows"),
            (Limits { max_result_bytes: 100_000, ..Limits::default() }, "larger than 100000 bytes"),
        ] {
            for encoding in [Encoding::Json, Encoding::Csv, Encoding::ArrowStream] {
                let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let err = encode(source(vec![], true, read.clone()), encoding, &limits).await.unwrap_err();
                assert_eq!(err.code(), "result_too_large", "{encoding:?}: {err}");
                assert!(err.to_string().contains(what), "{encoding:?}: {err}");
                // A batch is 1000 rows, 7 to 30 KB in any encoding: either cap
                // is passed within 15 batches.
                let read = read.load(std::sync::atomic::Ordering::Relaxed);
                assert!(read <= 15, "{encoding:?}: {read} batches read, on past the cap");
            }
        }
    }
}
