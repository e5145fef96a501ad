//! Record sinks: where a sync job writes what it read.
//!
//! A [`RecordSink`] receives batches of [`Operation`]s for one target object and answers per
//! operation, so a partial failure is reported record by record. Three sinks ship with the crate:
//! [`MemorySink`] (tests and examples), [`JsonLinesSink`] (one JSON object per line to any
//! writer) and, with the `sqlite` or `postgres` feature, `SqlSink` (typed tables, with the
//! checkpoint committed in the same transaction as each batch).

mod json_lines;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

pub use json_lines::JsonLinesSink;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlSink;

use crate::error::Result;
use crate::mapping::{TargetRecord, TargetSchema};
use crate::source::Checkpoint;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// One write a job asks of the sink.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Create a new record.
    Insert {
        /// The record's fields.
        record: TargetRecord,
    },
    /// Change the record whose identifier fields equal `key`; no record means a failure.
    Update {
        /// The identifier fields and their values.
        key: TargetRecord,
        /// The record's fields (the identifiers included).
        record: TargetRecord,
    },
    /// Change the record whose identifier fields equal `key`, or create it.
    Upsert {
        /// The identifier fields and their values.
        key: TargetRecord,
        /// The record's fields (the identifiers included).
        record: TargetRecord,
    },
    /// Remove the record whose identifier fields equal `key`.
    Delete {
        /// The identifier fields and their values.
        key: TargetRecord,
    },
}

impl Operation {
    /// The identifier fields of the record this operation touches (none for an insert).
    pub fn key(&self) -> Option<&TargetRecord> {
        match self {
            Operation::Insert { .. } => None,
            Operation::Update { key, .. }
            | Operation::Upsert { key, .. }
            | Operation::Delete { key } => Some(key),
        }
    }
}

/// Why the sink could not write one record.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// What went wrong, in words a person can act on.
    pub reason: String,
    /// The field the sink could not write, when it knows (a value the column cannot hold; the
    /// identifiers of a record that exists already). The run's report names
    /// [`RecordFailure::WHOLE_RECORD`](crate::RecordFailure::WHOLE_RECORD) without one.
    pub field: Option<String>,
}

impl WriteFailure {
    /// A failure with `reason`, naming no field.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            field: None,
        }
    }

    /// Names the field (or the identifier fields, `"A, B"`) the sink could not write.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// The answer for one operation of a batch.
pub type WriteResult = std::result::Result<(), WriteFailure>;

/// Where a sync job writes: the host's own storage.
///
/// `write` answers with exactly one [`WriteResult`] per operation, in order. Returning `Err`
/// means the whole batch failed (the store is down): the job stops and does not advance its
/// checkpoint past the batch, so nothing is lost, and the run's report carries that error
/// ([`SyncReport::error`](crate::SyncReport::error)): return an
/// [`ErrorKind::Sink`](crate::ErrorKind::Sink) error, marked
/// [`with_retryable(true)`](crate::Error::with_retryable) when a later run may succeed.
///
/// An async trait: implement it with [`#[async_trait]`](crate::async_trait) (re-exported by
/// this crate). Only `async fn write(&self, object: &str, operations: &[Operation]) ->
/// Result<Vec<WriteResult>>` is required; `prepare`, `write_with_checkpoint`, `flush` and
/// `delete_missing` have defaults. `examples/host_traits.rs` implements it over a store of its
/// own.
///
/// ```
/// use d365_connector::{async_trait, Error, ErrorKind, Operation, RecordSink, Result, WriteResult};
///
/// #[derive(Debug)]
/// struct Offline;
///
/// #[async_trait]
/// impl RecordSink for Offline {
///     async fn write(&self, object: &str, _operations: &[Operation]) -> Result<Vec<WriteResult>> {
///         Err(Error::new(ErrorKind::Sink, format!("the `{object}` table is offline; retry later"))
///             .with_retryable(true))
///     }
/// }
/// ```
#[async_trait]
pub trait RecordSink: Send + Sync + fmt::Debug {
    /// Gets ready to write the target object `target`, whose records are found by the fields
    /// `identifiers`. A job calls it once before reading anything; an `Err` stops the job before
    /// it starts. A sink that keeps tables creates or checks the table here. The default does
    /// nothing.
    async fn prepare(&self, target: &TargetSchema, identifiers: &[String]) -> Result<()> {
        let _ = (target, identifiers);
        Ok(())
    }

    /// Writes a batch of operations for the target object `object`.
    async fn write(&self, object: &str, operations: &[Operation]) -> Result<Vec<WriteResult>>;

    /// Writes a batch together with the checkpoint a run resumes from once the batch is written.
    ///
    /// A sink that keeps checkpoints (`SqlSink`) commits both in one transaction, so a process
    /// killed at any instant leaves data and checkpoint in agreement. The default calls
    /// [`RecordSink::write`] and leaves the checkpoint to the host.
    async fn write_with_checkpoint(
        &self,
        object: &str,
        operations: &[Operation],
        checkpoint: BatchCheckpoint<'_>,
    ) -> Result<Vec<WriteResult>> {
        let _ = checkpoint;
        self.write(object, operations).await
    }

    /// Makes everything written so far durable. Called before a job hands back its checkpoint.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Deletes the records of `object` whose identifiers are not in `keep`, and says how many
    /// it deleted; `None` when this sink cannot enumerate its records (the default).
    ///
    /// A job calls it after a full resync forced by an expired change-tracking token, with the
    /// keys of every record the resync read: records missing from it were deleted in Dynamics
    /// while the token was stale.
    async fn delete_missing(&self, object: &str, keep: &KeySet) -> Result<Option<u64>> {
        let _ = (object, keep);
        Ok(None)
    }
}

