//! File scans of a plan, and re-grouping their files into task splits.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::ExecutionPlan;
use faisca_common::{Error, Result};
use faisca_connectors::splits::FilePiece;

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

fn file_scan_config(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    plan.downcast_ref::<DataSourceExec>()?
        .data_source()
        .as_ref()
        .downcast_ref::<FileScanConfig>()
}

/// The file scans of `plan`, in the order [`regroup_scans`] visits them.
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

/// Give every file scan of `plan` new file groups: `splits[i]` for the i-th scan of
/// [`file_scans`], one group per task. A scan with no splits (no files) is left as it is.
pub fn regroup_scans(
    plan: Arc<dyn ExecutionPlan>,
    scans: &[FileScan],
    splits: &[Vec<Vec<FilePiece>>],
) -> Result<Arc<dyn ExecutionPlan>> {
    if scans.len() != splits.len() {
        return Err(Error::internal(format!(
            "{} scans but {} split lists",
            scans.len(),
            splits.len()
        )));
    }
    let mut index = 0usize;
    let rewritten = plan.transform_up(|node| {
        let Some(config) = file_scan_config(&node) else {
            return Ok(Transformed::no(node));
        };
        let i = index;
        index += 1;
        if splits[i].is_empty() {
            return Ok(Transformed::no(node));
        }
        let groups: Vec<FileGroup> = splits[i]
            .iter()
            .map(|task| {
                FileGroup::new(
                    task.iter()
                        .map(|piece| {
                            let original = scans[i]
                                .files
                                .iter()
                                .find(|f| f.object_meta.location.as_ref() == piece.path)
                                .expect("split pieces come from the scan's files");
                            let mut file = original.clone();
                            if !piece.is_whole_file() {
                                file = file
                                    .with_range(piece.range.start as i64, piece.range.end as i64);
                            }
                            file
                        })
                        .collect(),
                )
            })
            .collect();
        let new_config = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(groups)
            .build();
        Ok(Transformed::yes(
            DataSourceExec::from_data_source(new_config) as Arc<dyn ExecutionPlan>,
        ))
    })?;
    Ok(rewritten.data)
}
