//! A partitioned read: the first read of a table as several concurrent ranges of primary ids,
//! split again whenever a slot runs out of work, with a checkpoint that resumes every
//! unfinished range.
//!
//! Each range is read in id order with keyset queries (`$filter=<id> gt <last read> and <id> le
//! <upto>&$orderby=<id>`), so a range can be cut short at any time: a slot that finishes early
//! takes the upper half of the range with the most work left. A range's next page is asked for
//! from the outline of the page that arrived ([`Outline`]), before that page is decoded; the
//! last pages ask for an equal share of the rows left, so that the slots finish together.
//!
//! For change tracking, an ids-only change-tracking read of the whole table starts first and
//! runs alongside: its delta link covers every change made after the data read began. For
//! `modified_on`, the watermark is the latest `modifiedon` before the read began.

use super::MODIFIED_ON;
use super::checkpoint::{Checkpoint, Position, Progress, ReadMode, Tracking, Watermark};
use super::decode::RecordDecoder;
use super::incremental::Reader;
use super::outline::Outline;
use super::page::{Page, PageCounts, RecordChange};
use super::partition::{Bounds, Parallelism, Partition};
use super::plan::ReadPlan;
use super::query::{Query, all_of, with_select};
use super::sql_order::SqlGuid;
use super::start::{FirstRequest, ReadSettings, SequentialStart};
use crate::client::{DataverseClient, Prefer};
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use url::Url;

/// What every request of the read shares.
pub(super) struct Shape {
    client: DataverseClient,
    decoder: RecordDecoder,
    /// The data pages' preferences (never change tracking).
    prefer: Prefer,
    /// `$select`, joined.
    select: String,
    /// The user's filter, rendered.
    filter: Option<String>,
    /// The table's count, when the caller already asked for it.
    known_count: Option<u64>,
    /// The checkpoint fields that do not change during the read.
    base: Checkpoint,
}

impl Shape {
    /// The shape of a partitioned read of `settings` (the table's count given when known).
    pub fn new(
        client: DataverseClient,
        decoder: RecordDecoder,
        settings: ReadSettings,
        known_count: Option<u64>,
    ) -> Self {
        Self {
            client,
            decoder,
            prefer: Prefer {
                track_changes: false,
                ..settings.prefer
            },
            select: settings.select.join(","),
            filter: settings.base.filter.clone(),
            known_count,
            base: settings.base,
        }
    }

    fn primary(&self) -> &str {
        self.decoder.metadata().primary_id_attribute()
    }

    /// `<set>?$select=..&$filter=..&$orderby=..`, the filter being the user's and `extra`.
    fn url(&self, select: &str, extra: Option<String>, orderby: &str) -> Result<Url> {
        let filter = all_of(self.filter.clone(), extra);
        let query = Query {
            select,
            filter: filter.as_deref(),
            order_by: Some(orderby),
            count: false,
        };
        let set = self.decoder.metadata().entity_set_name();
        self.client.web_api_url(&query.path(set))
    }

    /// The first value of `column` among the rows `extra` selects, in the order `orderby`,
    /// from a one-row page.
    async fn first_value(
        &self,
        column: &str,
        extra: Option<String>,
        orderby: &str,
    ) -> Result<Option<String>> {
        let url = self.url(column, extra, orderby)?;
        let prefer = Prefer {
            max_page_size: Some(1),
            ..Prefer::default()
        };
        let response = self.client.get(url.as_str(), &prefer).await?;
        #[derive(serde::Deserialize)]
        struct Rows {
            value: Vec<BTreeMap<String, serde_json::Value>>,
        }
        let rows: Rows = serde_json::from_slice(&response.body).map_err(|e| {
            Error::decode(format!(
                "the answer to GET {} is not a page of rows ({e})",
                url.path()
            ))
        })?;
        Ok(rows
            .value
            .first()
            .and_then(|row| row.get(column))
            .and_then(|value| value.as_str())
            .map(str::to_owned))
    }

    /// The smallest (`last`: largest) primary id in `bounds`, if any.
    async fn edge_id(&self, bounds: Bounds, last: bool) -> Result<Option<SqlGuid>> {
        let primary = self.primary();
        let order = if last { "desc" } else { "asc" };
        self.first_value(
            primary,
            bounds.filter(primary),
            &format!("{primary} {order}"),
        )
        .await?
        .map(|id| parse_id(&id))
        .transpose()
    }

