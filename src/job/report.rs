//! The report of one sync run: counts, failed records, the new checkpoint.

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::RecordFailure;
use crate::source::Checkpoint;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::time::Duration;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncStatus {
    /// Every record read was written or skipped by a rule.
    Success,
    /// The run finished, but some records failed (see [`SyncReport::failures`]) or something
    /// needs the host's attention (see [`SyncReport::warnings`]).
    PartialSuccess,
    /// The run stopped on an error (see [`SyncReport::error`]), or it read records and every
    /// one failed, so nothing was written; its checkpoint resumes the work.
    Failed,
    /// The run was cancelled; its checkpoint resumes the work.
    Cancelled,
}

/// What a run did, record by record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounts {
    /// Records (and deletions) read from Dynamics.
    pub read: u64,
    /// For a run that reads the whole table (a first read, or any run of a `full` job) without
    /// a filter: the table's row count from `RetrieveTotalRecordCount`, a snapshot up to a day
    /// old, so `read` may end a little above or below it. `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// Records inserted into the target.
    pub inserted: u64,
    /// Records updated in the target.
    pub updated: u64,
    /// Records upserted into the target.
    pub upserted: u64,
    /// Records deleted from the target.
    pub deleted: u64,
    /// Records skipped by a rule of the job (deletions with `deletes: ignore`).
    pub skipped: u64,
    /// Records that failed; each is in [`SyncReport::failures`].
    pub failed: u64,
}

impl SyncCounts {
    /// Records written to the target: inserted, updated, upserted and deleted.
    pub fn written(&self) -> u64 {
        self.inserted + self.updated + self.upserted + self.deleted
    }
}

/// The outcome of one run of a [`SyncJob`](crate::SyncJob), serializable as an activity-log
/// entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The job's name.
    pub job: String,
    /// How the run ended.
    pub status: SyncStatus,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the run ended.
    pub finished_at: DateTime<Utc>,
    /// What the run did.
    pub counts: SyncCounts,
    /// Every failed record with its id, field and reason.
    pub failures: Vec<RecordFailure>,
    /// Whether a full resync was required and run (an expired change-tracking token, a table
    /// that lost change tracking, a checkpoint made for another read such as a changed
    /// mapping). Counts then include what was read before the resync started.
    pub full_resync: bool,
    /// Why the full resync was required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_reason: Option<String>,
    /// Things the host should know that are not record failures (a resync that cannot see
    /// deletions, for example).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Requests Dataverse refused for its service protection limits (HTTP 429) during the
    /// run; each was retried after the wait the server asked for. Counted on the client, so
    /// jobs sharing a client at the same time count each other's refusals too.
    #[serde(default)]
    pub throttled: u64,
    /// How long the run's requests were paused by throttling in all.
    #[serde(default, with = "seconds")]
    pub throttled_for: Duration,
    /// The error that stopped a failed run, typed: its [`kind`](Error::kind),
    /// [`is_retryable`](Error::is_retryable), [`retry_after`](Error::retry_after),
    /// [`status`](Error::status) and [`request_id`](Error::request_id) say whether to retry
    /// later or call a person. In the JSON form, an object with those fields (see [`Error`]).
    pub error: Option<Error>,
    /// Where the next run resumes; store it and pass it back. `None` if nothing was accepted
    /// yet and the run had no checkpoint to begin with. Left out of the JSON form: it carries
    /// paging and delta tokens, which do not belong in an activity log; store it on its own.
    #[serde(skip)]
    pub checkpoint: Option<Checkpoint>,
}

impl SyncReport {
    /// Writes each failed record as one JSON line: `{"record_id":...,"field":...,"reason":...}`.
    pub fn write_failures_jsonl(&self, mut writer: impl Write) -> Result<()> {
        for failure in &self.failures {
            serde_json::to_writer(&mut writer, failure).map_err(write_error)?;
            writer.write_all(b"\n").map_err(write_error)?;
        }
        writer.flush().map_err(write_error)
    }

    /// Writes the failed records as CSV with the header `record_id,field,reason`.
    pub fn write_failures_csv(&self, mut writer: impl Write) -> Result<()> {
        writeln!(writer, "record_id,field,reason").map_err(write_error)?;
        for failure in &self.failures {
            writeln!(
                writer,
                "{},{},{}",
                csv_cell(&failure.record_id),
                csv_cell(&failure.field),
                csv_cell(&failure.reason)
            )
            .map_err(write_error)?;
        }
        writer.flush().map_err(write_error)
    }
}

/// Quotes a CSV cell when it holds a comma, quote or line break.
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn write_error(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Sink, "the error file could not be written").with_source(error)
}

impl fmt::Display for SyncReport {
    /// A few readable lines, for terminals and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let seconds = (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0;
        writeln!(f, "{}: {:?} in {seconds:.2}s", self.job, self.status)?;
        write!(f, "  read {}", c.read)?;
        if let Some(expected) = c.expected {
            write!(f, " (about {expected} in the table)")?;
        }
        write!(
            f,
            ", inserted {}, updated {}, upserted {}, deleted {}, skipped {}, failed {}",
            c.inserted, c.updated, c.upserted, c.deleted, c.skipped, c.failed
        )?;
        if self.throttled > 0 {
            write!(
                f,
                "\n  throttled: {} requests refused by service protection limits, {:.1}s waited",
                self.throttled,
                self.throttled_for.as_secs_f64()
            )?;
        }
        if self.full_resync {
            write!(f, "\n  a full resync was required and run")?;
            if let Some(reason) = &self.resync_reason {
                write!(f, ": {reason}")?;
            }
        }
        for warning in &self.warnings {
            write!(f, "\n  warning: {warning}")?;
        }
        if let Some(error) = &self.error {
            write!(f, "\n  error ({:?}", error.kind())?;
            if error.is_retryable() {
                write!(f, ", retryable")?;
            }
            write!(f, "): {error}")?;
        }
        for failure in self.failures.iter().take(5) {
            write!(
                f,
                "\n  failed {} {}: {}",
                failure.record_id,
                if failure.field.is_empty() {
                    "-"
                } else {
                    &failure.field
                },
                failure.reason
            )?;
        }
        if self.failures.len() > 5 {
            write!(f, "\n  ... and {} more failures", self.failures.len() - 5)?;
        }
        Ok(())
    }
}

/// A `Duration` as seconds (with fractions), for the JSON activity-log form.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Duration::try_from_secs_f64(f64::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}
