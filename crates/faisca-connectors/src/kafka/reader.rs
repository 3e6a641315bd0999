//! Reads a task's offset ranges into Arrow batches of Spark's Kafka schema.
//!
//! Each range is read with `assign()` at its start offset (no consumer group), or by a kept
//! consumer already positioned there (the previous micro-batch's reader of the partition gave it
//! back where its range ended: see [`super::consumer_pool`]). A range ends by offset, never by
//! count: it is done at the first record at or past its end, or when the partition reports its
//! end with the consumer's position at or past it — so transaction markers and aborted records
//! (skipped under `read_committed`) never make a task wait or read more. A partition end short of
//! the range is checked against the partition's high watermark before it counts as lost records:
//! a positioned consumer may still hold the end its last reader reached. A retried task reads
//! exactly the same records. Payloads are copied once, from librdkafka's buffers straight into
//! the Arrow builders.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, RecordBatch,
    RecordBatchOptions, StringBuilder, StructBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use faisca_common::locations::AllowedLocations;
use faisca_common::{Error, Result};
use futures::{FutureExt, StreamExt};
use rdkafka::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message, Timestamp};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::broker::consumer_config;
use super::client::{self, ClientWatch, guarded_by_watch};
use super::consumer_pool::{self, PooledConsumer, Position, Taken};
use super::options::ReadOptions;
use super::schema::{header_fields, headers_type, kafka_schema};
use super::{KnownEnds, OffsetRange, TopicPartition};

/// Spark's `timestampType` for a record without a timestamp, and its `timestamp` (ms).
/// `faisca.kafka.maxHeadersPerRecord`'s default, for readers built without a configuration.
pub const DEFAULT_MAX_HEADERS: usize = 1000;
/// How often a reader waiting for records looks whether its client was refused a login or a
/// broker.
const REFUSAL_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
const NO_TIMESTAMP_TYPE: i32 = -1;
const NO_TIMESTAMP_MS: i64 = -1;

/// One column being built, by its index in the full schema.
enum ColumnBuilder {
    Key(BinaryBuilder),
    Value(BinaryBuilder),
    Topic(StringBuilder),
    Partition(Int32Builder),
    Offset(Int64Builder),
    Timestamp(TimestampMicrosecondBuilder),
    TimestampType(Int32Builder),
    Headers(ListBuilder<StructBuilder>),
}

