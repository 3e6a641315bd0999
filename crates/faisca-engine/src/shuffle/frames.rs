//! Arrow IPC stream bytes → Flight messages, without decoding the batches.
//!
//! An IPC stream is a sequence of encapsulated messages: `0xFFFFFFFF`, a little-endian `i32`
//! metadata length, the flatbuffer `Message` (padded), then `bodyLength` bytes of body. A length of
//! zero ends the stream. A Flight `FlightData` carries exactly one such message: `data_header` is the
//! flatbuffer, `data_body` the body. Compressed buffers stay compressed; the receiver's decoder
//! reads the compression from the message.

use arrow::ipc::root_as_message;
use arrow_flight::FlightData;
use bytes::Bytes;
use faisca_common::{Error, Result};

const CONTINUATION: u32 = 0xFFFF_FFFF;

/// Split IPC stream bytes (one or more complete streams back to back) into Flight messages.
/// `keep_schema` decides whether schema messages are passed on (only the first stream's schema is
/// needed by a receiver that reads several streams as one).
pub fn ipc_to_flight_data(
    bytes: &Bytes,
    mut keep_schema: impl FnMut() -> bool,
) -> Result<Vec<FlightData>> {
    let bad = |what: &str| Error::internal(format!("malformed shuffle data: {what}"));
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let word = |at: usize| -> Result<u32> {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .ok_or_else(|| bad("truncated message prefix"))
        };
        let mut len = word(pos)?;
        pos += 4;
        if len == CONTINUATION {
            len = word(pos)?;
            pos += 4;
        }
        if len == 0 {
            continue; // end of one stream; another may follow
        }
        let meta_end = pos + len as usize;
        let meta = bytes
            .get(pos..meta_end)
            .ok_or_else(|| bad("truncated metadata"))?;
        let message =
            root_as_message(meta).map_err(|e| bad(&format!("invalid message flatbuffer: {e}")))?;
        let body_len =
            usize::try_from(message.bodyLength()).map_err(|_| bad("negative body length"))?;
        let is_schema = message.header_type() == arrow::ipc::MessageHeader::Schema;
        let body_end = meta_end + body_len;
        if body_end > bytes.len() {
            return Err(bad("truncated body"));
        }
        if !is_schema || keep_schema() {
            out.push(FlightData {
                data_header: bytes.slice(pos..meta_end),
                data_body: bytes.slice(meta_end..body_end),
                ..Default::default()
            });
        }
        pos = body_end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
    use arrow::record_batch::RecordBatch;
    use arrow_flight::decode::FlightRecordBatchStream;
    use futures::TryStreamExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn frames_decode_as_flight() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["x", "y", "z"])),
            ],
        )
        .unwrap();
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME))
            .unwrap();
        let mut bytes = Vec::new();
        for _ in 0..2 {
            let mut w =
                StreamWriter::try_new_with_options(Vec::new(), &schema, options.clone()).unwrap();
            w.write(&batch).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
            bytes.extend(w.into_inner().unwrap());
        }
        let mut first = true;
        let frames =
            ipc_to_flight_data(&Bytes::from(bytes), || std::mem::take(&mut first)).unwrap();
        assert_eq!(frames.len(), 5);
        let stream = futures::stream::iter(frames.into_iter().map(Ok));
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(batches.len(), 4);
        assert_eq!(batches[3], batch);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(
            ipc_to_flight_data(
                &Bytes::from_static(b"\xff\xff\xff\xff\x10\x00\x00\x00abc"),
                || true
            )
            .is_err()
        );
    }
}
