//! Sessions.

use std::sync::Arc;

use faisca_common::{Error, FaiscaConfig, Result};
use faisca_proto::{
    CloseSessionRequest, ClusterInfoRequest, CreateSessionRequest, ExecuteMode, ExecutorInfo,
    RegisterTableRequest, TableFormat,
};
use tokio::sync::Mutex;

use crate::logical_codec::decode_logical_plan;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use faisca_engine::session_config::datafusion_config;

use crate::client::{DriverClient, StatementResult};
use crate::local::{LocalCluster, parse_local_master};
use crate::{DataFrame, DataFrameReader};

/// Builds a [`Session`].
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    master: String,
    config: Vec<(String, String)>,
    name: String,
}

impl SessionBuilder {
    /// `local`, `local[N]`, `local[*]`, or a driver address (`faisca://host:port`, `http://host:port`).
    pub fn master(mut self, master: impl Into<String>) -> Self {
        self.master = master.into();
        self
    }

    /// Set a configuration key of the session (`faisca.*` or `datafusion.*`).
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// Set several configuration keys of the session, in order.
    pub fn configs<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.config
            .extend(pairs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Name shown in the driver's logs.
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Connect (starting the local cluster first for `local[N]`) and open the session.
    pub async fn build(self) -> Result<Session> {
        let config =
            FaiscaConfig::from_pairs(self.config.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let (address, local) = match parse_local_master(&self.master)? {
            Some(n) => {
                let cluster = LocalCluster::start(n, &config).await?;
                (cluster.driver_address().to_string(), Some(cluster))
            }
            None => (self.master.clone(), None),
        };
        let client = DriverClient::connect(&address, &config).await?;
        // How this client connects and authenticates is its own: credentials and TLS files are
        // not session settings, and must not travel on to the driver's tasks.
        let config_entries = faisca_proto::config_entries(&config)
            .into_iter()
            .filter(|e| {
                !e.key.starts_with("faisca.authenticate.") && !e.key.starts_with("faisca.ssl.")
            })
            .collect();
        let request = CreateSessionRequest {
            config: config_entries,
            client_name: self.name.clone(),
        };
        let id = client
            .control()
            .create_session(request)
            .await
            .map_err(|s| {
                faisca_proto::error_from_status(
                    &s,
                    &format!("opening a session on the driver at {address}"),
                )
            })?
            .into_inner()
            .session_id;
        let mut planner_state = SessionStateBuilder::new()
            .with_config(datafusion_config(&config)?)
            .with_default_features()
            .with_optimizer_rules(faisca_engine::session_config::optimizer_rules())
            .with_physical_optimizer_rules(
                faisca_engine::filter_pushdown::physical_optimizer_rules(),
            )
            .build();
        faisca_engine::udf::add_registered(&mut planner_state)?;
        let planner = SessionContext::new_with_state(planner_state);
        Ok(Session {
            inner: Arc::new(Inner {
                id,
                client,
                config,
                planner,
                local: Mutex::new(local),
            }),
        })
    }
}

struct Inner {
    id: String,
    client: DriverClient,
    config: FaiscaConfig,
    /// Where DataFrame plans are built: functions and options, no tables, no data.
    planner: SessionContext,
    local: Mutex<Option<LocalCluster>>,
}

/// A session on a Faísca driver. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("driver", &self.inner.client.address())
            .finish()
    }
}

impl Session {
    /// Start building a session (master `local[2]` unless set).
    pub fn builder() -> SessionBuilder {
        SessionBuilder {
            master: "local[2]".into(),
            config: Vec::new(),
            name: "faisca".into(),
        }
    }

    /// The session id on the driver.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The driver's address.
    pub fn driver_address(&self) -> &str {
        self.inner.client.address()
    }

    /// The session's configuration as given to the builder.
    pub fn config(&self) -> &FaiscaConfig {
        &self.inner.config
    }

