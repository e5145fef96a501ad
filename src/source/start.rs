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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StaticTokenAuthorizer;
    use crate::client::DataverseClient;
    use crate::connection::Connection;
    use crate::filter::Filter;
    use crate::metadata::{AttributeMetadata, AttributeType, EntityMetadata};
    use crate::secret::AccessToken;
    use crate::source::{EntitySource, Partition};
    use chrono::{DateTime, Utc};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// `account` with a name, a lookup and `modifiedon`.
    fn account(change_tracking: bool) -> EntityMetadata {
        EntityMetadata::new("account", "accounts", "accountid")
            .with_change_tracking(change_tracking)
            .with_attribute(AttributeMetadata::new(
                "accountid",
                AttributeType::Uniqueidentifier,
            ))
            .with_attribute(AttributeMetadata::new("name", AttributeType::String))
            .with_attribute(AttributeMetadata::new(
                "primarycontactid",
                AttributeType::Lookup,
            ))
            .with_attribute(AttributeMetadata::new(
                "modifiedon",
                AttributeType::DateTime,
            ))
    }

    /// A source of `metadata` reading `name` and `primarycontactid`; its client sends nothing.
    fn source(metadata: EntityMetadata) -> EntitySource {
        let connection = Connection::builder("t", "https://contoso.crm.dynamics.com")
            .build()
            .unwrap();
        let authorizer = Arc::new(StaticTokenAuthorizer::new(AccessToken::new("t")));
        let client = DataverseClient::new(connection, authorizer).unwrap();
        EntitySource::new(client, metadata).with_columns(["name", "primarycontactid"])
    }

    fn settings(source: EntitySource) -> ReadSettings {
        source.settings().unwrap()
    }

    /// The settings' checkpoint at `position`.
    fn checkpoint(settings: &ReadSettings, position: Position) -> Checkpoint {
        Checkpoint {
            position,
            ..settings.base.clone()
        }
    }

    fn watermark() -> Watermark {
        Watermark {
            modified_on: "2024-06-12T14:13:25Z".parse::<DateTime<Utc>>().unwrap(),
            seen: BTreeMap::from([("id-1".to_owned(), "W/\"7\"".to_owned())]),
        }
    }

    fn query(path: &str) -> ReadStart {
        ReadStart::Sequential(SequentialStart::fresh(FirstRequest::Query(path.to_owned())))
    }

    #[test]
    fn a_fresh_full_read_starts_with_the_columns_and_the_count() {
        let settings = settings(
            source(account(false))
                .with_mode(ReadMode::Full)
                .with_count(true),
        );
        assert_eq!(
            start(&settings, None).unwrap(),
            query("accounts?$select=accountid,name,_primarycontactid_value&$count=true")
        );
    }

    #[test]
    fn a_first_change_tracking_read_asks_to_track_changes() {
        let settings = settings(source(account(true)));
        assert_eq!(settings.base.mode, ReadMode::ChangeTracking);
        assert!(settings.prefer.track_changes);
        assert_eq!(
            start(&settings, None).unwrap(),
            query("accounts?$select=accountid,name,_primarycontactid_value")
        );
    }

    #[test]
    fn a_finished_change_tracking_read_resumes_at_its_delta_link() {
        let settings = settings(source(account(true)));
        let delta_link =
            "https://contoso.crm.dynamics.com/api/data/v9.2/accounts?$deltatoken=9%2110";
        let resumed = checkpoint(
            &settings,
            Position::Delta {
                delta_link: delta_link.to_owned(),
            },
        );
        assert_eq!(
            start(&settings, Some(resumed)).unwrap(),
            ReadStart::Sequential(SequentialStart::fresh(FirstRequest::Link {
                link: delta_link.to_owned(),
                what: "delta link of the checkpoint",
            }))
        );
    }

    #[test]
    fn an_unfinished_read_resumes_at_its_next_link_with_its_pages_and_watermarks() {
        let settings = settings(source(account(false)).with_mode(ReadMode::ModifiedOn));
        let next_link = "https://contoso.crm.dynamics.com/api/data/v9.2/accounts?$skiptoken=x";
        let position = Position::Reading {
            next_link: next_link.to_owned(),
            pages: 3,
            since: Some(watermark()),
            reached: None,
        };
        let ReadStart::Sequential(at) =
            start(&settings, Some(checkpoint(&settings, position))).unwrap()
        else {
            panic!("an unfinished watermark read resumes sequentially");
        };
        assert_eq!(
            at,
            SequentialStart {
                first: FirstRequest::Link {
                    link: next_link.to_owned(),
                    what: "next link of the checkpoint",
                },
                pages: 3,
                since: Some(watermark()),
                reached: None,
            }
        );
    }

    #[test]
    fn a_modified_on_read_resumes_from_its_watermark_after_the_user_filter() {
        let settings = settings(
            source(account(true))
                .with_filter(Filter::raw("statecode eq 0"))
                .with_mode(ReadMode::Auto),
        );
        assert_eq!(settings.base.mode, ReadMode::ModifiedOn);
        let position = Position::Watermark {
            watermark: Some(watermark()),
        };
        let ReadStart::Sequential(at) =
            start(&settings, Some(checkpoint(&settings, position))).unwrap()
        else {
            panic!("a watermark read is sequential");
        };
        assert_eq!(
            at.first,
            FirstRequest::Query(
                "accounts?$select=accountid,name,_primarycontactid_value,modifiedon\
                 &$filter=(modifiedon%20ge%202024-06-12T14:13:25Z)%20and%20(statecode%20eq%200)\
                 &$orderby=modifiedon%20asc,accountid%20asc"
                    .to_owned()
            )
        );
        assert_eq!(
            (at.pages, at.since, at.reached),
            (0, Some(watermark()), Some(watermark()))
        );
    }

    #[test]
    fn a_checkpoint_of_another_read_asks_for_a_resync() {
        let settings = settings(source(account(false)).with_mode(ReadMode::Full));
        let other = Checkpoint {
            entity: "contact".to_owned(),
            mode: ReadMode::ModifiedOn,
            columns: vec!["name".to_owned()],
            filter: Some("statecode eq 0".to_owned()),
            ..checkpoint(&settings, Position::Watermark { watermark: None })
        };
        let error = start(&settings, Some(other)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ResyncRequired);
        let message = error.to_string();
        for difference in [
            "made for table `contact`, this source reads `account`",
            "made for a modified_on read, this source reads in full mode",
            "made for the columns [name], this source reads [name, primarycontactid]",
            "made for the filter `statecode eq 0`, this source uses (none)",
        ] {
            assert!(message.contains(difference), "{message}");
        }
        let misplaced = checkpoint(&settings, Position::Watermark { watermark: None });
        let error = start(&settings, Some(misplaced)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ResyncRequired);
        assert!(
            error.to_string().contains("does not belong to a full read"),
            "{error}"
        );
        let old = Checkpoint {
            version: CHECKPOINT_VERSION + 1,
            ..checkpoint(&settings, Position::Complete)
        };
        assert_eq!(
            start(&settings, Some(old)).unwrap_err().kind(),
            ErrorKind::ResyncRequired
        );
    }

    #[test]
    fn first_reads_and_partitioned_positions_are_read_in_partitions() {
        let parallel = settings(source(account(true)).with_parallelism(Parallelism::Fixed(4)));
        assert_eq!(
            start(&parallel, None).unwrap(),
            ReadStart::Partitioned(None)
        );
        let delta = Position::Delta {
            delta_link: "https://contoso.crm.dynamics.com/api/data/v9.2/accounts?$deltatoken=1"
                .to_owned(),
        };
        assert!(matches!(
            start(&parallel, Some(checkpoint(&parallel, delta))).unwrap(),
            ReadStart::Sequential(_)
        ));
        let progress = Progress {
            partitions: vec![Partition::whole()],
            tracking: None,
            since: None,
            seen: BTreeMap::new(),
            pages: 2,
            worker: true,
        };
        let sequential = settings(source(account(true)));
        let resumed = checkpoint(&sequential, Position::Partitioned(progress.clone()));
        assert_eq!(
            start(&sequential, Some(resumed)).unwrap(),
            ReadStart::Partitioned(Some(progress))
        );
    }
}
