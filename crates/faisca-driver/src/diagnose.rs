//! Naming the file behind an error.
//!
//! DataFusion reads Parquet footers while it plans (schemas, statistics) and reports a corrupt or
//! truncated file without saying which. When planning fails with a Parquet error, the driver
//! checks the footers of the files the query's tables read and names the first bad one by its
//! full URL.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::listing::{ListingTable, ListingTableUrl};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use faisca_common::{Error, Result};
use faisca_connectors::parquet_layout::row_group_ranges;
use futures::TryStreamExt;

use crate::session::Session;

/// `error`, or a clearer error naming the corrupt Parquet file it came from.
pub async fn name_bad_parquet_file(session: &Session, plan: &LogicalPlan, error: Error) -> Error {
    if !error.to_string().contains("Parquet error") {
        return error;
    }
    match first_bad_parquet_file(session, plan).await {
        Ok(Some(named)) => named,
        _ => error,
    }
}

async fn first_bad_parquet_file(session: &Session, plan: &LogicalPlan) -> Result<Option<Error>> {
    let mut tables = Vec::new();
    if let LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) = plan
        && create.file_type.eq_ignore_ascii_case("parquet")
    {
        for location in &create.locations {
            tables.push((vec![ListingTableUrl::parse(location)?], String::new()));
        }
    }
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(listing) = provider.downcast_ref::<ListingTable>()
        {
            tables.push((
                listing.table_paths().clone(),
                listing.options().file_extension.clone(),
            ));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let state = session.ctx.state();
    for (paths, extension) in tables {
        for path in paths {
            let store = state.runtime_env().object_store(path.object_store())?;
            let files: Vec<_> = path
                .list_all_files(&state, store.as_ref(), &extension)
                .await?
                .try_collect()
                .await?;
            for file in files {
                let url = format!("{}{}", path.object_store().as_str(), file.location);
                if let Err(e) =
                    row_group_ranges(store.clone(), &file.location, file.size, &url).await
                {
                    return Ok(Some(e));
                }
            }
        }
    }
    Ok(None)
}
