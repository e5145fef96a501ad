//! Job chains: jobs run in order, each after the one it depends on has succeeded.

use super::report::{SyncReport, SyncStatus};
use super::{CancelToken, RunOptions, SyncJob, SyncProgress};
use crate::client::DataverseClient;
use crate::error::{Error, Result};
use crate::mapping::TargetLookup;
use crate::sink::RecordSink;
use crate::source::Checkpoint;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;

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
    /// cancelled, no further job starts.
    pub async fn run(
        &self,
        client: &DataverseClient,
        sink: &dyn RecordSink,
        options: &ChainOptions<'_>,
    ) -> ChainReport {
        let mut outcomes: Vec<ChainOutcome> = Vec::with_capacity(self.jobs.len());
        for job in &self.jobs {
            let cancelled = options
                .cancel
                .as_ref()
                .is_some_and(CancelToken::is_cancelled);
            let blocked_by = if cancelled {
                Some("not run: the chain was cancelled".to_owned())
            } else {
                job.depends_on.as_deref().and_then(|dependency| {
                    let outcome = outcomes.iter().find(|o| o.job() == dependency)?;
                    (!outcome.succeeded()).then(|| {
                        format!(
                            "not run: it depends on `{dependency}`, which {}",
                            outcome.describe()
                        )
                    })
                })
            };
            let outcome = match blocked_by {
                Some(reason) => ChainOutcome::NotRun {
                    job: job.name.clone(),
                    reason,
                },
                None => {
                    let run_options = RunOptions {
                        checkpoint: options.checkpoints.get(&job.name).cloned(),
                        metadata: None,
                        lookup: options.lookup,
                        progress: options.progress,
                        cancel: options.cancel.clone(),
                    };
                    match job.run(client, sink, run_options).await {
                        Ok(report) => ChainOutcome::Ran(Box::new(report)),
                        Err(error) => ChainOutcome::Refused {
                            job: job.name.clone(),
                            error: error.to_string(),
                        },
                    }
                }
            };
            outcomes.push(outcome);
        }
        ChainReport { outcomes }
    }
}

/// How a chain runs: each job's checkpoint, and what every job of the chain shares.
#[derive(Default)]
pub struct ChainOptions<'a> {
    /// The checkpoint of each job, by job name (from the previous chain report).
    pub checkpoints: BTreeMap<String, Checkpoint>,
    /// Finds target ids for derived mappings (Company Person finding its Company).
    pub lookup: Option<&'a dyn TargetLookup>,
    /// Called after every batch any job's sink accepted.
    pub progress: Option<&'a (dyn Fn(&SyncProgress) + Send + Sync)>,
    /// Stops the running job after its current batch and starts no further job.
    pub cancel: Option<CancelToken>,
}

impl fmt::Debug for ChainOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainOptions")
            .field("checkpoints", &self.checkpoints.keys().collect::<Vec<_>>())
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
    /// The job refused to start (an invalid mapping, an unreadable entity).
    Refused {
        /// The job's name.
        job: String,
        /// Why it refused.
        error: String,
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

/// The outcomes of a chain run, in the chain's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainReport {
    /// One outcome per job.
    pub outcomes: Vec<ChainOutcome>,
}

impl ChainReport {
    /// The outcome of the job called `name`.
    pub fn outcome(&self, name: &str) -> Option<&ChainOutcome> {
        self.outcomes.iter().find(|o| o.job() == name)
    }
}
