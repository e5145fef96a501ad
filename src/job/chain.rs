//! Job chains: jobs run in order, each after the one it depends on has succeeded.

use super::report::{SyncReport, SyncStatus};
use super::{RunOptions, SyncJob};
use crate::client::DataverseClient;
use crate::error::{Error, Result};
use crate::sink::RecordSink;
use crate::source::Checkpoint;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

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
    /// `checkpoints` (by job name). A job whose dependency did not succeed (a failed, cancelled
    /// or not-run job) is not run, and says why.
    pub async fn run(
        &self,
        client: &DataverseClient,
        sink: &dyn RecordSink,
        checkpoints: &BTreeMap<String, Checkpoint>,
    ) -> ChainReport {
        let mut outcomes: Vec<ChainOutcome> = Vec::with_capacity(self.jobs.len());
        for job in &self.jobs {
            let blocked_by = job.depends_on.as_deref().and_then(|dependency| {
                let outcome = outcomes.iter().find(|o| o.job() == dependency)?;
                (!outcome.succeeded()).then(|| {
                    format!(
                        "not run: it depends on `{dependency}`, which {}",
                        outcome.describe()
                    )
                })
            });
            let outcome = match blocked_by {
                Some(reason) => ChainOutcome::NotRun {
                    job: job.name.clone(),
                    reason,
                },
                None => {
                    let options = RunOptions {
                        checkpoint: checkpoints.get(&job.name).cloned(),
                        ..RunOptions::default()
                    };
                    match job.run(client, sink, options).await {
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
