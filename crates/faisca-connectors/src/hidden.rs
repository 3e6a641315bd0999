//! Listings that skip what Spark skips: names starting with `.` or `_` (except Hive-style
//! `_col=value` directories). Such names are markers and work areas, not data: `_SUCCESS`,
//! `_temporary/` of writes in progress, `.crc` checksums, `.staging` directories.
//!
//! [`HideMarkers`] wraps every store of a [`crate::stores::StoreRegistry`], so DataFusion's
//! listings (schema inference, Hive partition discovery, scans) never see them. Only the part of a
//! path below the listed prefix is judged: listing `t/_temporary/job/` itself shows the files the
//! tasks wrote there (its `_manifest.json` stays hidden and is read by name), which is how the
//! commit protocol reads its own work area.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Whether one path segment names a marker or work area rather than data.
pub fn is_hidden_segment(segment: &str) -> bool {
    segment.starts_with('.') || (segment.starts_with('_') && !segment.contains('='))
}

/// Whether `location`, below `prefix`, passes through a hidden segment.
fn hidden_below(prefix: Option<&Path>, location: &Path) -> bool {
    let full = location.as_ref();
    let relative = match prefix.map(|p| p.as_ref()).filter(|p| !p.is_empty()) {
        Some(p) => match full.strip_prefix(p) {
            Some(rest) => rest.strip_prefix('/').unwrap_or(rest),
            None => full,
        },
        None => full,
    };
    relative.split('/').any(is_hidden_segment)
}

/// A store whose listings leave out hidden names (see the module docs). Every other operation
/// goes to the wrapped store unchanged.
#[derive(Debug)]
pub struct HideMarkers {
    inner: Arc<dyn ObjectStore>,
}

impl HideMarkers {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        HideMarkers { inner }
    }
}

impl fmt::Display for HideMarkers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for HideMarkers {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let owned = prefix.cloned();
        self.inner
            .list(prefix)
            .try_filter(move |meta| {
                futures::future::ready(!hidden_below(owned.as_ref(), &meta.location))
            })
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let owned = prefix.cloned();
        self.inner
            .list_with_offset(prefix, offset)
            .try_filter(move |meta| {
                futures::future::ready(!hidden_below(owned.as_ref(), &meta.location))
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result
            .objects
            .retain(|meta| !hidden_below(prefix, &meta.location));
        result
            .common_prefixes
            .retain(|dir| !hidden_below(prefix, dir));
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[test]
    fn spark_hides_markers_but_not_partition_directories() {
        assert!(is_hidden_segment("_SUCCESS"));
        assert!(is_hidden_segment("_temporary"));
        assert!(is_hidden_segment(".part-0.crc"));
        assert!(!is_hidden_segment("_col=1"));
        assert!(!is_hidden_segment("part-0.parquet"));
    }

    #[tokio::test]
    async fn listings_skip_hidden_names_below_the_prefix_only() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for p in [
            "t/_SUCCESS",
            "t/k=1/part-0.parquet",
            "t/.k=1.crc",
            "t/_temporary/j/0-0/k=1/part-0.parquet",
            "t/_temporary/j/_manifest.json",
        ] {
            inner
                .put(&Path::from(p), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        let store = HideMarkers::new(inner);
        let names = |prefix: &'static str| {
            let store = &store;
            async move {
                let mut v: Vec<String> = store
                    .list(Some(&Path::from(prefix)))
                    .map_ok(|m| m.location.to_string())
                    .try_collect()
                    .await
                    .unwrap();
                v.sort();
                v
            }
        };
        assert_eq!(names("t").await, vec!["t/k=1/part-0.parquet"]);
        assert_eq!(
            names("t/_temporary/j").await,
            vec!["t/_temporary/j/0-0/k=1/part-0.parquet"]
        );
        let top = store
            .list_with_delimiter(Some(&Path::from("t")))
            .await
            .unwrap();
        assert!(top.objects.is_empty(), "{top:?}");
        assert_eq!(top.common_prefixes, vec![Path::from("t/k=1")]);
    }
}
