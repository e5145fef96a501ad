//! One page of a read: its changes and the checkpoint after it.

use super::checkpoint::Checkpoint;
use crate::value::Record;

/// What happened to one record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordChange {
    /// The record exists with these values: create it or update it.
    Upsert(Record),
    /// The record was deleted (a change-tracking `$deletedEntity` row).
    Delete {
        /// The deleted record's primary id.
        id: String,
    },
}

impl RecordChange {
    /// The id of the record concerned.
    pub fn id(&self) -> &str {
        match self {
            RecordChange::Upsert(record) => record.id(),
            RecordChange::Delete { id } => id,
        }
    }

    /// The record, for an upsert.
    pub fn record(&self) -> Option<&Record> {
        match self {
            RecordChange::Upsert(record) => Some(record),
            RecordChange::Delete { .. } => None,
        }
    }
}

/// One page of a read, as returned by [`EntitySource::pages`](crate::EntitySource::pages).
///
/// A page owns its decoded records only: the response body it came from is already dropped.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct Page {
    /// The records of the page, in the order Dataverse sent them (for a delta read: upserts,
    /// then deletes). May be empty: a delta read with nothing new returns one empty page whose
    /// checkpoint carries the new delta link.
    pub changes: Vec<RecordChange>,
    /// Where the read stands once this page is processed; store it after the page's records
    /// are written.
    pub checkpoint: Checkpoint,
    /// The page's number in its read, from 1 (a resumed read continues the numbering).
    pub number: u32,
    /// Whether this is the last page of the read.
    pub last: bool,
    /// What Dataverse counted, when the read asked for it
    /// ([`EntitySource::with_count`](crate::EntitySource::with_count)).
    pub counts: PageCounts,
}

/// What Dataverse counted, as a page carries it; each `None` when the page did not carry it.
///
/// `count` comes with `$count=true` ([`EntitySource::with_count`](crate::EntitySource::with_count)).
/// Dataverse counts at most 5,000 rows (500 for elastic tables); the two
/// `total_record_count` annotations, which say whether more rows match, come only when the
/// request's `Prefer` header asks for them, which `EntitySource` does not send yet.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// `@odata.count`: the rows the query matches, up to the limit, whatever the page size.
    pub count: Option<u64>,
    /// `@Microsoft.Dynamics.CRM.totalrecordcount`: the total Dataverse counted, up to the
    /// limit (signed, like the SDK's `EntityCollection.TotalRecordCount`).
    pub total_record_count: Option<i64>,
    /// `@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded`: whether more rows match than
    /// the limit.
    pub total_record_count_limit_exceeded: Option<bool>,
}
