//! Reading one table: a lazy stream of pages, full or incremental, with checkpoints.

mod checkpoint;
mod decode;
mod incremental;
mod outline;
mod page;
mod parallel;
mod partition;
mod plan;
mod query;
mod sql_order;
mod start;

pub use checkpoint::{Checkpoint, ReadMode};
pub use decode::RecordDecoder;
pub use page::{Page, PageCounts, RecordChange};
pub use partition::{MAX_AUTO_PARALLELISM, Parallelism, Partition};
pub use plan::ReadPlan;

pub(crate) use parallel::table_count;

use crate::client::{DataverseClient, Prefer};
use crate::error::{Error, ErrorKind, Result};
use crate::filter::{Filter, is_identifier, printable};
use crate::metadata::{EntityMetadata, lookup_of_value_property};
use checkpoint::{CHECKPOINT_VERSION, Position, Progress};
use futures::{Stream, StreamExt};
use incremental::Reader;
use start::{ReadSettings, ReadStart, start};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The largest page Dataverse serves (`Prefer: odata.maxpagesize`).
pub const MAX_PAGE_SIZE: u32 = 5000;
/// The page size asked for unless set otherwise: the largest.
pub const DEFAULT_PAGE_SIZE: u32 = MAX_PAGE_SIZE;

/// The column the `modified_on` watermark reads.
const MODIFIED_ON: &str = "modifiedon";

/// Reads the records of one table as a lazy stream of [`Page`]s.
///
/// Build it with [`EntitySource::new`] and the `with_*` methods, then call
/// [`pages`](EntitySource::pages). Nothing is checked or sent until the stream is first polled.
///
/// - Only the primary id and the requested columns are selected (`$select`); a lookup,
///   Customer or Owner column is requested by its logical name (`parentcustomerid`) and read
///   from its `_parentcustomerid_value` property.
/// - The [`ReadMode`] picks change tracking, a `modifiedon` watermark or a full read.
/// - Each page carries a [`Checkpoint`]; [`resume_from`](EntitySource::resume_from) continues
///   from it in a later process.
/// - The stream holds one page at a time: the response body is dropped once decoded, and the
///   next page is only requested when the stream is polled again, so a table of any size is
///   read in bounded memory.
///
/// ```no_run
/// # async fn demo(client: d365_connector::DataverseClient, metadata: d365_connector::EntityMetadata,
/// #     saved: Option<d365_connector::Checkpoint>) -> d365_connector::Result<()> {
/// use d365_connector::{EntitySource, ErrorKind, RecordChange};
/// use futures::TryStreamExt;
///
/// let mut source = EntitySource::new(client, metadata).with_columns(["name", "revenue"]);
/// if let Some(checkpoint) = saved {
///     source = source.resume_from(checkpoint);
/// }
/// let mut pages = source.pages();
/// loop {
///     match pages.try_next().await {
///         Ok(Some(page)) => {
///             for change in &page.changes {
///                 match change {
///                     RecordChange::Upsert(record) => { /* write record */ }
///                     RecordChange::Delete { id } => { /* delete id */ }
///                 }
///             }
///             // store page.checkpoint
///         }
///         Ok(None) => break,
///         Err(e) if e.kind() == ErrorKind::ResyncRequired => {
///             // drop the stored checkpoint and read again in full
///             break;
///         }
///         Err(e) => return Err(e),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EntitySource {
    client: DataverseClient,
    metadata: Arc<EntityMetadata>,
    columns: Vec<String>,
    filter: Option<Filter>,
    page_size: u32,
    formatted_values: bool,
    lookup_tables: bool,
    count: bool,
    mode: ReadMode,
    parallelism: Parallelism,
    /// The table's count, when the caller already asked Dataverse for it.
    known_count: Option<u64>,
    checkpoint: Option<Checkpoint>,
}

impl EntitySource {
    /// A source reading the table `metadata` describes through `client`: no columns but the
    /// primary id, no filter, [`DEFAULT_PAGE_SIZE`], no annotations, [`ReadMode::Auto`].
    pub fn new(client: DataverseClient, metadata: impl Into<Arc<EntityMetadata>>) -> Self {
        Self {
            client,
            metadata: metadata.into(),
            columns: Vec::new(),
            filter: None,
            page_size: DEFAULT_PAGE_SIZE,
            formatted_values: false,
            lookup_tables: false,
            count: false,
            mode: ReadMode::Auto,
            parallelism: Parallelism::Fixed(1),
            known_count: None,
            checkpoint: None,
        }
    }

