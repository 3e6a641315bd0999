//! The files a plan's scans read, for planning and for error messages.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;

/// The file scan configuration of `plan` when it is a file scan.
pub fn file_scan_config(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    plan.downcast_ref::<DataSourceExec>()?
        .data_source()
        .as_ref()
        .downcast_ref::<FileScanConfig>()
}

/// Full URLs of the files that partition `partition` of `plan`'s scans reads.
pub fn task_files(plan: &Arc<dyn ExecutionPlan>, partition: usize) -> Vec<String> {
    let mut files = Vec::new();
    let _ = plan.apply(|node| {
        if let Some(config) = file_scan_config(node)
            && let Some(group) = config.file_groups.get(partition)
        {
            for f in group.iter() {
                let url = format!(
                    "{}{}",
                    config.object_store_url.as_str(),
                    f.object_meta.location
                );
                if !files.contains(&url) {
                    files.push(url);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    files
}