impl ColumnBuilder {
    fn new(column: usize, capacity: usize) -> ColumnBuilder {
        match column {
            0 => ColumnBuilder::Key(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            1 => ColumnBuilder::Value(BinaryBuilder::with_capacity(capacity, capacity * 128)),
            2 => ColumnBuilder::Topic(StringBuilder::with_capacity(capacity, capacity * 16)),
            3 => ColumnBuilder::Partition(Int32Builder::with_capacity(capacity)),
            4 => ColumnBuilder::Offset(Int64Builder::with_capacity(capacity)),
            5 => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            6 => ColumnBuilder::TimestampType(Int32Builder::with_capacity(capacity)),
            _ => {
                let entries = StructBuilder::new(
                    header_fields(),
                    vec![
                        Box::new(StringBuilder::new()),
                        Box::new(BinaryBuilder::new()),
                    ],
                );
                let DataType::List(item) = headers_type() else {
                    unreachable!("the headers column is a list")
                };
                ColumnBuilder::Headers(ListBuilder::new(entries).with_field(item))
            }
        }
    }

    fn append(&mut self, message: &BorrowedMessage<'_>) {
        match self {
            ColumnBuilder::Key(b) => b.append_option(message.key()),
            ColumnBuilder::Value(b) => b.append_option(message.payload()),
            ColumnBuilder::Topic(b) => b.append_value(message.topic()),
            ColumnBuilder::Partition(b) => b.append_value(message.partition()),
            ColumnBuilder::Offset(b) => b.append_value(message.offset()),
            ColumnBuilder::Timestamp(b) => {
                let ms = match message.timestamp() {
                    Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
                    Timestamp::NotAvailable => NO_TIMESTAMP_MS,
                };
                b.append_value(ms.saturating_mul(1000));
            }
            ColumnBuilder::TimestampType(b) => b.append_value(match message.timestamp() {
                Timestamp::CreateTime(_) => 0,
                Timestamp::LogAppendTime(_) => 1,
                Timestamp::NotAvailable => NO_TIMESTAMP_TYPE,
            }),
            ColumnBuilder::Headers(b) => match message.headers() {
                Some(headers) if headers.count() > 0 => {
                    let entries = b.values();
                    for header in headers.iter() {
                        entries
                            .field_builder::<StringBuilder>(0)
                            .expect("header key builder")
                            .append_value(header.key);
                        entries
                            .field_builder::<BinaryBuilder>(1)
                            .expect("header value builder")
                            .append_option(header.value);
                        entries.append(true);
                    }
                    b.append(true);
                }
                _ => b.append_null(),
            },
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Key(b) | ColumnBuilder::Value(b) => Arc::new(b.finish()),
            ColumnBuilder::Topic(b) => Arc::new(b.finish()),
            ColumnBuilder::Partition(b) | ColumnBuilder::TimestampType(b) => Arc::new(b.finish()),
            ColumnBuilder::Offset(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Headers(b) => Arc::new(b.finish()),
        }
    }
}

fn lost(range: &OffsetRange, from: i64, to: i64, why: &str) -> Error {
    Error::user(format!(
        "Kafka partition {}-{}: records [{from}, {to}) of this task's range [{}, {}) are gone ({why}): set 'failOnDataLoss' to 'false' to skip lost records",
        range.topic, range.partition, range.start, range.end
    ))
}

/// librdkafka's callbacks for range readers: a partition's end is how ranges finish, not an
/// error worth a log line; a refused login or broker is kept (the reader stops with it rather
/// than wait for records that cannot come); other client errors are logged as warnings (the
/// reader itself reports what stops a task).
#[derive(Debug)]
pub struct ReaderContext {
    watch: ClientWatch,
}

impl ReaderContext {
    /// A context holding the client's connections to `allowed`.
    pub fn new(allowed: &AllowedLocations) -> Self {
        ReaderContext {
            watch: ClientWatch::new(allowed.clone()),
        }
    }
}

guarded_by_watch!(ReaderContext);

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            tracing::trace!("librdkafka: {error}: {reason}");
        } else if self.watch.observe(&error, reason) {
            tracing::debug!("librdkafka: {error}: {reason}");
        } else {
            tracing::warn!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// The range being read and the next offset expected.
struct Cursor {
    range: OffsetRange,
    next: i64,
    /// A partition end short of the range was found to be an earlier one (read on once).
    early_end_seen: bool,
}

/// A range assigned ahead of its turn: its consumer is fetching already.
struct Ahead {
    range: OffsetRange,
    consumer: PooledConsumer,
    /// The consumer stood at the range's start when taken (no assignment was made).
    positioned: bool,
}

/// Reads a task's ranges, one after the other, each with a consumer from the process's pool;
/// up to `readAheadRanges` of the next ranges are assigned early, so their first fetches
/// overlap the reading of the current one.
pub struct RangeReader {
    /// The current range's consumer.
    consumer: Option<PooledConsumer>,
    read: ReadOptions,
    /// Ranges assigned ahead, in reading order (before `pending`).
    ahead: VecDeque<Ahead>,
    /// Ranges not started yet.
    pending: VecDeque<OffsetRange>,
    current: Option<Cursor>,
    /// Where the consumer stands after its range ended with nothing past it taken: it can serve
    /// the reader of the partition's next range without being assigned again.
    ended_at: Option<Position>,
    columns: Vec<usize>,
    schema: SchemaRef,
    batch_size: usize,
    last_error: Option<String>,
    /// Ranges read by a consumer already positioned at their start.
    continued: usize,
    /// Where partitions ended when the ranges were planned.
    known_ends: Arc<KnownEnds>,
    /// The most headers a record read with its headers may carry
    /// (`faisca.kafka.maxHeadersPerRecord`).
    max_headers: usize,
    /// Where its consumers may connect (the driver's `faisca.sql.allowedLocations`).
    allowed: AllowedLocations,
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        self.release();
        // Ranges assigned ahead and never read: their consumers go back where they stood.
        while let Some(ahead) = self.ahead.pop_front() {
            if self.last_error.is_none() && Arc::strong_count(&ahead.consumer) == 1 {
                let at = ahead.positioned.then(|| Position {
                    topic: ahead.range.topic.clone(),
                    partition: ahead.range.partition,
                    next: ahead.range.start,
                });
                consumer_pool::give_back(&self.read, &self.allowed, ahead.consumer, at);
            }
        }
    }
}

impl std::fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader")
            .field("pending", &self.pending)
            .finish()
    }
}