    /// Adds columns to read, by logical name (`name`, `parentcustomerid`). Each is checked
    /// against the metadata when the stream starts; an unknown one is a
    /// [`Config`](ErrorKind::Config) error naming it.
    #[must_use]
    pub fn with_columns<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for column in columns {
            let column = column.into();
            if !self.columns.contains(&column) {
                self.columns.push(column);
            }
        }
        self
    }

    /// Reads only the rows `filter` matches.
    ///
    /// A filtered read cannot use change tracking (Dataverse refuses `$filter` there):
    /// [`ReadMode::Auto`] then uses the `modifiedon` watermark, and
    /// [`ReadMode::ChangeTracking`] is refused with a [`Config`](ErrorKind::Config) error.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The page size asked for (`Prefer: odata.maxpagesize`), 1 to 5000; default
    /// [`DEFAULT_PAGE_SIZE`]. The server may send smaller pages.
    #[must_use]
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// Asks for formatted values (choice labels, formatted money and dates) in
    /// [`Field::formatted`](crate::Field::formatted). Off by default: turn it on only when a
    /// mapping needs them.
    #[must_use]
    pub fn with_formatted_values(mut self, wanted: bool) -> Self {
        self.formatted_values = wanted;
        self
    }

    /// Asks for the table each lookup points at in
    /// [`Field::lookup_entity`](crate::Field::lookup_entity) (needed to tell an account from a
    /// contact in a Customer column). Off by default.
    #[must_use]
    pub fn with_lookup_tables(mut self, wanted: bool) -> Self {
        self.lookup_tables = wanted;
        self
    }

    /// Asks Dataverse to count the rows the read matches (`$count=true` on its first request),
    /// for progress: see [`Page::counts`]. Off by default.
    #[must_use]
    pub fn with_count(mut self, wanted: bool) -> Self {
        self.count = wanted;
        self
    }

    /// How to read; default [`ReadMode::Auto`].
    #[must_use]
    pub fn with_mode(mut self, mode: ReadMode) -> Self {
        self.mode = mode;
        self
    }

    /// Reads a table's first read (a full read, or the first read of a change-tracking or
    /// `modified_on` source) as several concurrent partitions: contiguous ranges of primary
    /// ids in SQL Server's order that together cover the table exactly once, split again
    /// whenever one finishes early. Default: `Fixed(1)`, one sequential read.
    ///
    /// Pages then arrive in no particular order, and only their checkpoints say where the read
    /// stands: a resumed read continues every unfinished range and reads no finished one
    /// again. Incremental reads (a delta or watermark checkpoint) stay sequential. The client's
    /// throttle governor keeps the partitions within Dataverse's limits.
    #[must_use]
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// Gives the table's count (`RetrieveTotalRecordCount`) when the caller already has it, so
    /// that a partitioned read does not ask for it again.
    pub(crate) fn with_known_count(mut self, count: Option<u64>) -> Self {
        self.known_count = count;
        self
    }

    /// Plans this source's first read in `partitions` partitions to be read by separate
    /// workers (see [`ReadPlan`]), sending the few requests that need: the first page of the
    /// change-tracking read for a change-tracking source (so that its delta link covers every
    /// change made after the workers begin), the latest `modifiedon` for a `modified_on`
    /// source, and two one-row requests per partition boundary, which come from the ids the
    /// table holds. Fewer partitions come back when the table has fewer ids.
    ///
    /// A source resuming a checkpoint cannot be planned (the plan is of a first read).
    pub async fn plan_read(self, partitions: usize) -> Result<ReadPlan> {
        if self.checkpoint.is_some() {
            return Err(Error::config(
                "a read plan is of a first read; plan it with a source that resumes no checkpoint",
            ));
        }
        let parallelism = Parallelism::Fixed(u16::try_from(partitions.max(1)).unwrap_or(u16::MAX));
        match self.with_parallelism(parallelism).plan()? {
            Plan::Partitioned(shape, parallelism, None) => {
                let read = parallel::PartitionedRead::begin(*shape, parallelism, None).await?;
                read.plan(partitions).await
            }
            _ => Err(Error::config(
                "this source's read cannot be partitioned; use parallelism 1",
            )),
        }
    }

    /// Continues from a checkpoint a previous read returned (possibly in another process):
    /// the rest of an unfinished read, or the next incremental read after a finished one.
    ///
    /// The checkpoint must have been made for the same table, columns, filter and (resolved)
    /// mode; otherwise (a job whose mapping changed, say) the stream fails with
    /// [`ResyncRequired`](ErrorKind::ResyncRequired) before sending anything, as it does for a
    /// change-tracking checkpoint of a table whose metadata no longer enables change tracking.
    #[must_use]
    pub fn resume_from(mut self, checkpoint: Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// The pages of the read, lazily: nothing is checked or sent before the first poll, and
    /// each poll sends at most one request.
    ///
    /// The stream ends after the last page. After an error it ends too; the error is:
    /// - [`Config`](ErrorKind::Config) for a bad setup (unknown column, invalid filter),
    ///   reported before any request;
    /// - [`ResyncRequired`](ErrorKind::ResyncRequired) when the read cannot continue from its
    ///   checkpoint: the delta token expired (`0x80044352`), the table is no longer enabled for
    ///   change tracking (`0x80072491`), or the checkpoint was made for another table, mode,
    ///   column set or filter (reported before any request). Read the table again without the
    ///   checkpoint, and treat the records missing from that full read as deleted. This is
    ///   never reported as an empty page;
    /// - [`Protocol`](ErrorKind::Protocol) for a next or delta link to another origin (refused
    ///   before anything is sent to it);
    /// - otherwise the errors of [`DataverseClient`] and [`Decode`](ErrorKind::Decode) errors
    ///   naming the page and record.
    pub fn pages(self) -> impl Stream<Item = Result<Page>> + Send + Unpin + 'static {
        enum State {
            Configured(Box<EntitySource>),
            Reading(Box<Read>),
            Finished,
        }
        futures::stream::try_unfold(State::Configured(Box::new(self)), |state| async move {
            let mut read = match state {
                State::Configured(source) => Box::new(source.plan()?.open().await?),
                State::Reading(read) => read,
                State::Finished => return Ok(None),
            };
            let Some(page) = read.next_page().await? else {
                return Ok(None);
            };
            let next = if page.last {
                State::Finished
            } else {
                State::Reading(read)
            };
            Ok(Some((page, next)))
        })
        .boxed()
    }

    /// Checks the setup and works out how the read starts; sends nothing.
    fn plan(self) -> Result<Plan> {
        let settings = self.settings()?;
        let decoder = RecordDecoder::new(Arc::clone(&self.metadata));
        Ok(match start(&settings, self.checkpoint)? {
            ReadStart::Sequential(at) => {
                let base = settings.base;
                let reader = Reader::new(self.client, decoder, settings.prefer, base, at)?;
                Plan::Sequential(Box::new(reader))
            }
            ReadStart::Partitioned(progress) => {
                let shape = parallel::Shape::new(self.client, decoder, settings, self.known_count);
                Plan::Partitioned(Box::new(shape), self.parallelism, progress)
            }
        })
    }

    /// The read's settings: the setup checked against the metadata (every problem with the
    /// columns and the filter reported at once, as a [`Config`](ErrorKind::Config) error) and
    /// the mode resolved.
    fn settings(&self) -> Result<ReadSettings> {
        self.check_table_and_page_size()?;
        let (mut select, filter) = self.select_and_filter()?;
        let mode = self.resolve_mode(filter.is_some())?;
        if mode == ReadMode::ModifiedOn && !select.iter().any(|s| s == MODIFIED_ON) {
            select.push(MODIFIED_ON.to_owned());
        }
        let columns = self.columns.iter().cloned().collect::<BTreeSet<_>>();
        Ok(ReadSettings {
            base: Checkpoint {
                version: CHECKPOINT_VERSION,
                entity: self.metadata.logical_name().to_owned(),
                mode,
                columns: columns.into_iter().collect(),
                filter,
                position: Position::Complete,
                runs: 0,
            },
            entity_set: self.metadata.entity_set_name().to_owned(),
            primary: self.metadata.primary_id_attribute().to_owned(),
            select,
            prefer: Prefer {
                max_page_size: Some(self.page_size),
                formatted_values: self.formatted_values,
                lookup_tables: self.lookup_tables,
                total_count: self.count,
                track_changes: mode == ReadMode::ChangeTracking,
            },
            parallelism: self.parallelism,
        })
    }

    /// Refuses metadata whose names cannot be put in a URL, and a page size Dataverse does not
    /// serve.
    fn check_table_and_page_size(&self) -> Result<()> {
        let metadata = &self.metadata;
        if !is_identifier(metadata.entity_set_name())
            || !is_identifier(metadata.primary_id_attribute())
        {
            return Err(Error::config(format!(
                "the metadata of `{}` has an invalid entity set name or primary id attribute",
                metadata.logical_name()
            )));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(Error::config(format!(
                "the page size {} is out of range; Dataverse pages hold 1 to {MAX_PAGE_SIZE} records",
                self.page_size
            )));
        }
        Ok(())
    }

    /// `$select` (the primary id, then each column's property) and the rendered filter; every
    /// unknown or unreadable column is reported at once.
    fn select_and_filter(&self) -> Result<(Vec<String>, Option<String>)> {
        let metadata = &self.metadata;
        let mut problems = Vec::new();
        let mut select = vec![metadata.primary_id_attribute().to_owned()];
        for column in &self.columns {
            match property_of(metadata, column) {
                Ok(property) if !select.contains(&property) => select.push(property),
                Ok(_) => {}
                Err(problem) => problems.push(problem),
            }
        }
        let mut resolve = |column: &str| property_of(metadata, column).map_err(Error::config);
        let filter = match self.filter.as_ref().map(|f| f.render(&mut resolve)) {
            Some(Ok(rendered)) => Some(rendered),
            Some(Err(e)) => {
                problems.push(e.to_string());
                None
            }
            None => None,
        };
        if !problems.is_empty() {
            return Err(Error::config(format!(
                "cannot read `{}`: {}",
                metadata.logical_name(),
                problems.join("; ")
            )));
        }
        Ok((select, filter))
    }

    /// Picks the mode for this read.
    fn resolve_mode(&self, filtered: bool) -> Result<ReadMode> {
        let metadata = &self.metadata;
        let table = metadata.logical_name();
        let has_modified_on = metadata.attribute(MODIFIED_ON).is_some();
        let tracked = metadata.change_tracking_enabled();
        let resuming_delta = self
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.mode == ReadMode::ChangeTracking && c.entity == table);
        let lost_tracking = || {
            Error::new(
                ErrorKind::ResyncRequired,
                format!(
                    "`{table}` is no longer enabled for change tracking, so the checkpoint's delta link cannot be followed; read the table again without the checkpoint and treat records missing from that read as deleted"
                ),
            )
        };
        // A resumed read keeps the mode of its checkpoint, even in auto mode.
        let requested = match (self.mode, &self.checkpoint) {
            (ReadMode::Auto, Some(checkpoint)) if checkpoint.entity == table => checkpoint.mode,
            (mode, _) => mode,
        };
        match requested {
            ReadMode::Auto if tracked && !filtered => Ok(ReadMode::ChangeTracking),
            ReadMode::Auto if has_modified_on => Ok(ReadMode::ModifiedOn),
            ReadMode::Auto | ReadMode::Full => Ok(ReadMode::Full),
            ReadMode::ChangeTracking if filtered => Err(Error::config(format!(
                "a change-tracking read of `{table}` cannot be filtered (Dataverse refuses $filter with change tracking); remove the filter, or use the modified_on or full mode"
            ))),
            ReadMode::ChangeTracking if !tracked && resuming_delta => Err(lost_tracking()),
            ReadMode::ChangeTracking if !tracked => Err(Error::config(format!(
                "`{table}` is not enabled for change tracking; enable it on the table or use the modified_on or auto mode"
            ))),
            ReadMode::ChangeTracking => Ok(ReadMode::ChangeTracking),
            ReadMode::ModifiedOn if !has_modified_on => Err(Error::config(format!(
                "`{table}` has no `modifiedon` column, so it cannot be read incrementally by watermark; use the full mode"
            ))),
            ReadMode::ModifiedOn => Ok(ReadMode::ModifiedOn),
        }
    }
}

