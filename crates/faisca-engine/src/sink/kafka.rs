//! The task side of a Kafka write: the stage's batches → records, through one producer per task
//! (`faisca_connectors::kafka::sink`). The task ends only when every record was confirmed; the
//! driver has nothing to publish afterwards (records are visible to consumers once sent), so a
//! Kafka write is at-least-once: a retried task sends its records again.

use faisca_common::locations::AllowedLocations;
use faisca_common::{Error, Result};
use faisca_connectors::kafka::sink::{SinkColumns, SinkOptions, TaskProducer};
use futures::StreamExt;

use datafusion::execution::SendableRecordBatchStream;

/// The sink's options as a launch carries them.
pub fn to_proto(options: &SinkOptions) -> faisca_proto::KafkaSink {
    faisca_proto::KafkaSink {
        topic: options.topic.clone().unwrap_or_default(),
        producer: options
            .producer
            .iter()
            .map(|(k, v)| faisca_proto::ConfigEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// The sink's options from a launch.
pub fn from_proto(sink: &faisca_proto::KafkaSink) -> SinkOptions {
    SinkOptions {
        topic: (!sink.topic.is_empty()).then(|| sink.topic.clone()),
        producer: sink
            .producer
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
    }
}

/// Send every row of `stream` as a record, connecting only to brokers `allowed` allows (the
/// driver's `faisca.sql.allowedLocations`); returns how many the brokers confirmed.
pub async fn send_task(
    mut stream: SendableRecordBatchStream,
    sink: &faisca_proto::KafkaSink,
    allowed: &AllowedLocations,
) -> Result<u64> {
    let options = from_proto(sink);
    let columns = SinkColumns::of(stream.schema().as_ref())?;
    let mut producer = TaskProducer::new(&options, allowed)?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::from)?;
        producer.send_batch(&batch, &columns).await?;
    }
    producer.finish().await
}