fn servers(read: &ReadOptions) -> &str {
    read.kafka_params
        .get("bootstrap.servers")
        .map(String::as_str)
        .unwrap_or_default()
}

impl RangeReader {
    /// A reader of `ranges` producing the columns `projection` picks from the source schema
    /// (all when `None`), `batch_size` rows at most per batch. Must be called within a Tokio
    /// runtime.
    pub fn new(
        read: &ReadOptions,
        ranges: Vec<OffsetRange>,
        projection: Option<&[usize]>,
        batch_size: usize,
    ) -> Result<RangeReader> {
        let full = kafka_schema(read.include_headers);
        let columns: Vec<usize> = match projection {
            Some(p) => p.to_vec(),
            None => (0..full.fields().len()).collect(),
        };
        if let Some(bad) = columns.iter().find(|c| **c >= full.fields().len()) {
            return Err(Error::internal(format!(
                "Kafka scan projection names column {bad} of a {}-column schema",
                full.fields().len()
            )));
        }
        let schema = Arc::new(full.project(&columns)?);
        Ok(RangeReader {
            consumer: None,
            read: read.clone(),
            ahead: VecDeque::new(),
            pending: ranges.into_iter().filter(|r| !r.is_empty()).collect(),
            current: None,
            ended_at: None,
            columns,
            schema,
            batch_size: batch_size.max(1),
            last_error: None,
            continued: 0,
            known_ends: Arc::default(),
            max_headers: DEFAULT_MAX_HEADERS,
            allowed: AllowedLocations::default(),
        })
    }

    /// This reader, told where partitions ended when its ranges were planned (a streaming
    /// micro-batch): a consumer whose range ended short of its partition's known end is kept
    /// positioned for the partition's next range, which then reads on from what it prefetched.
    /// Without this (batch reads), or at a partition's end, consumers go back unassigned — an
    /// assigned consumer at the end of a log keeps fetching, and a broker that does not hold
    /// empty fetches (noida-db) answers at once, again and again.
    pub fn with_known_ends(mut self, known_ends: Arc<KnownEnds>) -> RangeReader {
        self.known_ends = known_ends;
        self
    }

    /// This reader, its consumers held to `allowed` wherever librdkafka connects (without it:
    /// every broker but link-local and cloud metadata addresses).
    pub fn with_allowed(mut self, allowed: AllowedLocations) -> RangeReader {
        self.allowed = allowed;
        self
    }

    /// This reader, failing on a record with more than `max` headers when it reads headers.
    pub fn with_max_headers(mut self, max: usize) -> RangeReader {
        self.max_headers = max;
        self
    }

    /// How many of the ranges read so far went on from a consumer positioned at their start.
    pub fn ranges_continued(&self) -> usize {
        self.continued
    }

    /// Gives the current consumer back to the pool (positioned where its range ended cleanly,
    /// else unassigned) unless it saw an error or a lookup still holds it.
    fn release(&mut self) {
        let at = self.ended_at.take().filter(|at| {
            let partition = TopicPartition {
                topic: at.topic.clone(),
                partition: at.partition,
            };
            self.known_ends
                .get(&partition)
                .is_some_and(|end| *end > at.next)
        });
        if let Some(consumer) = self.consumer.take()
            && self.last_error.is_none()
            && Arc::strong_count(&consumer) == 1
        {
            consumer_pool::give_back(&self.read, &self.allowed, consumer, at);
        }
    }

    /// A consumer for `range`, and whether it already stands at the range's start.
    fn consumer_for(&self, range: &OffsetRange) -> Result<(PooledConsumer, bool)> {
        let want = Position {
            topic: range.topic.clone(),
            partition: range.partition,
            next: range.start,
        };
        Ok(
            match consumer_pool::take(&self.read, &self.allowed, &want) {
                Some(Taken::Positioned(consumer)) => (consumer, true),
                Some(Taken::ToAssign(consumer)) => (consumer, false),
                None => {
                    let consumer: StreamConsumer<ReaderContext> = client::create(
                        &consumer_config(&self.read)?,
                        ReaderContext::new(&self.allowed),
                    )
                    .map_err(|e| {
                        Error::user(format!(
                            "cannot create a Kafka client for '{}': {e}",
                            servers(&self.read)
                        ))
                    })?;
                    (Arc::new(consumer), false)
                }
            },
        )
    }

