//! Where a Parquet file's row groups lie, read from its footer through `object_store`.

use std::ops::Range;
use std::sync::Arc;

use faisca_common::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{ParquetMetaDataReader, RowGroupMetaData};

/// The byte range `[start, end)` of a row group: from its first column chunk's first page (the
/// dictionary page if there is one) over its compressed size. DataFusion's Parquet reader assigns
/// a row group to the scan range that holds this range's midpoint, so splitting at range starts
/// hands every row group to exactly one task.
pub fn row_group_range(rg: &RowGroupMetaData) -> Range<u64> {
    let first = rg.columns().first();
    let start = first
        .map(|c| {
            c.dictionary_page_offset()
                .unwrap_or_else(|| c.data_page_offset())
        })
        .unwrap_or(0)
        .max(0) as u64;
    start..start + rg.compressed_size().max(0) as u64
}

/// Read the footer of `location` (size `size`) and return its row groups' byte ranges.
/// `url` is the file's full URL, used in errors.
pub async fn row_group_ranges(
    store: Arc<dyn ObjectStore>,
    location: &Path,
    size: u64,
    url: &str,
) -> Result<Vec<Range<u64>>> {
    let bad = |what: String| {
        Error::user(format!(
            "cannot read the Parquet footer of {url}: {what} (expected a Parquet file)"
        ))
    };
    if size < 12 {
        return Err(bad(format!(
            "the file has {size} bytes, fewer than a Parquet file's 12-byte minimum"
        )));
    }
    let tail = store.get_range(location, size - 8..size).await?;
    if tail.len() != 8 || &tail[4..8] != b"PAR1" {
        return Err(bad("no PAR1 magic at the end of the file".into()));
    }
    let metadata_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if metadata_len + 12 > size {
        return Err(bad(format!(
            "the footer claims {metadata_len} bytes of metadata in a {size}-byte file"
        )));
    }
    let bytes = store
        .get_range(location, size - 8 - metadata_len..size - 8)
        .await?;
    let metadata =
        ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    Ok(metadata.row_groups().iter().map(row_group_range).collect())
}
