//! Numbered entries in an object-store directory (`offsets/0`, `offsets/1`, …): the shape of
//! every log Faísca keeps in a checkpoint or beside an output — the Kafka batch source's offset
//! log, a streaming query's offset and commit logs, a streaming file sink's `_faisca_metadata`.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// The numbers of the entries in `dir`, ascending (other names are ignored).
pub async fn entry_numbers(
    store: &dyn ObjectStore,
    dir: &Path,
) -> Result<Vec<u64>, object_store::Error> {
    let listing: Vec<_> = store.list(Some(dir)).try_collect().await?;
    let mut ids: Vec<u64> = listing
        .iter()
        .filter_map(|m| m.location.filename()?.parse().ok())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Creates `path` with `body` unless it exists; `false` when it did. Stores without
/// conditional writes are checked first, then written (two writers at the same moment could
/// both succeed there).
pub async fn create_once(
    store: &dyn ObjectStore,
    path: &Path,
    body: Vec<u8>,
) -> Result<bool, object_store::Error> {
    let options = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(path, PutPayload::from(Bytes::from(body.clone())), options)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(object_store::Error::NotImplemented { .. }) => {
            match store.head(path).await {
                Ok(_) => return Ok(false),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            store.put(path, PutPayload::from(Bytes::from(body))).await?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn entries_are_numbered_and_created_once() {
        let store = InMemory::new();
        let dir = Path::from("log");
        for n in [10u64, 2, 1] {
            assert!(
                create_once(&store, &dir.clone().join(n.to_string()), vec![1])
                    .await
                    .unwrap()
            );
        }
        assert!(
            !create_once(&store, &dir.clone().join("2"), vec![2])
                .await
                .unwrap()
        );
        store
            .put(
                &dir.clone().join("notes.txt"),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
        assert_eq!(entry_numbers(&store, &dir).await.unwrap(), [1, 2, 10]);
    }
}
