//! Where a read stands, as JSON a host stores between runs.

use crate::value::Record;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How a read finds the records to return.
///
/// Serialized in snake_case: `auto`, `change_tracking`, `modified_on`, `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// [`ChangeTracking`](ReadMode::ChangeTracking) when the table's metadata says change
    /// tracking is enabled and no filter is set (Dataverse refuses `$filter` on change-tracking
    /// reads); otherwise [`ModifiedOn`](ReadMode::ModifiedOn) when the table has a `modifiedon`
    /// column; otherwise [`Full`](ReadMode::Full). A read resumed from a checkpoint keeps the
    /// checkpoint's mode (drop the checkpoint to switch, for example after change tracking was
    /// enabled on the table).
    #[default]
    Auto,
    /// Dataverse change tracking: the first read returns every record and ends with a delta
    /// link; each later read follows it and returns upserts and deletes.
    ChangeTracking,
    /// A watermark on `modifiedon`: each read returns the records modified since the last one.
    /// Deletes are not seen.
    ModifiedOn,
    /// Every record, every time: a checkpoint of a finished full read starts a new full read.
    Full,
}

impl ReadMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReadMode::Auto => "auto",
            ReadMode::ChangeTracking => "change_tracking",
            ReadMode::ModifiedOn => "modified_on",
            ReadMode::Full => "full",
        }
    }
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a read stands: enough for a new process to continue it without re-reading finished
/// pages, or to start the next incremental read.
///
/// Every [`Page`](crate::Page) carries one; store it (it is plain serde JSON) once the page's
/// records are safely written, and hand it to
/// [`EntitySource::resume_from`](crate::EntitySource::resume_from) next time. It records the
/// table, the resolved mode, the columns and the rendered filter it was made for; resuming it
/// with a source for another table, mode, column set or filter is refused.
///
/// ```json
/// {"version":1,"entity":"account","mode":"modified_on","columns":["name"],"filter":null,
///  "position":{"state":"watermark","watermark":{"modified_on":"2024-06-12T14:13:25Z",
///              "seen":{"00000000-0000-0000-0000-000000000020":"W/\"2264380\""}}}}
/// ```
///
/// It holds paging and delta tokens (inside the links): treat it as you would any cursor, and
/// note that its `Debug` output leaves the links' queries out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub(crate) version: u32,
    pub(crate) entity: String,
    pub(crate) mode: ReadMode,
    pub(crate) columns: Vec<String>,
    pub(crate) filter: Option<String>,
    pub(crate) position: Position,
}

/// The current checkpoint format.
pub(crate) const CHECKPOINT_VERSION: u32 = 1;

impl Checkpoint {
    /// The table (logical name) the checkpoint belongs to.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The mode of the read (never [`ReadMode::Auto`]: the resolved one).
    pub fn mode(&self) -> ReadMode {
        self.mode
    }

    /// Whether the read that produced this checkpoint has finished (no page left to fetch).
    /// The next read from it is an incremental one (or, in full mode, a new full read).
    pub fn is_finished(&self) -> bool {
        !matches!(self.position, Position::Reading { .. })
    }

    /// The delta link the next change-tracking read follows, once a change-tracking read has
    /// finished.
    pub fn delta_link(&self) -> Option<&str> {
        match &self.position {
            Position::Delta { delta_link } => Some(delta_link),
            _ => None,
        }
    }

    /// The next link an unfinished read continues with.
    pub fn next_link(&self) -> Option<&str> {
        match &self.position {
            Position::Reading { next_link, .. } => Some(next_link),
            _ => None,
        }
    }

    /// The `modifiedon` watermark of a `modified_on` read: the latest modification time seen
    /// (of the finished read, or so far in an unfinished one).
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        match &self.position {
            Position::Watermark { watermark } => watermark.as_ref().map(|w| w.modified_on),
            Position::Reading { reached, .. } => reached.as_ref().map(|w| w.modified_on),
            _ => None,
        }
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("entity", &self.entity)
            .field("mode", &self.mode)
            .field("columns", &self.columns)
            .field("filter", &self.filter)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// The state of the read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum Position {
    /// The read is unfinished: the rest starts at `next_link`.
    Reading {
        /// The `@odata.nextLink` exactly as Dataverse sent it.
        next_link: String,
        /// Pages of this read already returned.
        pages: u32,
        /// `modified_on` mode: the watermark this read started from; its ids are skipped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Watermark>,
        /// `modified_on` mode: the watermark reached so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reached: Option<Watermark>,
    },
    /// A change-tracking read finished; the next one follows `delta_link`.
    Delta {
        /// The `@odata.deltaLink` exactly as Dataverse sent it.
        delta_link: String,
    },
    /// A `modified_on` read finished at this watermark (none: the table was empty).
    Watermark {
        /// The latest `modifiedon` seen and the records seen at that exact time.
        watermark: Option<Watermark>,
    },
    /// A full read finished.
    Complete,
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Reading {
                next_link,
                pages,
                since,
                reached,
            } => f
                .debug_struct("Reading")
                .field("next_link", &without_query(next_link))
                .field("pages", pages)
                .field("since", since)
                .field("reached", reached)
                .finish(),
            Position::Delta { delta_link } => f
                .debug_struct("Delta")
                .field("delta_link", &without_query(delta_link))
                .finish(),
            Position::Watermark { watermark } => f
                .debug_struct("Watermark")
                .field("watermark", watermark)
                .finish(),
            Position::Complete => f.write_str("Complete"),
        }
    }
}

/// A link without its query (which holds paging or delta tokens).
fn without_query(link: &str) -> String {
    match link.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => link.to_owned(),
    }
}

/// The `modifiedon` boundary of a watermark read.
///
/// `modifiedon` has a resolution of one second, so a record can change again within the
/// second of the watermark. The next read therefore starts at `modifiedon ge` the watermark
/// and skips a boundary record only when its version (etag) is the one already seen.
/// (Checkpoints of 0.1 listed `ids` without versions: those records are written again once,
/// which an upsert makes harmless.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Watermark {
    /// The latest `modifiedon` value seen.
    pub modified_on: DateTime<Utc>,
    /// The records seen with exactly that `modifiedon`: id to etag.
    #[serde(default)]
    pub seen: BTreeMap<String, String>,
}

impl Watermark {
    /// Takes a record modified at `modified_on` into account (records arrive in `modifiedon`
    /// order). A record without an etag is not remembered, so it is read again next time.
    pub fn advance(watermark: &mut Option<Watermark>, modified_on: DateTime<Utc>, record: &Record) {
        let later = watermark
            .as_ref()
            .is_none_or(|w| w.modified_on < modified_on);
        if later {
            *watermark = Some(Watermark {
                modified_on,
                seen: BTreeMap::new(),
            });
        }
        if let Some(w) = watermark.as_mut().filter(|w| w.modified_on == modified_on) {
            if let Some(etag) = record.etag() {
                w.seen.insert(record.id().to_owned(), etag.to_owned());
            }
        }
    }

    /// Whether `record`, modified at `modified_on`, was already seen in this version.
    pub fn has_seen(&self, modified_on: DateTime<Utc>, record: &Record) -> bool {
        self.modified_on == modified_on
            && record
                .etag()
                .is_some_and(|etag| self.seen.get(record.id()).is_some_and(|e| e == etag))
    }
}
