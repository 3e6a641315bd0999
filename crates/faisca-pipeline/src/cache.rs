//! Compiled pipelines, shared by the tasks of a stage on one executor.
//!
//! Tasks decode their stage plan one by one; the pipeline spec inside is the same bytes for
//! every task of a stage, so the compiled program is looked up by those bytes. Entries are weak:
//! a program lives as long as some task holds it, and dead entries are swept on insertion.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::kernel::Unsupported;
use super::{CompiledPipeline, PipelineSpec};

static PROGRAMS: LazyLock<Mutex<HashMap<Vec<u8>, Weak<CompiledPipeline>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The compiled form of `spec`, whose encoding is `key`: compiled once while any task uses it.
pub fn compiled(key: &[u8], spec: &PipelineSpec) -> Result<Arc<CompiledPipeline>, Unsupported> {
    if let Some(p) = PROGRAMS
        .lock()
        .expect("pipeline cache")
        .get(key)
        .and_then(Weak::upgrade)
    {
        return Ok(p);
    }
    let program = Arc::new(CompiledPipeline::compile(spec)?);
    let mut programs = PROGRAMS.lock().expect("pipeline cache");
    programs.retain(|_, p| p.strong_count() > 0);
    programs.insert(key.to_vec(), Arc::downgrade(&program));
    Ok(program)
}