    fn consumer(&self) -> Result<&PooledConsumer> {
        self.consumer
            .as_ref()
            .ok_or_else(|| Error::internal("a Kafka range is read without a consumer"))
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn assign(&self, range: &OffsetRange, offset: i64) -> Result<()> {
        self.assign_on(self.consumer()?, range, offset)
    }

    fn assign_on(&self, consumer: &PooledConsumer, range: &OffsetRange, offset: i64) -> Result<()> {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition_offset(&range.topic, range.partition, Offset::Offset(offset))
            .map_err(|e| Error::internal(format!("{range}: {e}")))?;
        consumer.assign(&tpl).map_err(|e| {
            Error::external(format!(
                "Kafka partition {}-{} at '{}': cannot start reading at offset {offset}: {e}",
                range.topic,
                range.partition,
                servers(&self.read)
            ))
        })
    }

    /// The consumer's position in the current range's partition.
    fn position(&self, range: &OffsetRange) -> Option<i64> {
        let positions = self.consumer.as_ref()?.position().ok()?;
        let elem = positions.find_partition(&range.topic, range.partition)?;
        match elem.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// The first and next offsets of `range`'s partition, asked of its leader (`doing` says why,
    /// for the error).
    async fn watermarks(&self, range: &OffsetRange, doing: &str) -> Result<(i64, i64)> {
        let consumer = self.consumer()?.clone();
        let (topic, partition) = (range.topic.clone(), range.partition);
        let timeout = self.read.poll_timeout;
        tokio::task::spawn_blocking(move || consumer.fetch_watermarks(&topic, partition, timeout))
            .await
            .map_err(|e| Error::internal(format!("offset lookup task: {e}")))?
            .map_err(|e| {
                Error::external(format!(
                    "Kafka partition {}-{}: {doing}: {e}",
                    range.topic, range.partition
                ))
            })
    }

    /// Records of the current range were deleted: fail, or move on to what is left.
    async fn offset_out_of_range(&mut self) -> Result<()> {
        let Some(cursor) = self.current.as_ref() else {
            return Ok(());
        };
        if self.read.fail_on_data_loss {
            return Err(lost(
                &cursor.range,
                cursor.next,
                cursor.range.end,
                "the log no longer holds them, e.g. deleted by retention",
            ));
        }
        let (earliest, _) = self
            .watermarks(&cursor.range, "looking up its first offset")
            .await?;
        tracing::warn!(range = %cursor.range, skipped_to = earliest, "Kafka records lost, skipped (failOnDataLoss=false)");
        if earliest >= cursor.range.end {
            self.range_done(false);
        } else {
            let next = earliest.max(cursor.next);
            let range = cursor.range.clone();
            self.assign(&range, next)?;
            self.current = Some(Cursor {
                range,
                next,
                early_end_seen: false,
            });
        }
        Ok(())
    }

    /// The next batch; `None` once every range is read.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut builders: Vec<ColumnBuilder> = self
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(*c, self.batch_size))
            .collect();
        let mut rows = 0usize;
        // The poll timeout counts from the last progress (a record or a partition's end), so
        // errors arriving now and then (a broker that went away) cannot keep a task waiting.
        // The clock is read only when the stream has nothing ready.
        let mut deadline = tokio::time::Instant::now() + self.read.poll_timeout;
        let mut progressed = false;
        while rows < self.batch_size {
            if self.current.is_none() && !self.start_next_range()? {
                break;
            }
            // One range at a time, each maybe with its own consumer.
            let consumer = self.consumer()?.clone();
            let mut stream = consumer.stream();
            while rows < self.batch_size && self.current.is_some() {
                let event = match stream.next().now_or_never() {
                    Some(event) => event,
                    None => {
                        if progressed {
                            deadline = tokio::time::Instant::now() + self.read.poll_timeout;
                            progressed = false;
                        }
                        self.wait_for_event(&consumer, &mut stream, deadline)
                            .await?
                    }
                };
                let Some(event) = event else {
                    return Err(Error::internal("the Kafka message stream ended"));
                };
                progressed |= matches!(event, Ok(_) | Err(KafkaError::PartitionEOF(_)));
                match event {
                    Ok(message) => {
                        self.check_headers(&message)?;
                        if self.take(&message, &mut builders) {
                            rows += 1;
                        }
                    }
                    Err(KafkaError::PartitionEOF(partition)) => {
                        self.partition_ended(partition).await?
                    }
                    Err(e) => self.consumer_error(e).await?,
                }
            }
        }
        if rows == 0 && self.current.is_none() && self.ahead.is_empty() && self.pending.is_empty() {
            return Ok(None);
        }
        let columns: Vec<ArrayRef> = builders.iter_mut().map(ColumnBuilder::finish).collect();
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        Ok(Some(batch))
    }