    /// The smallest and largest primary id in `bounds`, if any.
    async fn id_range(&self, bounds: Bounds) -> Result<Option<(SqlGuid, SqlGuid)>> {
        match self.edge_id(bounds, false).await? {
            Some(first) => Ok(self.edge_id(bounds, true).await?.map(|last| (first, last))),
            None => Ok(None),
        }
    }

    /// The table's row count (see [`table_count`]), asked for unless the caller knows it.
    async fn table_count(&self) -> Option<u64> {
        match self.known_count {
            Some(count) => Some(count),
            None => table_count(&self.client, self.decoder.metadata().logical_name()).await,
        }
    }

    /// The latest `modifiedon` before the read begins.
    async fn latest_modified_on(&self) -> Result<Option<DateTime<Utc>>> {
        let text = self
            .first_value(MODIFIED_ON, None, &format!("{MODIFIED_ON} desc"))
            .await?;
        text.map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| Error::decode(format!("`{MODIFIED_ON}` `{t}` is not a date ({e})")))
        })
        .transpose()
    }

    /// One page of at most `rows` rows of the range `bounds`, in id order, fetched and outlined
    /// on a task of its own; it waits as its bytes, to be decoded when its turn comes. The
    /// task ends when the returned handle is dropped.
    fn fetch(self: &Arc<Self>, bounds: Bounds, rows: u32) -> AbortOnDrop<Result<Arrived>> {
        let shape = Arc::clone(self);
        AbortOnDrop(tokio::spawn(async move {
            let primary = shape.primary();
            let url = shape.url(
                &shape.select,
                bounds.filter(primary),
                &format!("{primary} asc"),
            )?;
            let prefer = Prefer {
                max_page_size: Some(rows),
                ..shape.prefer
            };
            let sent = Instant::now();
            let body = shape.client.get(url.as_str(), &prefer).await?.body;
            let took = sent.elapsed();
            let outline = Outline::read(&body, primary).map_err(|e| shape.undecodable(&e))?;
            Ok(Arrived {
                outline,
                body,
                took,
            })
        }))
    }

    /// The error for a page that is not one: `problem` says why.
    fn undecodable(&self, problem: &str) -> Error {
        Error::decode(format!(
            "a page of `{}` could not be decoded: {problem}",
            self.base.entity
        ))
    }

    /// Decodes a page `fetch` returned.
    fn decode(&self, body: &[u8]) -> Result<Fetched> {
        let decoded = self
            .decoder
            .decode_page(body)
            .map_err(|e| self.undecodable(&e))?;
        Ok(Fetched {
            changes: decoded.changes,
            counts: decoded.counts,
        })
    }
}

/// The row count of `table` from `RetrieveTotalRecordCount` (a snapshot up to a day old), or
/// `None` when Dataverse gives none. Only a hint (for dividing a read, for a progress estimate):
/// a failure here surfaces again on the read's own requests.
pub(crate) async fn table_count(client: &DataverseClient, table: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Counts {
        entity_record_count_collection: Collection,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Collection {
        values: Vec<u64>,
    }
    let path = format!("RetrieveTotalRecordCount(EntityNames=@p)?@p=%5B%27{table}%27%5D");
    let counts: Counts = client.get_json(&path).await.ok()?;
    counts
        .entity_record_count_collection
        .values
        .first()
        .copied()
}

fn parse_id(text: &str) -> Result<SqlGuid> {
    SqlGuid::parse(text).ok_or_else(|| {
        Error::decode(format!(
            "the primary id `{text}` is not a uniqueidentifier, so the table cannot be read in partitions; read it with parallelism 1"
        ))
    })
}

/// How a fresh read is divided: its first page is read alone (which is all a small table
/// needs), then the rest is divided among the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Division {
    /// Not yet decided: by the table's count, before the first page.
    Initial,
    AfterFirstPage,
    Due,
    Done,
}

/// A page of a range, arrived and not yet decoded.
struct Arrived {
    outline: Outline,
    body: Bytes,
    /// From sending the request to its answer.
    took: Duration,
}

