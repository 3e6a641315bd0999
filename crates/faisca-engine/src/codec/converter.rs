//! [`FaiscaConverter`]: datafusion-proto's encoding of every node, plus what that encoding drops.
//!
//! datafusion-proto 55 loses a few properties of DataFusion's own operators and expressions on the
//! way (`IGNORE NULLS` and the reversal of window functions, the number of grouping sets of an
//! aggregate without grouping expressions, a cast's target field). Each such node travels as a
//! `PatchedNode` (an expression as a `PatchedExpr`): the node as datafusion-proto encodes it, and
//! beside it what it dropped ([`super::patches`]). Decoding applies the patch to what
//! datafusion-proto decoded. Everything else is datafusion-proto's own
//! encoding, with [`super::FaiscaCodec`] for Faísca's nodes.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::error::Result as DfResult;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::from_proto::parse_physical_expr_with_converter;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr_with_converter;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalPlanNodeExt,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use datafusion_proto::protobuf::{PhysicalExprNode, PhysicalExtensionNode, PhysicalPlanNode};
use faisca_proto::{ExtensionNode, extension_node};
use prost::Message;

use super::patches;

/// Check that an Arrow IPC stream's messages fit in its bytes, and that none is compressed,
/// before arrow reads it: arrow's reader allocates what a message's header says its body holds,
/// and what a compressed buffer says it holds uncompressed, so a stream that lies would make the
/// process allocate without bound.
pub fn check_ipc_stream(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut at = 0usize;
    while at < bytes.len() {
        let word = |at: usize| -> std::result::Result<i32, String> {
            let four = bytes
                .get(at..at + 4)
                .ok_or_else(|| format!("a message header cut off at byte {at}"))?;
            Ok(i32::from_le_bytes([four[0], four[1], four[2], four[3]]))
        };
        let mut length = word(at)?;
        at += 4;
        if length == -1 {
            // The continuation marker, then the metadata's length.
            length = word(at)?;
            at += 4;
        }
        if length == 0 {
            return Ok(()); // end of stream
        }
        let length = usize::try_from(length)
            .map_err(|_| format!("a negative metadata length at byte {at}"))?;
        let metadata = bytes.get(at..at.saturating_add(length)).ok_or_else(|| {
            format!(
                "metadata of {length} bytes at byte {at} past the end ({} bytes)",
                bytes.len()
            )
        })?;
        let message = arrow::ipc::root_as_message(metadata)
            .map_err(|e| format!("unreadable message metadata at byte {at}: {e}"))?;
        // A compressed buffer starts with its uncompressed length, which arrow allocates as
        // told; DataFusion writes in-memory scans uncompressed, so a compressed one is refused.
        let compressed = message
            .header_as_record_batch()
            .is_some_and(|batch| batch.compression().is_some())
            || message
                .header_as_dictionary_batch()
                .and_then(|dictionary| dictionary.data())
                .is_some_and(|batch| batch.compression().is_some());
        if compressed {
            return Err(format!(
                "a compressed batch at byte {at} (in-memory scans travel uncompressed)"
            ));
        }
        at += length;
        let body = usize::try_from(message.bodyLength())
            .map_err(|_| format!("a negative body length at byte {at}"))?;
        if body > bytes.len() - at {
            return Err(format!(
                "a message body of {body} bytes at byte {at}, past the end ({} bytes)",
                bytes.len()
            ));
        }
        at += body;
    }
    Ok(())
}

/// Faísca's datafusion-proto converter (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct FaiscaConverter;

impl PhysicalProtoConverterExtension for FaiscaConverter {
    fn proto_to_execution_plan(
        &self,
        proto: &PhysicalPlanNode,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(PhysicalPlanType::Extension(extension)) = &proto.physical_plan_type
            && extension.inputs.is_empty()
            && let Ok(ExtensionNode {
                node: Some(extension_node::Node::Patched(patched)),
            }) = ExtensionNode::decode(extension.node.as_slice())
        {
            return patches::decode(&patched, ctx, self);
        }
        if let Some(PhysicalPlanType::MemoryScan(scan)) = &proto.physical_plan_type {
            for (i, partition) in scan.partitions.iter().enumerate() {
                check_ipc_stream(partition).map_err(|why| {
                    datafusion::error::DataFusionError::Plan(format!(
                        "malformed in-memory scan partition {i}: {why}"
                    ))
                })?;
            }
        }
        proto.try_into_physical_plan_with_context(ctx, self)
    }

    fn execution_plan_to_proto(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DfResult<PhysicalPlanNode> {
        if super::is_extension_node(plan) {
            // datafusion-proto encodes an extension node's children without this converter
            // (so without their patches): encode them here.
            let mut node = Vec::new();
            codec.try_encode(Arc::clone(plan), &mut node, self)?;
            let inputs = plan
                .children()
                .into_iter()
                .map(|child| self.execution_plan_to_proto(child, codec))
                .collect::<DfResult<Vec<_>>>()?;
            return Ok(PhysicalPlanNode {
                physical_plan_type: Some(PhysicalPlanType::Extension(PhysicalExtensionNode {
                    node,
                    inputs,
                })),
            });
        }
        let node =
            PhysicalPlanNode::try_from_physical_plan_with_converter(Arc::clone(plan), codec, self)?;
        patches::encode(plan, node, codec, self)
    }

    fn proto_to_physical_expr(
        &self,
        proto: &PhysicalExprNode,
        input_schema: &Schema,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        if let Some(patched) = patches::patched_expr(proto) {
            return patches::decode_expr(&patched, input_schema, ctx, self);
        }
        parse_physical_expr_with_converter(proto, input_schema, ctx, self)
    }

    fn physical_expr_to_proto(
        &self,
        expr: &Arc<dyn PhysicalExpr>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DfResult<PhysicalExprNode> {
        let node = serialize_physical_expr_with_converter(expr, codec, self)?;
        patches::encode_expr(expr, node)
    }
}

#[cfg(test)]
mod ipc_tests {
    use super::check_ipc_stream;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::writer::StreamWriter;
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    fn stream() -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..1000))],
        )
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &schema).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        bytes
    }

    #[test]
    fn a_stream_whose_messages_claim_more_than_it_holds_is_refused() {
        let bytes = stream();
        assert_eq!(check_ipc_stream(&bytes), Ok(()));
        assert_eq!(check_ipc_stream(&[]), Ok(()));
        // The batch's body cut short: its header still claims all of it.
        let cut = &bytes[..bytes.len() - 4000];
        let why = check_ipc_stream(cut).unwrap_err();
        assert!(why.contains("past the end"), "{why}");
        assert!(check_ipc_stream(&[0xff, 0xff, 0xff, 0xff, 0x10]).is_err());
        // Compressed buffers say how much to allocate: refused (found by the stage plan fuzzer:
        // an 8 GiB allocation).
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..10))],
        )
        .unwrap();
        let options = arrow::ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME))
            .unwrap();
        let mut compressed = Vec::new();
        let mut writer =
            StreamWriter::try_new_with_options(&mut compressed, &schema, options).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        let why = check_ipc_stream(&compressed).unwrap_err();
        assert!(why.contains("compressed"), "{why}");
        assert!(check_ipc_stream(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x80]).is_err());
    }
}
