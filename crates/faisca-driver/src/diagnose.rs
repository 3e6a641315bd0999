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

/// `error`, or, when DataFusion could not merge the schemas of the Parquet files at `locations`,
/// an error naming the column and which files disagree about it.
pub async fn name_mismatched_files(session: &Session, locations: &[String], error: Error) -> Error {
    let message = error.to_string();
    if !message.contains("Fail to merge schema") {
        return error;
    }
    match mismatched_files(session, locations).await {
        Ok(Some(named)) => named,
        _ => error,
    }
}

async fn mismatched_files(session: &Session, locations: &[String]) -> Result<Option<Error>> {
    use datafusion::datasource::file_format::FileFormat;
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use std::collections::BTreeMap;
    let state = session.ctx.state();
    // column → type → files with that type
    let mut types: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for location in locations {
        let path = ListingTableUrl::parse(location)?;
        let store = state.runtime_env().object_store(path.object_store())?;
        let files: Vec<_> = path
            .list_all_files(&state, store.as_ref(), ".parquet")
            .await?
            .try_collect()
            .await?;
        for file in files {
            let url = format!("{}{}", path.object_store().as_str(), file.location);
            let schema = ParquetFormat::default()
                .infer_schema(&state, &store, std::slice::from_ref(&file))
                .await?;
            for field in schema.fields() {
                types
                    .entry(field.name().clone())
                    .or_default()
                    .entry(field.data_type().to_string())
                    .or_default()
                    .push(url.clone());
            }
        }
    }
    let Some((column, by_type)) = types.into_iter().find(|(_, by_type)| by_type.len() > 1) else {
        return Ok(None);
    };
    let described: Vec<String> = by_type
        .iter()
        .map(|(data_type, files)| {
            let shown: Vec<&str> = files.iter().take(3).map(String::as_str).collect();
            let more = if files.len() > 3 {
                format!(" and {} more", files.len() - 3)
            } else {
                String::new()
            };
            format!("{data_type} in {}{more}", shown.join(", "))
        })
        .collect();
    Ok(Some(Error::user(format!(
        "the Parquet files at {} disagree on the type of column '{column}': {}; expected one type per column (rewrite the odd files, or read them as separate tables)",
        locations.join(", "),
        described.join("; ")
    ))))
}
