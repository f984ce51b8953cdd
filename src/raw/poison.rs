//! The poison flag every writable handle carries: after a failed flush or sync the kernel
//! may have dropped dirty pages, so the handle refuses writes until it is reopened.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Set once a sync of the file or directory at `path` failed; never cleared.
#[derive(Debug)]
pub(crate) struct Poison {
    poisoned: AtomicBool,
    path: PathBuf,
}

impl Poison {
    /// A clear flag for the handle whose files are at `path` (named in the error).
    pub(crate) fn new(path: &Path) -> Self {
        Poison {
            poisoned: AtomicBool::new(false),
            path: path.to_path_buf(),
        }
    }

    /// `Err(Poisoned)` once a sync has failed.
    pub(crate) fn check(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            Err(Error::Poisoned {
                path: self.path.clone(),
            })
        } else {
            Ok(())
        }
    }

    /// Passes `result` through, poisoning the handle if it is an error.
    pub(crate) fn on_error<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }
}
