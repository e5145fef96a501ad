//! Checkpoint stores: where a host keeps each job's checkpoint between runs.
//!
//! [`FileCheckpointStore`] keeps them in one JSON file; `SqlSink` keeps them in its database,
//! committed in the same transaction as each batch.

use crate::error::{Error, ErrorKind, Result};
use crate::source::Checkpoint;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Keeps each job's [`Checkpoint`] by job name.
///
/// An async trait: implement it with [`#[async_trait]`](crate::async_trait) (re-exported by
/// this crate), writing `async fn load(&self, job: &str) -> Result<Option<Checkpoint>>` and
/// `async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<()>`; fail with an
/// [`ErrorKind::Store`] error carrying the storage's own error as its source.
/// `examples/host_traits.rs` implements it over a store of its own.
#[async_trait]
pub trait CheckpointStore: Send + Sync + fmt::Debug {
    /// The checkpoint saved for the job `job`, if any.
    async fn load(&self, job: &str) -> Result<Option<Checkpoint>>;

    /// Saves `checkpoint` for the job `job`, replacing the one saved before.
    async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<()>;
}

/// A [`CheckpointStore`] in one JSON file, `{"job name": checkpoint, ...}`.
///
/// Each save writes a temporary file beside it (named after the process and the save, so
/// processes sharing the file never write the same temporary file), syncs it to disk and
/// renames it over the file, so a crash leaves either the old or the new content, never a torn
/// file. Saves of one store are serialized; to keep two processes from interleaving their
/// saves, hold a lock around the whole run (the `sync` example's lock file does).
#[derive(Debug)]
pub struct FileCheckpointStore {
    path: PathBuf,
    /// Serializes saves within the process (each one rewrites the whole file).
    lock: Mutex<()>,
}

type Checkpoints = BTreeMap<String, Checkpoint>;

impl FileCheckpointStore {
    /// A store in the file at `path`; the file is created by the first save.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the jobs the file holds a checkpoint for (none when the file is missing),
    /// in order. An unreadable or broken file is an error, as for `load`.
    pub fn job_names(&self) -> Result<Vec<String>> {
        Ok(self.read()?.into_keys().collect())
    }

    fn read(&self) -> Result<Checkpoints> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoints::new()),
            Err(e) => return Err(self.error("cannot be read", e)),
        };
        serde_json::from_str(&text).map_err(|e| {
            Error::config(format!(
                "the checkpoint file {} is not a map of job names to checkpoints ({e}); delete it to start every job from the beginning",
                self.path.display()
            ))
        })
    }

    fn write(&self, checkpoints: &Checkpoints) -> io::Result<()> {
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let mut temporary = self.path.as_os_str().to_owned();
        let save = SAVES.fetch_add(1, Ordering::Relaxed);
        temporary.push(format!(".{}-{save}.tmp", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let written = Self::write_to(&temporary, checkpoints)
            .and_then(|()| fs::rename(&temporary, &self.path));
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }

    /// Writes `checkpoints` to a new file at `path` and syncs it to disk.
    fn write_to(path: &Path, checkpoints: &Checkpoints) -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        serde_json::to_writer_pretty(&mut file, checkpoints)?;
        file.flush()?;
        file.sync_all()
    }

    fn error(&self, what: &str, source: io::Error) -> Error {
        Error::new(
            ErrorKind::Store,
            format!("the checkpoint file {} {what}", self.path.display()),
        )
        .with_source(source)
    }
}

#[async_trait]
impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, job: &str) -> Result<Option<Checkpoint>> {
        Ok(self.read()?.remove(job))
    }

    async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut checkpoints = self.read()?;
        checkpoints.insert(job.to_owned(), checkpoint.clone());
        self.write(&checkpoints)
            .map_err(|e| self.error("cannot be written", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_file_holds_no_checkpoint_and_a_broken_one_says_what_to_do() {
        let path = std::env::temp_dir().join(format!("d365-store-{}.json", std::process::id()));
        let _ = fs::remove_file(&path);
        let store = FileCheckpointStore::new(&path);
        assert!(store.load("Contacts").await.unwrap().is_none());

        fs::write(&path, "{ \"Contacts\": 42 }").unwrap();
        let error = store.load("Contacts").await.unwrap_err();

        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
        assert!(error.to_string().contains("delete it"), "{error}");
        fs::remove_file(&path).unwrap();
    }
}
