//! Fetching a task attempt's log lines from the executor that ran it, for the web UI: a Flight
//! `DoGet` of a task log ticket (see `faisca_executor::task_logs`), answered with one batch of
//! lines whose schema metadata counts the lines not kept.

use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use faisca_common::{Error, Result};
use faisca_engine::shuffle::FlightClients;
use faisca_proto::{TaskLogTicket, ticket};
use faisca_ui::tasklog::{TaskLogFetcher, TaskLogLines, TaskLogRequest};
use futures::{FutureExt, StreamExt, TryStreamExt};

/// A fetcher that asks executors through `clients`.
pub fn fetcher(clients: Arc<FlightClients>) -> TaskLogFetcher {
    Arc::new(move |request| {
        let clients = clients.clone();
        async move { fetch(&clients, request).await.map_err(|e| e.to_string()) }.boxed()
    })
}

async fn fetch(clients: &FlightClients, request: TaskLogRequest) -> Result<TaskLogLines> {
    let what = format!(
        "the log of task {}/{}/{} attempt {} from executor {} at {}",
        request.job_uuid,
        request.stage,
        request.partition,
        request.attempt,
        request.executor_id,
        request.executor_address
    );
    let mut client = clients.client(&request.executor_address)?;
    let ticket = faisca_proto::encode_ticket(ticket::Kind::TaskLog(TaskLogTicket {
        job_id: request.job_uuid.clone(),
        stage_id: request.stage,
        partition: request.partition,
        attempt: request.attempt,
    }));
    let response = client
        .do_get(Ticket { ticket })
        .await
        .map_err(|s| faisca_proto::error_from_status(&s, &what))?;
    let mut stream = FlightRecordBatchStream::new_from_flight_data(
        response.into_inner().map_err(FlightError::from),
    );
    let mut lines = TaskLogLines::default();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Error::external(format!("reading {what}: {e}")))?;
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::internal(format!("{what}: expected a Utf8 column of lines")))?;
        lines
            .lines
            .extend((0..column.len()).map(|i| column.value(i).to_string()));
        if let Some(dropped) = batch
            .schema()
            .metadata()
            .get(faisca_proto::TASK_LOG_LINES_DROPPED)
        {
            lines.dropped = dropped.parse().unwrap_or(0);
        }
    }
    Ok(lines)
}
