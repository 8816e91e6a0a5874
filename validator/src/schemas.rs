//! Compiled validators, one per (stream id, version), shared by every task of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thingtotal_common::stream::{StreamId, StreamRecord};

/// A stream version's compiled schema, or why it does not compile.
pub(crate) type Compiled = Arc<Result<jsonschema::Validator, String>>;

/// The cache. A stream's older versions are dropped as soon as a newer one is compiled, and
/// deleted streams are dropped by [`Schemas::retain`].
#[derive(Debug, Default)]
pub(crate) struct Schemas {
    compiled: Mutex<HashMap<StreamId, (u32, Compiled)>>,
}

impl Schemas {
    /// The compiled schema of this version of the stream, compiled on first use.
    pub(crate) fn get(&self, stream: &StreamRecord) -> Compiled {
        if let Some((v, c)) = self.compiled.lock().expect("schemas lock").get(&stream.id) {
            if *v == stream.version {
                return c.clone();
            }
        }
        // Compile outside the lock: other streams' lookups need not wait.
        let compiled: Compiled =
            Arc::new(jsonschema::validator_for(&stream.schema).map_err(|e| e.to_string()));
        self.compiled
            .lock()
            .expect("schemas lock")
            .insert(stream.id, (stream.version, compiled.clone()));
        compiled
    }

    /// Keeps only the streams for which `keep` is true.
    pub(crate) fn retain(&self, keep: impl Fn(StreamId) -> bool) {
        self.compiled
            .lock()
            .expect("schemas lock")
            .retain(|id, _| keep(*id));
    }

    /// How many versions are compiled.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.compiled.lock().expect("schemas lock").len()
    }
}