/// A page of a range, decoded.
struct Fetched {
    changes: Vec<RecordChange>,
    counts: PageCounts,
}

/// The work left in a range, in rows.
#[derive(Debug, Clone, Copy)]
struct Work {
    /// Rows per id of key space on the range's last page.
    density: f64,
    /// Rows of the page in flight the server has already produced (by the read's pace).
    done: f64,
    /// Rows of the page in flight still to come.
    pending: f64,
    /// Rows after the page in flight.
    beyond_page: f64,
}

impl Work {
    fn total(&self) -> f64 {
        self.pending + self.beyond_page
    }
}

/// A page being fetched.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// The rows asked for.
    rows: u32,
    since: Instant,
}

/// How fast the server answers pages, in rows per second of one request, over the read so far.
#[derive(Debug, Default)]
struct Pace {
    rows: f64,
    seconds: f64,
}

impl Pace {
    fn note(&mut self, rows: usize, took: Duration) {
        self.rows += rows as f64;
        self.seconds += took.as_secs_f64();
    }

    /// The rows of `page` the server is yet to produce, by the pace so far.
    fn pending(&self, page: InFlight) -> f64 {
        let rows = f64::from(page.rows);
        if self.rows == 0.0 || self.seconds == 0.0 {
            return rows;
        }
        let produced = self.rows / self.seconds * page.since.elapsed().as_secs_f64();
        (rows - produced).max(0.0)
    }
}

/// A range still being read.
struct Active {
    key: u64,
    bounds: Bounds,
    /// Rows per id of key space on the range's last page: how dense what is left may be.
    density: Option<f64>,
    /// The range's last id, once looked up.
    last: Option<SqlGuid>,
    /// The page being fetched, if any.
    in_flight: Option<InFlight>,
}

/// What finished in the background.
enum Done {
    Data {
        key: u64,
        result: Result<Arrived>,
    },
    Tracking {
        task: TrackingTask,
        /// The link after the task's next page; `None` when the task ended without one.
        link: Option<Result<Tracking>>,
    },
}

/// Where the ids-only change-tracking read stands.
enum TrackingRead {
    /// Not a change-tracking read.
    None,
    /// New: its first page is yet to be read.
    Unstarted(Box<Reader>),
    /// Ready to read its remaining pages.
    Idle(Box<Reader>),
    /// Reading on its own task, whose next link is awaited among the fetches.
    Running,
    /// Finished.
    Finished,
}

/// The tracking read's remaining pages, read on a task of their own: the read is the longest
/// chain of requests, so each page is asked for as soon as the one before it arrives, however
/// long the caller takes with the data pages. The task ends when this is dropped.
struct TrackingTask {
    links: mpsc::UnboundedReceiver<Result<Tracking>>,
    _task: AbortOnDrop<()>,
}

impl TrackingTask {
    fn spawn(mut reader: Box<Reader>) -> Self {
        let (sender, links) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let link = reader.next_page().await.and_then(|page| link_after(&page));
                let finished = !matches!(link, Ok(Tracking::NextLink(_)));
                if sender.send(link).is_err() || finished {
                    return;
                }
            }
        });
        Self {
            links,
            _task: AbortOnDrop(task),
        }
    }

    /// Waits for the next page's link.
    async fn next(mut self) -> Done {
        let link = self.links.recv().await;
        Done::Tracking { task: self, link }
    }
}

