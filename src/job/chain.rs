//! Job chains: jobs run in order, each after the one it depends on has succeeded.

use super::report::{SyncReport, SyncStatus};
use super::{CancelToken, ProgressFn, RunOptions, SyncJob};
use crate::client::DataverseClient;
use crate::error::{Error, Result};
use crate::mapping::TargetLookup;
use crate::metadata::EntityMetadata;
use crate::sink::RecordSink;
use crate::source::Checkpoint;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// An ordered list of jobs. A job may name one dependency (`depends_on`), an earlier job of the
/// chain that must succeed first (Company before Company Person).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<SyncJob>", into = "Vec<SyncJob>")]
pub struct JobChain {
    jobs: Vec<SyncJob>,
}

impl JobChain {
    /// Checks that job names are unique and every dependency names an earlier job.
    pub fn new(jobs: Vec<SyncJob>) -> Result<Self> {
        let mut earlier = HashSet::new();
        for job in &jobs {
            if let Some(dependency) = &job.depends_on {
                if !earlier.contains(dependency.as_str()) {
                    return Err(Error::config(format!(
                        "job `{}` depends on `{dependency}`, which is not an earlier job of the chain; list `{dependency}` before it",
                        job.name
                    )));
                }
            }
            if !earlier.insert(job.name.as_str()) {
                return Err(Error::config(format!(
                    "two jobs of the chain are called `{}`; give each job its own name",
                    job.name
                )));
            }
        }
        Ok(Self { jobs })
    }

    /// The jobs, in order.
    pub fn jobs(&self) -> &[SyncJob] {
        &self.jobs
    }

    /// Runs every job in order against `client` and `sink`, each resuming from its entry in
    /// `options.checkpoints` (by job name). A job whose dependency did not succeed (a failed,
    /// cancelled, refused or not-run job) is not run, and says why; once the cancel token is
    /// cancelled, no further job starts. The report's [`ChainReport::checkpoints`] are what the
    /// next run resumes from.
    pub async fn run(
        &self,
        client: &DataverseClient,
        sink: &dyn RecordSink,
        options: ChainOptions,
    ) -> ChainReport {
        let mut report = ChainReport {
            outcomes: Vec::with_capacity(self.jobs.len()),
            checkpoints: BTreeMap::new(),
        };
        for job in &self.jobs {
            let checkpoint = options.checkpoints.get(&job.name).cloned();
            let outcome = match blocked(job, &report.outcomes, &options) {
                Some(reason) => ChainOutcome::NotRun {
                    job: job.name.clone(),
                    reason,
                },
                None => {
                    let run_options = options.for_job(job, checkpoint.clone());
                    match job.run(client, sink, run_options).await {
                        Ok(report) => ChainOutcome::Ran(Box::new(report)),
                        Err(error) => ChainOutcome::Refused {
                            job: job.name.clone(),
                            error,
                        },
                    }
                }
            };
            let next = match &outcome {
                ChainOutcome::Ran(ran) => ran.checkpoint.clone(),
                _ => checkpoint,
            };
            if let Some(next) = next {
                report.checkpoints.insert(job.name.clone(), next);
            }
            report.outcomes.push(outcome);
        }
        report
    }
}

/// Why `job` must not run after `earlier` outcomes: the chain was cancelled, or its
/// dependency did not succeed.
fn blocked(job: &SyncJob, earlier: &[ChainOutcome], options: &ChainOptions) -> Option<String> {
    if options
        .cancel
        .as_ref()
        .is_some_and(CancelToken::is_cancelled)
    {
        return Some("not run: the chain was cancelled".to_owned());
    }
    let dependency = job.depends_on.as_deref()?;
    let outcome = earlier.iter().find(|o| o.job() == dependency)?;
    (!outcome.succeeded()).then(|| {
        format!(
            "not run: it depends on `{dependency}`, which {}",
            outcome.describe()
        )
    })
}

/// How a chain runs: each job's checkpoint, and what every job of the chain shares. Owned and
/// `Clone`, like [`RunOptions`], and passed by value the same way.
#[derive(Clone, Default)]
pub struct ChainOptions {
    /// The checkpoint of each job, by job name: [`ChainReport::checkpoints`] of the previous
    /// run, or what the host's [`CheckpointStore`](crate::CheckpointStore) holds.
    pub checkpoints: BTreeMap<String, Checkpoint>,
    /// Metadata the host already has: each job takes the one of its source entity, and fetches
    /// it when none is given.
    pub metadata: Vec<Arc<EntityMetadata>>,
    /// Finds target ids for derived mappings (Company Person finding its Company).
    pub lookup: Option<Arc<dyn TargetLookup>>,
    /// Called after every batch any job's sink accepted.
    pub progress: Option<ProgressFn>,
    /// Stops the running job after its current batch and starts no further job.
    pub cancel: Option<CancelToken>,
}