    /// Start reading the next range — with the consumer assigned ahead for it, the one left
    /// where the previous range of its partition ended, or one the pool positioned there, else
    /// one assigned now — and assign ranges ahead; false when no range is left.
    fn start_next_range(&mut self) -> Result<bool> {
        let range = match self.ahead.pop_front() {
            Some(ahead) => {
                self.release();
                self.consumer = Some(ahead.consumer);
                if ahead.positioned {
                    self.continued += 1;
                }
                ahead.range
            }
            None => {
                let Some(range) = self.pending.pop_front() else {
                    return Ok(false);
                };
                let positioned_here = self.ended_at.as_ref().is_some_and(|at| {
                    at.topic == range.topic
                        && at.partition == range.partition
                        && at.next == range.start
                });
                if !positioned_here {
                    self.release();
                    let (consumer, positioned) = self.consumer_for(&range)?;
                    if !positioned {
                        self.assign_on(&consumer, &range, range.start)?;
                    }
                    self.consumer = Some(consumer);
                    if positioned {
                        self.continued += 1;
                    }
                }
                range
            }
        };
        self.ended_at = None;
        self.current = Some(Cursor {
            next: range.start,
            range,
            early_end_seen: false,
        });
        self.assign_ahead()?;
        Ok(true)
    }

    /// Assigns the next pending ranges, up to `readAheadRanges` of them, each to its own
    /// consumer. Stops at a range of a partition being read or assigned already: that one goes
    /// on from its partition's consumer in its turn.
    fn assign_ahead(&mut self) -> Result<()> {
        while self.ahead.len() < self.read.read_ahead {
            let Some(range) = self.pending.pop_front() else {
                break;
            };
            let same_partition =
                |r: &OffsetRange| r.partition == range.partition && r.topic == range.topic;
            if self
                .current
                .as_ref()
                .is_some_and(|c| same_partition(&c.range))
                || self.ahead.iter().any(|a| same_partition(&a.range))
            {
                self.pending.push_front(range);
                break;
            }
            let (consumer, positioned) = self.consumer_for(&range)?;
            if !positioned {
                self.assign_on(&consumer, &range, range.start)?;
            }
            self.ahead.push_back(Ahead {
                range,
                consumer,
                positioned,
            });
        }
        Ok(())
    }

    /// The current range is done: its consumer stands at `next` with nothing past it taken when
    /// `clean`, so it can go on with the partition's next range.
    fn range_done(&mut self, clean: bool) {
        let cursor = self.current.take();
        self.ended_at = cursor.filter(|_| clean).map(|c| Position {
            topic: c.range.topic,
            partition: c.range.partition,
            next: c.range.end,
        });
    }

    /// Append `message` to the batch if it is the current range's next record; true if it was.
    /// Records of earlier ranges (still in flight) and before the cursor are skipped.
    /// Refuse a record carrying more headers than the reader takes, when it reads headers.
    fn check_headers(&self, message: &BorrowedMessage<'_>) -> Result<()> {
        if !self.read.include_headers {
            return Ok(());
        }
        let count = message.headers().map_or(0, |h| h.count());
        if count <= self.max_headers {
            return Ok(());
        }
        Err(Error::user(format!(
            "Kafka record {}-{} at offset {} has {count} headers, more than faisca.kafka.maxHeadersPerRecord ({}): raise the limit, or read the topic without 'includeHeaders'",
            message.topic(),
            message.partition(),
            message.offset(),
            self.max_headers
        )))
    }

    fn take(&mut self, message: &BorrowedMessage<'_>, builders: &mut [ColumnBuilder]) -> bool {
        let Some(cursor) = self.current.as_mut() else {
            return false;
        };
        if message.partition() != cursor.range.partition || message.topic() != cursor.range.topic {
            return false;
        }
        let offset = message.offset();
        if offset < cursor.next {
            return false;
        }
        if offset >= cursor.range.end {
            // A record past the range was taken from the consumer's queue.
            self.range_done(false);
            return false;
        }
        for b in builders.iter_mut() {
            b.append(message);
        }
        cursor.next = offset + 1;
        if cursor.next >= cursor.range.end {
            self.range_done(true);
        }
        true
    }