/// The tracking read's link after `page`: its delta link at the end, else its next link.
fn link_after(page: &Page) -> Result<Tracking> {
    match (page.checkpoint.delta_link(), page.checkpoint.next_link()) {
        (Some(delta), _) => Ok(Tracking::DeltaLink(delta.to_owned())),
        (None, Some(next)) => Ok(Tracking::NextLink(next.to_owned())),
        (None, None) => Err(Error::new(
            ErrorKind::Service,
            format!(
                "page {} of the change-tracking read came with neither a next link nor a delta link; run the job again",
                page.number
            ),
        )),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// The task's output; a task that panicked is reported as an error.
    async fn output(mut self) -> Result<T> {
        (&mut self.0).await.map_err(|e| {
            Error::new(
                ErrorKind::Service,
                format!("a partition's page task stopped unexpectedly ({e}); run the job again"),
            )
        })
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A partitioned read in progress.
pub(super) struct PartitionedRead {
    shape: Arc<Shape>,
    slots: usize,
    active: Vec<Active>,
    next_key: u64,
    fetches: FuturesUnordered<BoxFuture<'static, Done>>,
    tracking: TrackingRead,
    /// The tracking read's next link, or its delta link once finished.
    tracking_link: Option<Tracking>,
    /// `modified_on`: the watermark the next read starts from.
    since: Option<DateTime<Utc>>,
    /// `modified_on`: the records read at exactly the watermark, id to etag.
    seen: BTreeMap<String, String>,
    /// The smallest and largest id at the start, for weighing ranges.
    span: Option<(SqlGuid, SqlGuid)>,
    pages: u32,
    /// How fast pages come, for sizing the last ones.
    pace: Pace,
    /// The table's row count when a fresh read began, if Dataverse gave one.
    expected_rows: Option<u64>,
    /// The rows returned so far.
    rows_read: u64,
    /// A worker's share of a plan: no tracking read, no final checkpoint of its own.
    worker: bool,
    division: Division,
    finished: bool,
}

impl PartitionedRead {
    /// Begins the read: the tracking read's first page, the watermark, the id range.
    pub async fn begin(
        shape: Shape,
        parallelism: Parallelism,
        start: Option<Progress>,
    ) -> Result<Self> {
        let shape = Arc::new(shape);
        let fresh = start.is_none();
        let start = start.unwrap_or(Progress {
            partitions: vec![Partition::whole()],
            tracking: None,
            since: None,
            seen: BTreeMap::new(),
            pages: 0,
            worker: false,
        });
        let mut read = PartitionedRead {
            slots: 1,
            active: Vec::new(),
            next_key: 0,
            fetches: FuturesUnordered::new(),
            tracking: TrackingRead::None,
            tracking_link: None,
            since: start.since,
            seen: start.seen,
            span: None,
            pages: start.pages,
            pace: Pace::default(),
            expected_rows: None,
            rows_read: 0,
            worker: start.worker,
            division: Division::Done,
            finished: false,
            shape,
        };
        for partition in &start.partitions {
            read.add(partition.bounds()?);
        }
        if read.shape.base.mode == ReadMode::ChangeTracking && !read.worker {
            read.tracking = read.prepare_tracking(start.tracking)?;
        }
        if fresh && read.shape.base.mode == ReadMode::ModifiedOn {
            read.since = read.shape.latest_modified_on().await?;
        }
        // After the first answers, the client knows the server's x-ms-dop-hint.
        read.slots = parallelism.slots(read.shape.client.concurrency_limit());
        read.division = if fresh && read.slots > 1 {
            Division::Initial
        } else {
            read.span = read
                .start_tracking_and(async |read: &mut Self| {
                    read.shape.id_range(Bounds::WHOLE).await
                })
                .await?;
            Division::Done
        };
        Ok(read)
    }

    /// Plans the read in `partitions` partitions for separate workers: the tracking read's
    /// first page, and the division.
    pub async fn plan(mut self, partitions: usize) -> Result<ReadPlan> {
        self.start_tracking_and(async |read: &mut Self| read.divide(partitions).await)
            .await?;
        Ok(ReadPlan::new(self.shape.base.clone(), self.progress()))
    }

    /// Divides a fresh read at once when the table's count says it holds more than two pages;
    /// otherwise (a small table, or no count) its first page is read alone first.
    async fn divide_by_count(&mut self) -> Result<Division> {
        let page = u64::from(
            self.shape
                .prefer
                .max_page_size
                .unwrap_or(super::MAX_PAGE_SIZE),
        );
        self.expected_rows = self.shape.table_count().await;
        match self.expected_rows {
            Some(rows) if rows > 2 * page => {
                let pages = usize::try_from(rows.div_ceil(page)).unwrap_or(usize::MAX);
                self.divide(self.slots.min(pages)).await?;
                Ok(Division::Done)
            }
            _ => Ok(Division::AfterFirstPage),
        }
    }

    /// Divides the one range left after a fresh read's first page (which alone reads a small
    /// table) into up to `count` ranges whose bounds come from the data: each split halves the
    /// widest range between its first and last actual id, and the halves' own first and last
    /// ids are looked up (two one-row requests), so no range is empty and the table's clusters
    /// of ids end up apart.
    async fn divide(&mut self, count: usize) -> Result<()> {
        self.division = Division::Done;
        let [only] = self.active.as_slice() else {
            return Ok(());
        };
        let bounds = only.bounds;
        let Some((first, last)) = self.shape.id_range(bounds).await? else {
            return Ok(());
        };
        self.span = Some((first, last));
        let mut pieces = vec![(bounds, first, last)];
        while pieces.len() < count {
            let widest = pieces
                .iter()
                .enumerate()
                .filter(|(_, (_, lo, hi))| lo < hi)
                .max_by(|a, b| (a.1.1.distance_to(a.1.2)).total_cmp(&b.1.1.distance_to(b.1.2)));
            let Some((index, &(bounds, lo, hi))) = widest else {
                break;
            };
            let (lower, upper) = bounds.split_at(lo.midpoint(hi));
            let lower_last = self.shape.edge_id(lower, true).await?.unwrap_or(lo);
            let upper_first = self.shape.edge_id(upper, false).await?.unwrap_or(hi);
            pieces[index] = (lower, lo, lower_last);
            pieces.insert(index + 1, (upper, upper_first, hi));
        }
        self.active.clear();
        for (bounds, _, _) in pieces {
            self.add(bounds);
        }
        Ok(())
    }

    /// The ids-only change-tracking read: resumed from `stored`, or new (its first page is
    /// read before any data page).
    fn prepare_tracking(&mut self, stored: Option<Tracking>) -> Result<TrackingRead> {
        match stored {
            Some(Tracking::DeltaLink(link)) => {
                self.tracking_link = Some(Tracking::DeltaLink(link));
                Ok(TrackingRead::Finished)
            }
            Some(Tracking::NextLink(link)) => {
                let reader = self.tracking_reader(FirstRequest::Link {
                    link: link.clone(),
                    what: "tracking link of the checkpoint",
                })?;
                self.tracking_link = Some(Tracking::NextLink(link));
                Ok(TrackingRead::Idle(reader))
            }
            None => {
                let ids_only = Query {
                    select: self.shape.primary(),
                    filter: None,
                    order_by: None,
                    count: false,
                };
                let set = self.shape.decoder.metadata().entity_set_name();
                let first = FirstRequest::Query(ids_only.path(set));
                Ok(TrackingRead::Unstarted(self.tracking_reader(first)?))
            }
        }
    }

    /// A reader of the ids-only change-tracking read, starting with `first`.
    fn tracking_reader(&self, first: FirstRequest) -> Result<Box<Reader>> {
        let shape = &self.shape;
        let prefer = Prefer {
            max_page_size: Some(super::MAX_PAGE_SIZE),
            track_changes: true,
            ..Prefer::default()
        };
        let base = Checkpoint {
            columns: Vec::new(),
            ..shape.base.clone()
        };
        let decoder = RecordDecoder::new(Arc::clone(shape.decoder.metadata()));
        let start = SequentialStart::fresh(first);
        let reader = Reader::new(shape.client.clone(), decoder, prefer, base, start)?;
        Ok(Box::new(reader))
    }

    /// Reads a new tracking read's first page, alongside `division` (which sends no data page),
    /// and returns what `division` returned.
    async fn start_tracking_and<T>(
        &mut self,
        division: impl AsyncFnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let unstarted = match std::mem::replace(&mut self.tracking, TrackingRead::Running) {
            TrackingRead::Unstarted(reader) => Some(reader),
            other => {
                self.tracking = other;
                None
            }
        };
        let first_page = async move {
            let mut reader = unstarted?;
            let page = reader.next_page().await;
            Some((reader, page))
        };
        let (first, divided) = futures::join!(first_page, division(self));
        if let Some((reader, page)) = first {
            let link = link_after(&page?)?;
            self.tracking = match link {
                Tracking::DeltaLink(_) => TrackingRead::Finished,
                Tracking::NextLink(_) => TrackingRead::Idle(reader),
            };
            self.tracking_link = Some(link);
        }
        divided
    }

    /// Takes the tracking task's link after its next page, and waits for the one after.
    fn tracking_after(&mut self, task: TrackingTask, link: Option<Result<Tracking>>) -> Result<()> {
        let link = link.ok_or_else(|| {
            Error::new(
                ErrorKind::Service,
                "the change-tracking read stopped before its delta link; run the job again",
            )
        })??;
        self.tracking = match link {
            Tracking::DeltaLink(_) => TrackingRead::Finished,
            Tracking::NextLink(_) => {
                self.fetches.push(Box::pin(task.next()));
                TrackingRead::Running
            }
        };
        self.tracking_link = Some(link);
        Ok(())
    }

    fn add(&mut self, bounds: Bounds) {
        self.active.push(Active {
            key: self.next_key,
            bounds,
            density: None,
            last: None,
            in_flight: None,
        });
        self.next_key += 1;
    }

    /// The next page of the read, `None` once the last one was returned.
    pub async fn next_page(&mut self) -> Result<Option<Page>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            match self.division {
                Division::Initial => {
                    self.division = self
                        .start_tracking_and(async |read: &mut Self| read.divide_by_count().await)
                        .await?;
                }
                Division::Due => self.divide(self.slots).await?,
                Division::AfterFirstPage | Division::Done => {}
            }
            while self.active.len() < self.data_slots() && self.split_busiest().await? {}
            self.fill_slots();
            match self.fetches.next().await {
                Some(Done::Data { key, result }) => {
                    let arrived = result?;
                    let bounds = self.advance(key, &arrived)?;
                    // The range's next page goes out before this one is decoded.
                    self.fill_slots();
                    let fetched = self.shape.decode(&arrived.body)?;
                    return self.deliver(bounds, fetched).map(Some);
                }
                Some(Done::Tracking { task, link }) => self.tracking_after(task, link)?,
                None => {}
            }
            if self.is_complete() {
                return self.final_page(Vec::new(), PageCounts::default()).map(Some);
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.active.is_empty()
            && matches!(self.tracking, TrackingRead::None | TrackingRead::Finished)
    }

    /// Starts the tracking read's next page (first: it is the longest chain of requests),
    /// and a fetch for each idle range.
    fn fill_slots(&mut self) {
        if let TrackingRead::Idle(_) = self.tracking {
            if let TrackingRead::Idle(reader) =
                std::mem::replace(&mut self.tracking, TrackingRead::Running)
            {
                self.fetches
                    .push(Box::pin(TrackingTask::spawn(reader).next()));
            }
        }
        let free = self
            .data_slots()
            .saturating_sub(self.active.iter().filter(|a| a.in_flight.is_some()).count());
        let rows = self.next_page_size();
        for active in (self.active.iter_mut())
            .filter(|a| a.in_flight.is_none())
            .take(free)
        {
            active.in_flight = Some(InFlight {
                rows,
                since: Instant::now(),
            });
            let key = active.key;
            let task = self.shape.fetch(active.bounds, rows);
            self.fetches.push(Box::pin(async move {
                let result = task.output().await.and_then(|arrived| arrived);
                Done::Data { key, result }
            }));
        }
    }

    /// Splits the range with the most work left (by the density of its last page) in two, so
    /// that both finish together: the range keeps the page it is fetching and its share of
    /// what lies beyond, a new range takes the rest. The range's actual last id is looked up
    /// first (a one-row request), so that the estimate does not count a gap after it. `false`
    /// when no range has more than a quarter page left beyond the page it is fetching.
    async fn split_busiest(&mut self) -> Result<bool> {
        let quarter_page = f64::from(self.page_size()) / 4.0;
        let busiest = self
            .active
            .iter()
            .enumerate()
            .filter_map(|(index, active)| Some((index, self.work(active)?)))
            .filter(|(_, work)| work.beyond_page >= quarter_page)
            .max_by(|a, b| a.1.total().total_cmp(&b.1.total()));
        let Some((index, work)) = busiest else {
            return Ok(false);
        };
        let range = &self.active[index];
        let (bounds, density) = (range.bounds, work.density);
        let after = bounds.after.expect("a range with a density has an `after`");
        let Some(last) = range.last else {
            // Weigh it again with its actual last id.
            let last = self.shape.edge_id(bounds, true).await?;
            self.active[index].last = Some(last.unwrap_or(after));
            return Ok(true);
        };
        // Both finish together: the range keeps its page in flight and half of the work, the
        // new range starts now with the other half.
        let keep = work.done + work.pending.max(work.total() / 2.0);
        let at = after.advanced_by(keep / density);
        if at >= last {
            self.active[index].density = None; // its page in flight holds what is left
            return Ok(true);
        }
        let (lower, upper) = bounds.split_at(at);
        self.active[index].bounds = lower;
        self.active[index].last = None;
        self.add(upper);
        if let Some(new) = self.active.last_mut() {
            new.last = Some(last);
            new.density = Some(density);
        }
        Ok(true)
    }

    /// The work left in `active`, by the density of its last page; `None` before it has one.
    fn work(&self, active: &Active) -> Option<Work> {
        let (_, table_last) = self.span?;
        let after = active.bounds.after?;
        let density = active.density?;
        let last = active.last.or(active.bounds.upto).unwrap_or(table_last);
        let rows = density * after.distance_to(last);
        let (asked, pending) = active.in_flight.map_or((0.0, 0.0), |page| {
            (f64::from(page.rows), self.pace.pending(page))
        });
        Some(Work {
            density,
            done: asked - pending,
            pending,
            beyond_page: rows - asked,
        })
    }

    /// The rows left to read, pages in flight counting what the server has yet to produce:
    /// the ranges' estimates added up, or the table's count less the rows read, whichever is
    /// less (an estimate counts the gaps between clusters of ids it cannot see; the count
    /// can be up to a day old).
    fn work_left(&self) -> Option<f64> {
        let by_ranges: Option<f64> = self
            .active
            .iter()
            .map(|active| match (self.work(active), active.in_flight) {
                (Some(work), _) => Some(work.total()),
                (None, Some(page)) => Some(self.pace.pending(page)),
                (None, None) => None,
            })
            .sum();
        let produced_in_flight: f64 = (self.active.iter())
            .filter_map(|active| active.in_flight)
            .map(|page| f64::from(page.rows) - self.pace.pending(page))
            .sum();
        let by_count = self
            .expected_rows
            .map(|rows| (rows.saturating_sub(self.rows_read) as f64 - produced_in_flight).max(0.0));
        match (by_ranges, by_count) {
            (Some(ranges), Some(count)) => Some(ranges.min(count)),
            (ranges, count) => ranges.or(count),
        }
    }

    /// How many rows the next pages ask for: a full page, or, once an equal share of the work
    /// estimated to be left is less, that share (at least a fifth of a page), so that the last
    /// pages end together instead of one slot reading a full page while the others idle.
    fn next_page_size(&self) -> u32 {
        let full = self.page_size();
        let Some(work_left) = self.work_left() else {
            return full;
        };
        let share = (work_left / self.data_slots() as f64).ceil();
        // In range: `share` is below `full` here.
        let share = if share < f64::from(full) {
            share as u32
        } else {
            full
        };
        share.max(full.div_ceil(5))
    }

    /// How many data pages may be fetched at once: a slot stays free for the tracking read
    /// while it runs, since the delta link waits for its last page.
    fn data_slots(&self) -> usize {
        let tracking = matches!(self.tracking, TrackingRead::Idle(_) | TrackingRead::Running);
        self.slots.saturating_sub(usize::from(tracking)).max(1)
    }

    fn page_size(&self) -> u32 {
        self.shape
            .prefer
            .max_page_size
            .unwrap_or(super::MAX_PAGE_SIZE)
    }

    /// Moves range `key` past the page that arrived for it, by the page's outline: to the
    /// page's last row when more follow, else the range ends. It also ends when the page ran
    /// past its upper bound, lowered by a split while the page was on its way: those rows
    /// belong to the range that took them over. Returns the bounds the page's rows are kept by.
    fn advance(&mut self, key: u64, arrived: &Arrived) -> Result<Bounds> {
        let outline = &arrived.outline;
        self.pace.note(outline.rows, arrived.took);
        let index = self
            .active
            .iter()
            .position(|a| a.key == key)
            .expect("a fetch belongs to an active range");
        let bounds = self.active[index].bounds;
        let first = outline.first.as_deref().map(parse_id).transpose()?;
        let last = outline.last.as_deref().map(parse_id).transpose()?;
        let overran = last.is_some_and(|last| !bounds.contains(last));
        let active = &mut self.active[index];
        active.in_flight = None;
        match (first, last) {
            (Some(first), Some(last)) if outline.more && !overran => {
                // The page's own span: a range's bound may lie in a gap before its first row.
                let width = first.distance_to(last);
                active.density = (width > 0.0).then(|| (outline.rows - 1) as f64 / width);
                active.bounds.after = Some(last);
                if self.division == Division::AfterFirstPage {
                    self.division = Division::Due;
                }
            }
            _ if outline.more && outline.rows == 0 => {
                return Err(Error::decode(format!(
                    "Dataverse answered an empty page of `{}` with a next link; stopped instead of asking again forever",
                    self.shape.base.entity
                )));
            }
            _ => {
                self.active.remove(index);
            }
        }
        Ok(bounds)
    }

    /// The page of a decoded `fetched`, without rows outside `bounds`.
    fn deliver(&mut self, bounds: Bounds, fetched: Fetched) -> Result<Page> {
        let mut changes = Vec::with_capacity(fetched.changes.len());
        for change in fetched.changes {
            if bounds.contains(parse_id(change.id())?) {
                changes.push(change);
            }
        }
        self.note_boundary(&changes);
        self.rows_read += changes.len() as u64;
        if self.is_complete() {
            return self.final_page(changes, fetched.counts);
        }
        self.pages += 1;
        Ok(Page {
            changes,
            checkpoint: self.checkpoint(),
            number: self.pages,
            last: false,
            counts: fetched.counts,
        })
    }

    /// `modified_on`: remembers the version of each record read at exactly the watermark, so
    /// that the next read skips it unless it changed again within that second.
    fn note_boundary(&mut self, changes: &[RecordChange]) {
        let Some(since) = self.since else {
            return;
        };
        for record in changes.iter().filter_map(RecordChange::record) {
            let at_watermark = record
                .get(MODIFIED_ON)
                .and_then(|f| f.value.as_str())
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .is_some_and(|modified| modified == since);
            if let (true, Some(etag)) = (at_watermark, record.etag()) {
                self.seen.insert(record.id().to_owned(), etag.to_owned());
            }
        }
    }

    /// Where the read stands: every unfinished range from its last returned row.
    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            position: Position::Partitioned(self.progress()),
            ..self.shape.base.clone()
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            partitions: self.active.iter().map(|a| a.bounds.partition()).collect(),
            tracking: self.tracking_link.clone(),
            since: self.since,
            seen: self.seen.clone(),
            pages: self.pages,
            worker: self.worker,
        }
    }

    /// The last page: the read is complete, and its checkpoint starts the next read.
    fn final_page(&mut self, changes: Vec<RecordChange>, counts: PageCounts) -> Result<Page> {
        let position = match (self.shape.base.mode, &self.tracking_link) {
            _ if self.worker => Position::Partitioned(Progress {
                pages: self.pages + 1,
                ..self.progress()
            }),
            // The ids-only read's delta token, asked for with the data read's columns (the
            // token is a version of the table, not of the columns).
            (ReadMode::ChangeTracking, Some(Tracking::DeltaLink(link))) => Position::Delta {
                delta_link: with_select(link, &self.shape.select),
            },
            (ReadMode::ChangeTracking, _) => {
                return Err(Error::decode(format!(
                    "the change-tracking read of `{}` ended without a delta link; refresh the table's metadata and read again",
                    self.shape.base.entity
                )));
            }
            (ReadMode::ModifiedOn, _) => Position::Watermark {
                watermark: self.since.map(|modified_on| Watermark {
                    modified_on,
                    seen: std::mem::take(&mut self.seen),
                }),
            },
            _ => Position::Complete,
        };
        self.finished = true;
        self.pages += 1;
        Ok(Page {
            changes,
            checkpoint: Checkpoint {
                position,
                ..self.shape.base.clone()
            },
            number: self.pages,
            last: true,
            counts,
        })
    }
}