/// How a read starts: one reader following links, or ranges read in parallel.
enum Plan {
    Sequential(Box<Reader>),
    Partitioned(Box<parallel::Shape>, Parallelism, Option<Progress>),
}

impl Plan {
    /// Sends what must be known before the first page (for partitions: the id range).
    async fn open(self) -> Result<Read> {
        Ok(match self {
            Plan::Sequential(reader) => Read::Sequential(reader),
            Plan::Partitioned(shape, parallelism, start) => Read::Partitioned(Box::new(
                parallel::PartitionedRead::begin(*shape, parallelism, start).await?,
            )),
        })
    }
}

/// A read in progress.
enum Read {
    Sequential(Box<Reader>),
    Partitioned(Box<parallel::PartitionedRead>),
}

impl Read {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        match self {
            Read::Sequential(reader) => reader.next_page().await.map(Some),
            Read::Partitioned(read) => read.next_page().await,
        }
    }
}

/// The Web API property of column `column` (`_x_value` for lookups), or why it cannot be read.
fn property_of(metadata: &EntityMetadata, column: &str) -> std::result::Result<String, String> {
    let Some(attribute) = metadata.attribute(column) else {
        let hint = lookup_of_value_property(column)
            .filter(|c| metadata.attribute(c).is_some())
            .map(|c| format!(" (name lookup columns by their logical name, `{c}`)"))
            .unwrap_or_default();
        return Err(format!(
            "`{}` is not a column of `{}`{hint}",
            printable(column),
            metadata.logical_name()
        ));
    };
    if let Some(owner) = attribute.attribute_of() {
        return Err(format!(
            "`{column}` is generated from `{owner}` and cannot be read on its own; read `{owner}`"
        ));
    }
    if !attribute.is_valid_for_read() {
        return Err(format!(
            "`{column}` cannot be read (IsValidForRead is false)"
        ));
    }
    if !is_identifier(column) {
        return Err(format!(
            "`{}` is not a valid column name",
            printable(column)
        ));
    }
    if attribute.attribute_type().is_lookup() {
        Ok(format!("_{column}_value"))
    } else {
        Ok(column.to_owned())
    }
}
