//! File scans of a plan, and re-grouping their files into task splits.

use std::sync::Arc;

use std::collections::HashMap;

use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use faisca_common::Result;
use faisca_connectors::splits::FilePiece;
use faisca_engine::scan_files::file_scan_config;

/// One file scan found in a plan.
#[derive(Debug, Clone)]
pub struct FileScan {
    /// The store the files are in.
    pub object_store_url: ObjectStoreUrl,
    /// The format (`parquet`, `csv`, `json`, ...).
    pub file_type: String,
    /// Every file of the scan, whole (any ranges DataFusion set are dropped).
    pub files: Vec<PartitionedFile>,
}

/// The file scans of `plan`.
pub fn file_scans(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<FileScan>> {
    let mut scans = Vec::new();
    plan.clone().transform_up(|node| {
        if let Some(config) = file_scan_config(&node) {
            let mut files: Vec<PartitionedFile> = Vec::new();
            for group in &config.file_groups {
                for f in group.iter() {
                    // DataFusion may already have split a file into ranges; take each file once.
                    if !files
                        .iter()
                        .any(|g| g.object_meta.location == f.object_meta.location)
                    {
                        let mut whole = f.clone();
                        whole.range = None;
                        files.push(whole);
                    }
                }
            }
            scans.push(FileScan {
                object_store_url: config.object_store_url.clone(),
                file_type: config.file_source().file_type().to_string(),
                files,
            });
        }
        Ok(Transformed::no(node))
    })?;
    Ok(scans)
}

/// Identifies a scan by its store and the set of files it reads.
pub type ScanKey = (String, Vec<String>);

impl FileScan {
    /// This scan's key.
    pub fn key(&self) -> ScanKey {
        scan_key(self.object_store_url.as_str(), self.files.iter())
    }
}

fn scan_key<'a>(url: &str, files: impl Iterator<Item = &'a PartitionedFile>) -> ScanKey {
    let mut paths: Vec<String> = files.map(|f| f.object_meta.location.to_string()).collect();
    paths.sort();
    paths.dedup();
    (url.to_string(), paths)
}

/// A physical optimizer rule, placed before every other rule, that gives each file scan the task
/// splits computed for it (one file group per task). Running first matters: DataFusion's
/// distribution rules then see the real number of partitions (a one-file table split into four
/// tasks gets a partial and a final aggregation, not a single-partition one).
#[derive(Debug, Default)]
pub struct ApplySplits {
    splits: HashMap<ScanKey, Vec<Vec<FilePiece>>>,
}

impl ApplySplits {
    /// A rule applying `splits` to the scans with those keys.
    pub fn new(splits: HashMap<ScanKey, Vec<Vec<FilePiece>>>) -> Self {
        ApplySplits { splits }
    }
}

impl PhysicalOptimizerRule for ApplySplits {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rewritten = plan.transform_up(|node| {
            let Some(config) = file_scan_config(&node) else {
                return Ok(Transformed::no(node));
            };
            let key = scan_key(
                config.object_store_url.as_str(),
                config.file_groups.iter().flat_map(|g| g.iter()),
            );
            let Some(tasks) = self.splits.get(&key).filter(|t| !t.is_empty()) else {
                return Ok(Transformed::no(node));
            };
            let originals: HashMap<String, &PartitionedFile> = config
                .file_groups
                .iter()
                .flat_map(|g| g.iter())
                .map(|f| (f.object_meta.location.to_string(), f))
                .collect();
            let mut groups = Vec::with_capacity(tasks.len());
            for task in tasks {
                let mut files = Vec::with_capacity(task.len());
                for piece in task {
                    let Some(original) = originals.get(&piece.path) else {
                        return Err(DataFusionError::Internal(format!(
                            "split of unknown file {}",
                            piece.path
                        )));
                    };
                    let mut file = (*original).clone();
                    file.range = None;
                    if !piece.is_whole_file() {
                        file = file.with_range(piece.range.start as i64, piece.range.end as i64);
                    }
                    files.push(file);
                }
                groups.push(FileGroup::new(files));
            }
            let kept: std::collections::HashSet<&str> =
                tasks.iter().flatten().map(|p| p.path.as_str()).collect();
            let mut builder = FileScanConfigBuilder::from(config.clone()).with_file_groups(groups);
            if kept.len() < originals.len() {
                // Files were left out (uncommitted writes): the listed statistics overcount.
                let schema = config.file_source().table_schema().table_schema().clone();
                builder = builder.with_statistics(Statistics::new_unknown(&schema));
            }
            let new_config = builder.build();
            Ok(Transformed::yes(
                DataSourceExec::from_data_source(new_config) as Arc<dyn ExecutionPlan>,
            ))
        })?;
        Ok(rewritten.data)
    }

    fn name(&self) -> &str {
        "faisca_apply_splits"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
