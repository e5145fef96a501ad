//! Where a read starts, worked out without I/O from a source's checked settings and the
//! checkpoint it resumes: the first request, the pages read so far and the watermarks, or the
//! partitions of a partitioned read.

use super::MODIFIED_ON;
use super::checkpoint::{CHECKPOINT_VERSION, Checkpoint, Position, Progress, ReadMode, Watermark};
use super::partition::Parallelism;
use super::query::{Query, all_of};
use crate::client::Prefer;
use crate::error::{Error, ErrorKind, Result};
use crate::filter::FilterValue;
use std::fmt;

/// A source's settings, checked against the table's metadata, with the mode resolved.
#[derive(Debug, Clone)]
pub(super) struct ReadSettings {
    /// The checkpoint fields every page of the read carries: table, mode, columns, filter.
    pub base: Checkpoint,
    /// The table's entity set (`accounts`).
    pub entity_set: String,
    /// The table's primary id column (`accountid`).
    pub primary: String,
    /// `$select`: the primary id, the columns' properties and, for a `modified_on` read,
    /// `modifiedon`.
    pub select: Vec<String>,
    /// The preferences of the read's pages; `total_count` also asks for `$count=true`.
    pub prefer: Prefer,
    /// How many partitions a first read may use.
    pub parallelism: Parallelism,
}

/// How a read starts.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReadStart {
    /// One reader following the server's links from its first request.
    Sequential(SequentialStart),
    /// Ranges of ids read in parallel: a fresh first read, or a checkpoint's unfinished ranges.
    Partitioned(Option<Progress>),
}

/// Where a reader following links starts, and what its read returned before.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SequentialStart {
    /// The first request.
    pub first: FirstRequest,
    /// Pages of this read already returned.
    pub pages: u32,
    /// `modified_on`: the watermark the read started from (its records are skipped).
    pub since: Option<Watermark>,
    /// `modified_on`: the watermark reached so far.
    pub reached: Option<Watermark>,
}

impl SequentialStart {
    /// A read that starts with `first` and has returned nothing yet.
    pub fn fresh(first: FirstRequest) -> Self {
        Self {
            first,
            pages: 0,
            since: None,
            reached: None,
        }
    }
}

/// The first request of a reader.
#[derive(PartialEq, Eq)]
pub(super) enum FirstRequest {
    /// A query of the crate's own, relative to the Web API base (`accounts?$select=accountid`).
    Query(String),
    /// A link a checkpoint holds, sent as written once checked to be the instance's.
    Link {
        /// The link, holding a paging or delta token.
        link: String,
        /// What the link is, for errors (`delta link of the checkpoint`).
        what: &'static str,
    },
}

impl fmt::Debug for FirstRequest {
    /// Leaves the link out: it holds a paging or delta token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirstRequest::Query(path) => f.debug_tuple("Query").field(path).finish(),
            FirstRequest::Link { what, .. } => f
                .debug_struct("Link")
                .field("what", what)
                .finish_non_exhaustive(),
        }
    }
}

/// Where the read `settings` describe starts, continuing `checkpoint` when given. A checkpoint
/// made for another read is refused with [`ResyncRequired`](ErrorKind::ResyncRequired).
pub(super) fn start(settings: &ReadSettings, checkpoint: Option<Checkpoint>) -> Result<ReadStart> {
    let position = checkpoint
        .map(|checkpoint| accept_checkpoint(&settings.base, checkpoint))
        .transpose()?;
    Ok(match position {
        Some(Position::Partitioned(progress)) => ReadStart::Partitioned(Some(progress)),
        None | Some(Position::Complete) if !settings.parallelism.is_sequential() => {
            ReadStart::Partitioned(None)
        }
        position => ReadStart::Sequential(sequential_start(settings, position)),
    })
}