    /// A DataFrame for one SQL statement. Commands (`CREATE`, `SET`, `DROP`, ...) run now, as in
    /// Spark; a query is planned (so errors show now), can be transformed further, and runs when
    /// its rows are asked for.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let result = self
            .inner
            .client
            .execute(&self.inner.id, sql, ExecuteMode::Analyze, "")
            .await?;
        if result.planned_only {
            return self.data_frame_from_driver(&result.logical_plan);
        }
        let schema = result.schema.clone();
        DataFrame::from_command(
            self.clone(),
            schema,
            crate::client::collect(result.batches).await?,
        )
    }

    /// Read files: `session.read().parquet(url)`, `.option("header", "true").csv(url)`, …
    pub fn read(&self) -> DataFrameReader {
        DataFrameReader::new(self.clone())
    }

    /// Read a streaming source: `session.read_stream().format("kafka").option(..).load()`.
    pub fn read_stream(&self) -> crate::streaming::DataStreamReader {
        crate::streaming::DataStreamReader::new(self.clone())
    }

    /// The driver's streaming queries (Spark's `spark.streams`).
    pub fn streams(&self) -> crate::streaming::StreamingQueryManager {
        crate::streaming::StreamingQueryManager::new(self.clone())
    }

    /// A table or view of the session's catalog.
    pub async fn table(&self, name: &str) -> Result<DataFrame> {
        let request = faisca_proto::ResolveSourceRequest {
            session_id: self.inner.id.clone(),
            table: name.to_string(),
            ..Default::default()
        };
        let plan = self.inner.client.resolve_source(request).await?;
        self.data_frame_from_driver(&plan)
    }

    /// A DataFrame of a DataFusion logical plan built on this session's DataFrames (the escape
    /// hatch back from [`DataFrame::logical_plan`]).
    pub fn data_frame(&self, plan: LogicalPlan) -> DataFrame {
        DataFrame::from_plan(self.clone(), plan)
    }

    pub(crate) fn data_frame_from_driver(&self, plan: &[u8]) -> Result<DataFrame> {
        let plan = decode_logical_plan(plan, &self.inner.planner.task_ctx())?;
        Ok(DataFrame::from_plan(self.clone(), plan))
    }

    /// The state DataFrame plans are built with.
    pub(crate) fn planner_state(&self) -> SessionState {
        self.inner.planner.state()
    }

    /// Run one SQL statement now and return its rows as a stream (one round trip to the driver).
    /// Dropping the stream before its end cancels the job.
    pub async fn execute_sql(&self, sql: &str) -> Result<StatementResult> {
        self.execute_sql_named(sql, "").await
    }

    /// [`Session::execute_sql`], naming the job it starts (shown by `faisca status`).
    pub async fn execute_sql_named(&self, sql: &str, job_name: &str) -> Result<StatementResult> {
        self.inner
            .client
            .execute(&self.inner.id, sql, ExecuteMode::Run, job_name)
            .await
    }

    /// The client of the session's driver (job status and control).
    pub fn client(&self) -> &DriverClient {
        &self.inner.client
    }

    /// The distributed plan of one SQL statement (stages, tasks, operators) as text.
    pub async fn explain_sql(&self, sql: &str) -> Result<String> {
        let result = self
            .inner
            .client
            .execute(&self.inner.id, sql, ExecuteMode::Explain, "")
            .await?;
        let batches = crate::client::collect(result.batches).await?;
        crate::dataframe::explain_text(&batches)
    }

    /// Register a Parquet file or directory (any URL the cluster's stores can read) as table `name`.
    pub async fn register_parquet(&self, name: &str, url: &str) -> Result<()> {
        let request = RegisterTableRequest {
            session_id: self.inner.id.clone(),
            name: name.to_string(),
            location: url.to_string(),
            format: TableFormat::Parquet as i32,
        };
        self.inner
            .client
            .control()
            .register_table(request)
            .await
            .map_err(|s| {
                faisca_proto::error_from_status(&s, &format!("registering table '{name}'"))
            })?;
        Ok(())
    }

    /// Wait until at least `min` executors are registered, at most `timeout`.
    pub async fn wait_for_executors(
        &self,
        min: usize,
        timeout: std::time::Duration,
    ) -> Result<Vec<ExecutorInfo>> {
        let request = ClusterInfoRequest {
            min_executors: min as u32,
        };
        let mut control = self.inner.client.control();
        let call = control.cluster_info(request);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner().executors),
            Ok(Err(s)) => Err(faisca_proto::error_from_status(
                &s,
                "asking the driver for executors",
            )),
            Err(_) => Err(Error::external(format!(
                "no executor registered with the driver at {} within {:?} (faisca.client.executorWaitTimeout); start one with `faisca executor --driver {}`",
                self.driver_address(),
                timeout,
                self.driver_address()
            ))),
        }
    }

    /// The driver's web UI (`http://127.0.0.1:4040`), when it serves one (`faisca.ui.enabled`;
    /// off by default for `local[N]`).
    pub async fn ui_url(&self) -> Result<Option<String>> {
        let mut control = self.inner.client.control();
        let response = control
            .cluster_info(ClusterInfoRequest { min_executors: 0 })
            .await
            .map_err(|s| faisca_proto::error_from_status(&s, "asking the driver for its web UI"))?;
        Ok(Some(response.into_inner().ui_url).filter(|url| !url.is_empty()))
    }

    /// Close the session; a `local[N]` cluster started by it is stopped.
    pub async fn stop(&self) {
        let _ = self
            .inner
            .client
            .control()
            .close_session(CloseSessionRequest {
                session_id: self.inner.id.clone(),
            })
            .await;
        if let Some(cluster) = self.inner.local.lock().await.take() {
            cluster.stop().await;
        }
    }
}