    /// The current range's partition reached its end: done if the range is; else the end may be
    /// one a positioned consumer reached before this range was planned — the partition's high
    /// watermark tells — or records of the range are gone (an error unless `failOnDataLoss` is
    /// false).
    async fn partition_ended(&mut self, partition: i32) -> Result<()> {
        let Some(cursor) = &self.current else {
            return Ok(());
        };
        if partition != cursor.range.partition {
            return Ok(());
        }
        let (range, next, early_end_seen) =
            (cursor.range.clone(), cursor.next, cursor.early_end_seen);
        let position = self.position(&range).unwrap_or(next).max(next);
        if position >= range.end {
            self.range_done(true);
            return Ok(());
        }
        let (_, high) = self
            .watermarks(
                &range,
                &format!("looking up its end after it reported offset {position}"),
            )
            .await?;
        if high >= range.end {
            if early_end_seen {
                return Err(Error::external(format!(
                    "Kafka partition {}-{} at '{}' reports its end at offset {position} again while its high watermark is {high}",
                    range.topic,
                    range.partition,
                    servers(&self.read)
                )));
            }
            tracing::debug!(%range, position, high, "an earlier end of the partition, read on");
            if let Some(cursor) = self.current.as_mut() {
                cursor.early_end_seen = true;
            }
            return Ok(());
        }
        if self.read.fail_on_data_loss {
            return Err(lost(
                &range,
                position.max(high),
                range.end,
                &format!("the partition now ends at offset {}", position.max(high)),
            ));
        }
        tracing::warn!(%range, end = high, "Kafka partition shorter than planned, records skipped (failOnDataLoss=false)");
        self.range_done(false);
        Ok(())
    }

    /// A consumer error: offsets gone from the log are checked against the range, credentials
    /// and authorisation failures end the task (the user's to fix), anything else is left to
    /// librdkafka's retries, bounded by the poll timeout.
    async fn consumer_error(&mut self, e: KafkaError) -> Result<()> {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                self.offset_out_of_range().await
            }
            Some(RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::Authentication) => {
                Err(super::security::login_refused(
                    servers(&self.read),
                    &self.read.kafka_params,
                    &e.to_string(),
                ))
            }
            Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                let what = self
                    .current
                    .as_ref()
                    .map(|c| format!("Kafka partition {}-{}", c.range.topic, c.range.partition))
                    .unwrap_or_else(|| "Kafka".to_string());
                Err(Error::user(format!(
                    "{what} at '{}' may not be read by {} (TOPIC_AUTHORIZATION_FAILED: {e}): ask for read access to the topic (a Kafka ACL), or log in as a user who has it",
                    servers(&self.read),
                    super::security::principal(&self.read.kafka_params)
                )))
            }
            _ => {
                if let Some(c) = &self.current {
                    tracing::debug!(range = %c.range, error = %e, "Kafka consumer error");
                }
                self.last_error = Some(e.to_string());
                Ok(())
            }
        }
    }

    /// The consumer's next event, waiting until `deadline`; a refused login or broker ends the
    /// wait (librdkafka reports them to the context, and no record would come). Looked at before
    /// each wait and every [`REFUSAL_CHECK_INTERVAL`] of it, so that a stream of other errors
    /// cannot hide one.
    async fn wait_for_event<'c>(
        &self,
        consumer: &'c PooledConsumer,
        stream: &mut rdkafka::consumer::MessageStream<'c, ReaderContext>,
        deadline: tokio::time::Instant,
    ) -> Result<Option<KafkaResult<BorrowedMessage<'c>>>> {
        loop {
            if let Some(refused) = consumer
                .context()
                .watch
                .refused_error(servers(&self.read), &self.read.kafka_params)
            {
                return Err(refused);
            }
            let tick = (tokio::time::Instant::now() + REFUSAL_CHECK_INTERVAL).min(deadline);
            match tokio::time::timeout_at(tick, stream.next()).await {
                Ok(event) => return Ok(event),
                Err(_) if tick >= deadline => return Err(self.timed_out()),
                Err(_) => {}
            }
        }
    }

    fn timed_out(&self) -> Error {
        let (what, next) = match &self.current {
            Some(c) => (c.range.to_string(), c.next),
            None => ("a range".to_string(), -1),
        };
        let last = self
            .last_error
            .as_deref()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        Error::external(format!(
            "Kafka brokers at '{}' sent no record for {what} at offset {next} within {} ms ('kafkaConsumer.pollTimeoutMs'){last}",
            servers(&self.read),
            self.read.poll_timeout.as_millis()
        ))
    }
}