impl ChainOptions {
    /// The run options of `job`, resuming from `checkpoint`.
    fn for_job(&self, job: &SyncJob, checkpoint: Option<Checkpoint>) -> RunOptions {
        RunOptions {
            checkpoint,
            metadata: self
                .metadata
                .iter()
                .find(|metadata| metadata.logical_name() == job.source.entity)
                .cloned(),
            lookup: self.lookup.clone(),
            progress: self.progress.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

impl fmt::Debug for ChainOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainOptions")
            .field("checkpoints", &self.checkpoints.keys().collect::<Vec<_>>())
            .field(
                "metadata",
                &self
                    .metadata
                    .iter()
                    .map(|m| m.logical_name())
                    .collect::<Vec<_>>(),
            )
            .field("lookup", &self.lookup.is_some())
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl TryFrom<Vec<SyncJob>> for JobChain {
    type Error = Error;
    fn try_from(jobs: Vec<SyncJob>) -> Result<Self> {
        Self::new(jobs)
    }
}

impl From<JobChain> for Vec<SyncJob> {
    fn from(chain: JobChain) -> Self {
        chain.jobs
    }
}

/// What became of one job of a chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChainOutcome {
    /// The job ran; its report says how it went.
    Ran(Box<SyncReport>),
    /// The job refused to start (an invalid mapping, an unreadable entity, an outage).
    Refused {
        /// The job's name.
        job: String,
        /// Why it refused: a [`Mapping`](crate::ErrorKind::Mapping) error lists every
        /// violation ([`MappingErrors::from_error`](crate::MappingErrors::from_error)), a
        /// retryable one (an outage) may succeed later.
        error: Error,
    },
    /// The job was not run because its dependency did not succeed.
    NotRun {
        /// The job's name.
        job: String,
        /// Why it was not run.
        reason: String,
    },
}

impl ChainOutcome {
    /// The job's name.
    pub fn job(&self) -> &str {
        match self {
            ChainOutcome::Ran(report) => &report.job,
            ChainOutcome::Refused { job, .. } | ChainOutcome::NotRun { job, .. } => job,
        }
    }

    /// The error that stopped the job: the one it refused to start with, or the one that
    /// ended its run `Failed`. `None` for a job that was not run or did not fail.
    pub fn error(&self) -> Option<&Error> {
        match self {
            ChainOutcome::Ran(report) => report.error.as_ref(),
            ChainOutcome::Refused { error, .. } => Some(error),
            ChainOutcome::NotRun { .. } => None,
        }
    }

    /// Whether dependents may run: the job ran to the end (successfully or partially).
    pub fn succeeded(&self) -> bool {
        matches!(
            self,
            ChainOutcome::Ran(report)
                if matches!(report.status, SyncStatus::Success | SyncStatus::PartialSuccess)
        )
    }

    fn describe(&self) -> String {
        match self {
            ChainOutcome::Ran(report) => format!("ended {:?}", report.status),
            ChainOutcome::Refused { .. } => "refused to start".to_owned(),
            ChainOutcome::NotRun { .. } => "was not run".to_owned(),
        }
    }
}

/// The outcomes of a chain run, in the chain's order, and where the next run resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainReport {
    /// One outcome per job.
    pub outcomes: Vec<ChainOutcome>,
    /// Left out of the JSON form, like [`SyncReport::checkpoint`].
    #[serde(skip)]
    checkpoints: BTreeMap<String, Checkpoint>,
}

impl ChainReport {
    /// The outcome of the job called `name`.
    pub fn outcome(&self, name: &str) -> Option<&ChainOutcome> {
        self.outcomes.iter().find(|o| o.job() == name)
    }

    /// Where each job's next run resumes, by job name: its run's new checkpoint, or the one it
    /// was given when it was not run or refused to start. Pass it as
    /// [`ChainOptions::checkpoints`] (and store it) for the next run. Empty for a report read
    /// back from JSON.
    pub fn checkpoints(&self) -> &BTreeMap<String, Checkpoint> {
        &self.checkpoints
    }
}
