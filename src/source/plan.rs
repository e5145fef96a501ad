//! Read plans: a partitioned first read planned once and run anywhere, one partition per worker
//! of an engine the host already has (Kubernetes indexed Jobs, a queue's consumers), then
//! finished by one step.

use super::checkpoint::{Checkpoint, Position, Progress};
use super::partition::Partition;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A partitioned first read of one table, planned by
/// [`EntitySource::plan_read`](crate::EntitySource::plan_read): the read's shape (table, mode,
/// columns, filter) and its partitions, whose bounds come from the table's own ids.
///
/// A serde type: store it (it holds the change-tracking read's paging link, so treat it as a
/// cursor), hand [`worker`](ReadPlan::worker)`(i)` to worker `i`, which resumes an
/// [`EntitySource`](crate::EntitySource) of the same shape from it and reads partition `i`
/// only, with its own checkpoints and sink; once every worker is done, resume a source from
/// [`finishing`](ReadPlan::finishing) to finish the read (for change tracking, the ids-only
/// tracking read that yields the delta link) and keep its last checkpoint for the next
/// incremental run.
///
/// Its JSON form is that of the read's [`Checkpoint`] before any page was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Checkpoint", into = "Checkpoint")]
pub struct ReadPlan {
    /// The read's table, mode, columns and filter.
    shape: Checkpoint,
    progress: Progress,
}

impl TryFrom<Checkpoint> for ReadPlan {
    type Error = Error;

    fn try_from(checkpoint: Checkpoint) -> Result<Self> {
        match checkpoint.position.clone() {
            Position::Partitioned(progress) if !progress.worker => Ok(Self {
                shape: checkpoint,
                progress,
            }),
            _ => Err(Error::config(
                "this is not a read plan: it holds no partitions to hand out (plan the read with EntitySource::plan_read)",
            )),
        }
    }
}

impl From<ReadPlan> for Checkpoint {
    fn from(plan: ReadPlan) -> Self {
        plan.with(plan.progress.clone())
    }
}

impl ReadPlan {
    /// A plan from the progress of a freshly divided partitioned read of `shape`.
    pub(crate) fn new(shape: Checkpoint, progress: Progress) -> Self {
        Self { shape, progress }
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The partitions, in id order.
    pub fn partitions(&self) -> &[Partition] {
        &self.progress.partitions
    }

    /// The checkpoint from which a source reads partition `index` only (it ends without
    /// finishing the read: no delta link, no watermark of its own).
    pub fn worker(&self, index: usize) -> Result<Checkpoint> {
        let partitions = self.partitions();
        let partition = partitions.get(index).ok_or_else(|| {
            Error::config(format!(
                "the read plan has partitions 0 to {}, not {index}",
                partitions.len().saturating_sub(1)
            ))
        })?;
        Ok(self.with(Progress {
            partitions: vec![partition.clone()],
            tracking: None,
            pages: 0,
            worker: true,
            ..self.progress().clone()
        }))
    }

    /// The checkpoint from which a source finishes the read once every worker is done: its
    /// last page carries the checkpoint of the finished read (a delta link for change
    /// tracking, the watermark for `modified_on`).
    pub fn finishing(&self) -> Checkpoint {
        self.with(Progress {
            partitions: Vec::new(),
            pages: 0,
            worker: false,
            ..self.progress().clone()
        })
    }

    fn with(&self, progress: Progress) -> Checkpoint {
        Checkpoint {
            position: Position::Partitioned(progress),
            ..self.shape.clone()
        }
    }
}