/// Where a sequential read starts from `position` (none: from the beginning).
fn sequential_start(settings: &ReadSettings, position: Option<Position>) -> SequentialStart {
    match position {
        Some(Position::Reading {
            next_link,
            pages,
            since,
            reached,
        }) => SequentialStart {
            first: FirstRequest::Link {
                link: next_link,
                what: "next link of the checkpoint",
            },
            pages,
            since,
            reached,
        },
        Some(Position::Delta { delta_link }) => SequentialStart::fresh(FirstRequest::Link {
            link: delta_link,
            what: "delta link of the checkpoint",
        }),
        Some(Position::Watermark { watermark }) => SequentialStart {
            first: FirstRequest::Query(first_query(settings, watermark.as_ref())),
            pages: 0,
            since: watermark.clone(),
            reached: watermark,
        },
        Some(Position::Complete | Position::Partitioned(_)) | None => {
            SequentialStart::fresh(FirstRequest::Query(first_query(settings, None)))
        }
    }
}

/// The first request of a read from the beginning (or from the watermark `since`): the
/// columns, the filter, the `modified_on` order and the count.
fn first_query(settings: &ReadSettings, since: Option<&Watermark>) -> String {
    let after_watermark = since.map(|watermark| {
        format!(
            "{MODIFIED_ON} ge {}",
            FilterValue::date_time_utc(watermark.modified_on)
        )
    });
    let filter = all_of(after_watermark, settings.base.filter.clone());
    let order_by = (settings.base.mode == ReadMode::ModifiedOn)
        .then(|| format!("{MODIFIED_ON} asc,{} asc", settings.primary));
    Query {
        select: &settings.select.join(","),
        filter: filter.as_deref(),
        order_by: order_by.as_deref(),
        count: settings.prefer.total_count,
    }
    .path(&settings.entity_set)
}

/// Accepts a checkpoint made for exactly the read `base` describes, returning its position.
/// One made for another table, mode, column set or filter (a job whose mapping changed) cannot
/// say what this read has not seen yet: that asks for a full read, as an expired delta token
/// does.
fn accept_checkpoint(base: &Checkpoint, checkpoint: Checkpoint) -> Result<Position> {
    if checkpoint.version != CHECKPOINT_VERSION {
        return Err(Error::new(
            ErrorKind::ResyncRequired,
            format!(
                "the checkpoint has format version {}, this crate reads version {CHECKPOINT_VERSION}; read everything again without it",
                checkpoint.version
            ),
        ));
    }
    let differences = differences(base, &checkpoint);
    if !differences.is_empty() {
        return Err(Error::new(
            ErrorKind::ResyncRequired,
            format!(
                "the checkpoint cannot be resumed by this source: {}; read everything again without it (or resume it with the source it was made for)",
                differences.join("; ")
            ),
        ));
    }
    Ok(checkpoint.position)
}

/// How `checkpoint` differs from the read `base` describes, one sentence each.
fn differences(base: &Checkpoint, checkpoint: &Checkpoint) -> Vec<String> {
    let mut differences = Vec::new();
    if checkpoint.entity != base.entity {
        differences.push(format!(
            "it was made for table `{}`, this source reads `{}`",
            checkpoint.entity, base.entity
        ));
    }
    if checkpoint.mode != base.mode {
        differences.push(format!(
            "it was made for a {} read, this source reads in {} mode",
            checkpoint.mode, base.mode
        ));
    }
    if checkpoint.columns != base.columns {
        differences.push(format!(
            "it was made for the columns [{}], this source reads [{}]",
            checkpoint.columns.join(", "),
            base.columns.join(", ")
        ));
    }
    if checkpoint.filter != base.filter {
        differences.push(format!(
            "it was made for the filter {}, this source uses {}",
            describe_filter(checkpoint.filter.as_deref()),
            describe_filter(base.filter.as_deref())
        ));
    }
    if checkpoint.mode == base.mode && !belongs_to(&checkpoint.position, base.mode) {
        differences.push(format!(
            "its position does not belong to a {} read",
            base.mode
        ));
    }
    differences
}

/// Whether `position` can be where a read in `mode` stands.
fn belongs_to(position: &Position, mode: ReadMode) -> bool {
    matches!(
        (position, mode),
        (Position::Reading { .. } | Position::Partitioned(_), _)
            | (Position::Delta { .. }, ReadMode::ChangeTracking)
            | (Position::Watermark { .. }, ReadMode::ModifiedOn)
            | (Position::Complete, ReadMode::Full)
    )
}

/// A rendered filter for a message.
fn describe_filter(filter: Option<&str>) -> String {
    filter.map_or_else(|| "(none)".to_owned(), |f| format!("`{f}`"))
}
