//! Values built from files and rebuilt when the files change: [`Reloading`]. TLS
//! configurations (`tls.rs`) and the user tokens (`auth.rs`) are kept this way, so that a
//! Kubernetes Secret updated in place is used without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// One file a configuration is built from, and the key that named it.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) key: &'static str,
}

impl SourceFile {
    fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).map_err(|e| {
            Error::user(format!(
                "cannot read {} ({}): {e}",
                self.path.display(),
                self.key
            ))
        })
    }
}

pub(crate) type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T> + Send + Sync>;

struct Loaded<T> {
    checked: Instant,
    bytes: Vec<Vec<u8>>,
    value: Arc<T>,
}

/// A value built from files, rebuilt when their bytes change (looked at no more often than
/// `interval`, when the value is asked for).
pub struct Reloading<T> {
    what: &'static str,
    files: Vec<SourceFile>,
    interval: Duration,
    build: Build<T>,
    loaded: Mutex<Loaded<T>>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field(
                "files",
                &self.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<T> Reloading<T> {
    pub(crate) fn new(
        what: &'static str,
        files: Vec<SourceFile>,
        interval: Duration,
        build: Build<T>,
    ) -> Result<Self> {
        let bytes = files
            .iter()
            .map(SourceFile::read)
            .collect::<Result<Vec<_>>>()?;
        let value = Arc::new(build(&bytes)?);
        Ok(Reloading {
            what,
            files,
            interval,
            build,
            loaded: Mutex::new(Loaded {
                checked: Instant::now(),
                bytes,
                value,
            }),
        })
    }

    /// The current value, rebuilt first when the interval passed and a file changed.
    pub fn current(&self) -> Arc<T> {
        let mut loaded = match self.loaded.lock() {
            Ok(loaded) => loaded,
            Err(poisoned) => poisoned.into_inner(),
        };
        if loaded.checked.elapsed() < self.interval {
            return loaded.value.clone();
        }
        loaded.checked = Instant::now();
        let bytes = match self
            .files
            .iter()
            .map(SourceFile::read)
            .collect::<Result<Vec<_>>>()
        {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!("{}: {e}; the files read before stay in use", self.what);
                return loaded.value.clone();
            }
        };
        if bytes != loaded.bytes {
            match (self.build)(&bytes) {
                Ok(value) => {
                    tracing::info!(
                        "{}: changed files loaded ({})",
                        self.what,
                        self.files
                            .iter()
                            .map(|f| f.path.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    loaded.value = Arc::new(value);
                }
                Err(e) => tracing::warn!(
                    "{}: the changed files cannot be used ({e}); the previous ones stay in use",
                    self.what
                ),
            }
            // Either way these bytes were looked at: a broken version is not parsed again.
            loaded.bytes = bytes;
        }
        loaded.value.clone()
    }
}
