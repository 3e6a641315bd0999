//! Sessions: each client session owns a DataFusion `SessionContext` (its catalog) and a
//! [`FaiscaConfig`].

use std::sync::Arc;

use crate::logical_codec::{DriverLogicalCodec, SourceRegistry};
use datafusion::catalog::{TableProvider, TableProviderFactory};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::CreateExternalTable;
use datafusion::prelude::SessionContext;
use faisca_common::locations::AllowedLocations;
use faisca_common::{FaiscaConfig, Result};
use faisca_connectors::stores::StoreRegistry;
use faisca_engine::session_config::datafusion_config;

/// A session as the actor keeps it.
#[derive(Clone)]
pub struct Session {
    /// DataFusion context: the session's catalog.
    pub ctx: SessionContext,
    /// The session's configuration (`faisca.*` and DataFusion keys set by the client or `SET`).
    pub config: FaiscaConfig,
    /// Table providers resolved for the session's DataFrames.
    pub sources: Arc<SourceRegistry>,
    /// The object stores of the session's runtime.
    pub stores: Arc<StoreRegistry>,
    /// Where it may read and write (the driver's `faisca.sql.allowedLocations`).
    pub allowed: AllowedLocations,
    /// The user who opened it (`None`: the cluster, or authentication off): its jobs and
    /// streaming queries are theirs.
    pub owner: Option<String>,
    /// How deep its plans may nest (the driver's `faisca.plan.maxDepth`, which a session's
    /// `SET` cannot change).
    pub max_plan_depth: usize,
}

impl Session {
    /// A new session with `config`.
    pub fn new(config: FaiscaConfig, allowed: AllowedLocations) -> Result<Self> {
        let stores = Arc::new(StoreRegistry::new(&config).with_allowed(allowed.clone()));
        // No listing cache: a data lake changes between queries (our own writes among others),
        // and Spark lists a path each time it is read. DataFusion's default cache never expires.
        let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(stores.clone())
            .with_cache_manager(caches)
            .build_arc()?;
        let mut state = SessionStateBuilder::new()
            .with_config(datafusion_config(&config)?)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_query_planner(Arc::new(faisca_engine::streaming_plan::FaiscaQueryPlanner))
            .with_optimizer_rules(faisca_engine::session_config::optimizer_rules())
            .with_physical_optimizer_rules(
                faisca_engine::filter_pushdown::physical_optimizer_rules(),
            )
            .build();
        faisca_engine::udf::add_registered(&mut state)?;
        state.table_factories_mut().insert(
            faisca_engine::kafka::KAFKA_FORMAT.to_string(),
            Arc::new(faisca_engine::kafka::KafkaTableFactory),
        );
        // Every table factory checks the location (and a Kafka table its brokers) first.
        for factory in state.table_factories_mut().values_mut() {
            *factory = Arc::new(AllowedTables {
                inner: factory.clone(),
                allowed: allowed.clone(),
            });
        }
        Ok(Session {
            ctx: SessionContext::new_with_state(state),
            config,
            sources: Arc::new(SourceRegistry::default()),
            stores,
            owner: None,
            allowed,
            max_plan_depth: FaiscaConfig::default().plan_max_depth(),
        })
    }

    /// The codec for DataFrame plans exchanged with this session's client.
    pub fn codec(&self) -> DriverLogicalCodec {
        DriverLogicalCodec {
            sources: self.sources.clone(),
        }
    }
}

/// A table factory that refuses a location, or Kafka brokers, outside the driver's
/// `faisca.sql.allowedLocations` before its inner factory sees the table.
#[derive(Debug)]
struct AllowedTables {
    inner: Arc<dyn TableProviderFactory>,
    allowed: AllowedLocations,
}

#[async_trait::async_trait]
impl TableProviderFactory for AllowedTables {
    async fn create(
        &self,
        state: &dyn datafusion::catalog::Session,
        command: &CreateExternalTable,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let checked = if command
            .file_type
            .eq_ignore_ascii_case(faisca_engine::kafka::KAFKA_FORMAT)
        {
            self.allowed.check_kafka_options(
                command
                    .options
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
        } else {
            // A DNS lookup of http(s) hosts: off the async workers.
            let (allowed, locations) = (self.allowed.clone(), command.locations.clone());
            tokio::task::spawn_blocking(move || {
                locations
                    .iter()
                    .try_for_each(|location| allowed.check_url(location, "table location"))
            })
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
        };
        checked.map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
        self.inner.create(state, command).await
    }
}
