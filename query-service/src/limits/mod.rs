//! What one query may take, and the refusals past it: memory (one DataFusion
//! memory pool for every query of the service), time (a deadline from the
//! moment a query arrives to its last row), buckets of `growth` and
//! `activity`, and the rows and bytes of an answer. Each refusal names its
//! limit and the setting that changes it.

pub mod buckets;
pub mod functions;

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::error::QueryError;

/// The limits of the query service, each a setting of `tidelake serve`
/// (docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes DataFusion's operators (sorts, joins, aggregates, and the
    /// functions whose output size the query chooses) may hold at once,
    /// across every running query (`--query-memory`).
    pub memory: usize,
    /// Longest a query may take, planning to last row (`--query-timeout`).
    pub timeout: Duration,
    /// Most instants one `growth` or `activity` series may have (`--query-max-buckets`).
    pub max_buckets: u64,
    /// Most rows in one HTTP answer (`--query-max-result-rows`).
    pub max_result_rows: u64,
    /// Most bytes in one HTTP answer, as encoded (`--query-max-result-bytes`).
    pub max_result_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 512 << 20,
            timeout: Duration::from_secs(30),
            max_buckets: 10_000,
            max_result_rows: 1_000_000,
            max_result_bytes: 64 << 20,
        }
    }
}

/// The service's memory pool: fair between operators that can spill to
/// disk (a sort spills rather than fail), first come for those that cannot
/// (a join's build side), with the top consumers and the limit named in
/// its refusals.
pub(crate) fn runtime(limits: &Limits) -> Arc<RuntimeEnv> {
    let top = NonZeroUsize::new(3).expect("non-zero");
    let pool = ServicePool { inner: TrackConsumersPool::new(FairSpillPool::new(limits.memory), top), limit: limits.memory };
    Arc::new(RuntimeEnv { memory_pool: Arc::new(pool), ..RuntimeEnv::default() })
}

#[derive(Debug)]
struct ServicePool {
    inner: TrackConsumersPool<FairSpillPool>,
    limit: usize,
}

impl MemoryPool for ServicePool {
    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> datafusion::error::Result<()> {
        self.inner.try_grow(reservation, additional).map_err(|e| match e {
            DataFusionError::ResourcesExhausted(detail) => DataFusionError::ResourcesExhausted(format!(
                "the query needs more memory than the query service's limit of {} (--query-memory, shared by \
                 the queries running at once): {detail}",
                size(self.limit as u64)
            )),
            other => other,
        })
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// `512 MiB`, `64 MB`, `1000 bytes`: a size as it was most likely written.
pub fn size(bytes: u64) -> String {
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b % 1_000_000_000 == 0 => format!("{} GB", b / 1_000_000_000),
        b if b % 1_000_000 == 0 => format!("{} MB", b / 1_000_000),
        b if b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// When a query must have ended: its timeout from the moment it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    pub fn start(timeout: Duration) -> Self {
        // A timeout too long to add to now is as good as none.
        let at = Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 32));
        Self { at, timeout }
    }

    /// Run `work` (planning, starting) until the deadline; past it the work
    /// is dropped, which cancels it.
    pub async fn run<T>(&self, work: impl Future<Output = Result<T, QueryError>>) -> Result<T, QueryError> {
        tokio::time::timeout_at(self.at, work).await.map_err(|_| QueryError::Timeout(self.timeout))?
    }

    /// The rows of `stream` until the deadline; then a [`QueryError::Timeout`]
    /// and the end, the query's stream dropped: that stops its operators
    /// and the tasks they spawned.
    pub fn bound(&self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(Bounded {
            schema: stream.schema(),
            inner: Some(stream),
            sleep: Box::pin(tokio::time::sleep_until(self.at)),
            timeout: self.timeout,
        })
    }
}

struct Bounded {
    schema: SchemaRef,
    inner: Option<SendableRecordBatchStream>,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl Stream for Bounded {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.inner = None;
            return Poll::Ready(Some(Err(QueryError::Timeout(this.timeout).into())));
        }
        let next = inner.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None)) {
            this.inner = None;
        }
        next
    }
}

impl RecordBatchStream for Bounded {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The rows and bytes an answer has taken so far, refused past the caps as
/// soon as they are passed, so that no more of it is read.
#[derive(Debug)]
pub struct ResultBudget {
    max_rows: u64,
    max_bytes: u64,
    rows: u64,
}

impl ResultBudget {
    pub fn new(limits: &Limits) -> Self {
        Self { max_rows: limits.max_result_rows, max_bytes: limits.max_result_bytes, rows: 0 }
    }

    /// Count `n` more rows.
    pub fn rows(&mut self, n: usize) -> Result<(), QueryError> {
        self.rows = self.rows.saturating_add(n as u64);
        if self.rows > self.max_rows {
            return Err(QueryError::ResultTooLarge(format!(
                "the answer has more than {} rows, the most one answer may have (--query-max-result-rows): \
                 aggregate, filter or add a LIMIT",
                self.max_rows
            )));
        }
        Ok(())
    }

    /// The rows counted so far.
    pub fn row_count(&self) -> u64 {
        self.rows
    }

    /// Check the answer's size so far, `bytes` in `encoding`.
    pub fn bytes(&self, bytes: usize, encoding: &str) -> Result<(), QueryError> {
        if bytes as u64 > self.max_bytes {
            return Err(QueryError::ResultTooLarge(format!(
                "the answer is larger than {} as {encoding}, the most one answer may take \
                 (--query-max-result-bytes): aggregate, filter or add a LIMIT",
                size(self.max_bytes)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    #[test]
    fn sizes_read_as_written() {
        assert_eq!(size(512 << 20), "512 MiB");
        assert_eq!(size(64_000_000), "64 MB");
        assert_eq!(size(1500), "1500 bytes");
    }

    #[test]
    fn the_budget_refuses_past_either_cap() {
        let limits = Limits { max_result_rows: 10, max_result_bytes: 100, ..Limits::default() };
        let mut budget = ResultBudget::new(&limits);
        budget.rows(10).unwrap();
        let err = budget.rows(1).unwrap_err();
        assert_eq!(err.code(), "result_too_large");
        assert!(err.to_string().contains("more than 10 rows") && err.to_string().contains("--query-max-result-rows"), "{err}");
        budget.bytes(100, "JSON").unwrap();
        let err = budget.bytes(101, "JSON").unwrap_err();
        assert!(err.to_string().contains("larger than 100 bytes as JSON") && err.to_string().contains("--query-max-result-bytes"), "{err}");
    }

    #[tokio::test]
    async fn a_stream_past_its_deadline_ends_in_a_timeout_and_is_dropped() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        // One batch, then nothing for ever.
        let endless = futures::stream::once(async move { Ok::<_, DataFusionError>(batch) }).chain(futures::stream::pending());
        let deadline = Deadline::start(Duration::from_millis(200));
        let mut stream = deadline.bound(Box::pin(RecordBatchStreamAdapter::new(schema, endless)));
        assert_eq!(stream.next().await.unwrap().unwrap().num_rows(), 1);
        let err = QueryError::from(stream.next().await.unwrap().unwrap_err());
        assert_eq!(err.code(), "query_timeout");
        assert!(err.to_string().contains("200ms (--query-timeout)"), "{err}");
        assert!(stream.next().await.is_none());
    }
}