/// Where a job resumes once a batch is written: the job's name and its checkpoint (`None` when
/// the run has none to give yet).
#[derive(Debug, Clone, Copy)]
pub struct BatchCheckpoint<'a> {
    /// The job's name, which checkpoints are stored by.
    pub job: &'a str,
    /// The checkpoint to store with the batch.
    pub checkpoint: Option<&'a Checkpoint>,
}

/// A set of identifier keys: the records that still exist in Dynamics after a full resync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet(HashMap<String, TargetRecord>);

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`.
    pub fn insert(&mut self, key: &TargetRecord) {
        self.0.insert(key_text(key), key.clone());
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: &TargetRecord) -> bool {
        self.0.contains_key(&key_text(key))
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &TargetRecord> {
        self.0.values()
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The names of a record's fields, `"A, B"`: the identifiers a failure is about.
fn field_names(record: &TargetRecord) -> String {
    let names: Vec<&str> = record.iter().map(|(name, _)| name).collect();
    names.join(", ")
}

/// The text key of an identifier record, used to index stored records.
fn key_text(key: &TargetRecord) -> String {
    serde_json::to_string(key).unwrap_or_default()
}

/// A sink that keeps records in memory, indexed by their identifiers. For tests and examples.
#[derive(Debug, Default)]
pub struct MemorySink {
    objects: Mutex<BTreeMap<String, Stored>>,
}

#[derive(Debug, Default)]
struct Stored {
    by_key: BTreeMap<String, TargetRecord>,
    inserted: Vec<TargetRecord>,
    operations: usize,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record of `object`: inserted ones first, then those kept by identifier.
    pub fn records(&self, object: &str) -> Vec<TargetRecord> {
        let objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        objects
            .get(object)
            .map(|stored| {
                stored
                    .inserted
                    .iter()
                    .chain(stored.by_key.values())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The record of `object` whose identifiers equal `key`.
    pub fn get(&self, object: &str, key: &TargetRecord) -> Option<TargetRecord> {
        let objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        objects.get(object)?.by_key.get(&key_text(key)).cloned()
    }

    /// How many operations `object` has received in all (a record written twice counts twice).
    pub fn operation_count(&self, object: &str) -> usize {
        let objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        objects.get(object).map_or(0, |stored| stored.operations)
    }
}

#[async_trait]
impl RecordSink for MemorySink {
    async fn write(&self, object: &str, operations: &[Operation]) -> Result<Vec<WriteResult>> {
        let mut objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = objects.entry(object.to_owned()).or_default();
        stored.operations += operations.len();
        Ok(operations
            .iter()
            .map(|operation| match operation {
                Operation::Insert { record } => {
                    stored.inserted.push(record.clone());
                    Ok(())
                }
                Operation::Upsert { key, record } => {
                    stored.by_key.insert(key_text(key), record.clone());
                    Ok(())
                }
                Operation::Update { key, record } => match stored.by_key.get_mut(&key_text(key)) {
                    Some(existing) => {
                        *existing = record.clone();
                        Ok(())
                    }
                    None => Err(WriteFailure::new(format!(
                        "no {object} record has the identifiers {}; use upsert to create missing records",
                        key_text(key)
                    ))
                    .with_field(field_names(key))),
                },
                Operation::Delete { key } => {
                    stored.by_key.remove(&key_text(key));
                    Ok(())
                }
            })
            .collect())
    }

    async fn delete_missing(&self, object: &str, keep: &KeySet) -> Result<Option<u64>> {
        let mut objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(stored) = objects.get_mut(object) else {
            return Ok(Some(0));
        };
        let before = stored.by_key.len();
        stored.by_key.retain(|key, _| keep.0.contains_key(key));
        Ok(Some((before - stored.by_key.len()) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::TargetValue;

    /// A record's key (`ExternalId`) and the record (with `Name`), for the sinks' tests.
    pub(super) fn record(id: &str, name: &str) -> (TargetRecord, TargetRecord) {
        let mut key = TargetRecord::new();
        key.insert("ExternalId", TargetValue::Id(id.to_owned()));
        let mut record = key.clone();
        record.insert("Name", TargetValue::String(name.to_owned()));
        (key, record)
    }

    #[tokio::test]
    async fn memory_sink_updates_only_existing_records_and_deletes_what_is_missing() {
        let sink = MemorySink::new();
        let (key_a, record_a) = record("a", "A");
        let (key_b, record_b) = record("b", "B");
        let (key_c, record_c) = record("c", "C");
        let results = sink
            .write(
                "Company",
                &[
                    Operation::Upsert {
                        key: key_a.clone(),
                        record: record_a,
                    },
                    Operation::Upsert {
                        key: key_b.clone(),
                        record: record_b,
                    },
                    Operation::Update {
                        key: key_c.clone(),
                        record: record_c,
                    },
                ],
            )
            .await
            .unwrap();
        assert!(results[0].is_ok() && results[1].is_ok());
        assert!(results[2].as_ref().unwrap_err().reason.contains("upsert"));

        let mut keep = KeySet::new();
        keep.insert(&key_a);
        assert_eq!(
            sink.delete_missing("Company", &keep).await.unwrap(),
            Some(1)
        );
        assert!(sink.get("Company", &key_a).is_some());
        assert!(sink.get("Company", &key_b).is_none());
        assert_eq!(sink.delete_missing("Person", &keep).await.unwrap(), Some(0));
    }
}
