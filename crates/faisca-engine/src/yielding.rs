//! Prompt cancellation of running tasks.
//!
//! An executor cancels a task by aborting its tokio task, which takes effect when the task next
//! yields (`Poll::Pending`). A DataFusion plan whose inputs are always ready (in-memory shuffle
//! input, cached file pages) may run an aggregation or a join with no output for a long time
//! without yielding once. [`yield_at_leaves`] wraps every leaf of a task's plan in a
//! [`YieldingExec`] whose stream yields before each batch after the first, so a task stops within
//! one batch's worth of work after it is cancelled. A yield is a wake-up and a re-poll: far
//! cheaper than the work a batch carries.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{RecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::Stream;

/// Wrap every leaf of `plan` in a [`YieldingExec`].
pub fn yield_at_leaves(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if node.children().is_empty() {
            Ok(Transformed::yes(
                Arc::new(YieldingExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        } else {
            Ok(Transformed::no(node))
        }
    })
    .map(|t| t.data)
}

/// Passes its input's batches through, yielding to the runtime before each one after the first.
/// Added by the executor after decoding a stage; never serialized.
#[derive(Debug)]
pub struct YieldingExec {
    input: Arc<dyn ExecutionPlan>,
}

impl YieldingExec {
    /// Wrap `input`.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        YieldingExec { input }
    }
}

impl DisplayAs for YieldingExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "YieldingExec")
    }
}

impl ExecutionPlan for YieldingExec {
    fn name(&self) -> &str {
        "YieldingExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(YieldingExec::new(input))),
            _ => Err(DataFusionError::Internal(
                "YieldingExec has exactly one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        Ok(Box::pin(YieldingStream {
            input: self.input.execute(partition, context)?,
            yield_next: false,
        }))
    }
}

struct YieldingStream {
    input: SendableRecordBatchStream,
    yield_next: bool,
}

impl Stream for YieldingStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = self.input.as_mut().poll_next(cx);
        if matches!(next, Poll::Ready(Some(_))) {
            self.yield_next = true;
        }
        next
    }
}

impl RecordBatchStream for YieldingStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_plan::collect;

    #[tokio::test]
    async fn leaves_yield_between_batches_and_pass_every_batch() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let batch = |v: i32| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(vec![v]))]).unwrap()
        };
        let source =
            MemorySourceConfig::try_new_exec(&[vec![batch(1), batch(2), batch(3)]], schema, None)
                .unwrap();
        let plan = yield_at_leaves(source).unwrap();
        assert_eq!(plan.name(), "YieldingExec");
        let ctx = Arc::new(TaskContext::default());
        let mut stream = plan.execute(0, ctx.clone()).unwrap();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            stream.as_mut().poll_next(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        // Before the second batch the stream yields once.
        assert!(stream.as_mut().poll_next(&mut cx).is_pending());
        assert!(matches!(
            stream.as_mut().poll_next(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        let rows: usize = collect(plan, ctx)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 3);
    }
}
