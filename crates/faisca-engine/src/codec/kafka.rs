//! Kafka scans on the wire: a planned [`KafkaScanExec`] ⇄ the `KafkaScanNode` message (the
//! read options and each task's offset ranges; the full options stay on the driver).

use std::sync::Arc;

use datafusion::error::Result as DfResult;
use datafusion::physical_plan::ExecutionPlan;
use faisca_common::Error;
use faisca_connectors::kafka::options::ReadOptions;
use faisca_connectors::kafka::{KnownEnds, OffsetRange, TopicPartition};

use crate::kafka::KafkaScanExec;

/// A planned scan as its wire message.
pub fn encode(scan: &KafkaScanExec) -> DfResult<faisca_proto::KafkaScanNode> {
    if !scan.is_planned() {
        return Err(Error::internal(
            "a Kafka scan was sent to executors before its ranges were planned",
        )
        .into());
    }
    Ok(faisca_proto::KafkaScanNode {
        key: scan.key().to_string(),
        kafka_params: scan
            .read_options()
            .kafka_params
            .clone()
            .into_iter()
            .collect(),
        include_headers: scan.read_options().include_headers,
        fail_on_data_loss: scan.read_options().fail_on_data_loss,
        poll_timeout_ms: scan.read_options().poll_timeout.as_millis() as u64,
        read_ahead_ranges: scan.read_options().read_ahead as u32,
        has_projection: scan.projection().is_some(),
        projection: scan
            .projection()
            .iter()
            .flat_map(|p| p.iter())
            .map(|c| *c as u32)
            .collect(),
        tasks: scan
            .tasks()
            .iter()
            .map(|ranges| faisca_proto::KafkaTask {
                ranges: ranges
                    .iter()
                    .map(|r| faisca_proto::KafkaOffsetRange {
                        topic: r.topic.clone(),
                        partition: r.partition,
                        start: r.start,
                        end: r.end,
                    })
                    .collect(),
            })
            .collect(),
        count_null_keys: scan.counts_null_keys(),
        known_ends: scan
            .known_ends()
            .iter()
            .map(|(tp, end)| faisca_proto::KafkaPartitionEnd {
                topic: tp.topic.clone(),
                partition: tp.partition,
                end: *end,
            })
            .collect(),
    })
}

/// The scan a wire message describes.
pub fn decode(node: faisca_proto::KafkaScanNode) -> DfResult<Arc<dyn ExecutionPlan>> {
    let read = ReadOptions {
        kafka_params: node.kafka_params.into_iter().collect(),
        include_headers: node.include_headers,
        fail_on_data_loss: node.fail_on_data_loss,
        poll_timeout: std::time::Duration::from_millis(node.poll_timeout_ms),
        read_ahead: node.read_ahead_ranges as usize,
    };
    let projection = node
        .has_projection
        .then(|| node.projection.iter().map(|c| *c as usize).collect());
    let tasks = node
        .tasks
        .into_iter()
        .map(|t| {
            t.ranges
                .into_iter()
                .map(|r| OffsetRange {
                    topic: r.topic,
                    partition: r.partition,
                    start: r.start,
                    end: r.end,
                })
                .collect()
        })
        .collect();
    let known_ends: KnownEnds = node
        .known_ends
        .into_iter()
        .map(|e| {
            let partition = TopicPartition {
                topic: e.topic,
                partition: e.partition,
            };
            (partition, e.end)
        })
        .collect();
    let scan = KafkaScanExec::planned(node.key, read, projection, tasks)?;
    Ok(Arc::new(
        scan.counting_null_keys(node.count_null_keys)
            .with_known_ends(Arc::new(known_ends)),
    ))
}
