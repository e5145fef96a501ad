//! One run of a sync job: read pages, convert, write, advance the checkpoint.

use super::report::{SyncCounts, SyncReport, SyncStatus};
use super::{DeletePolicy, SyncJob};
use crate::client::DataverseClient;
use crate::error::{Error, ErrorKind, Result};
use crate::filter::Filter;
use crate::mapping::{
    RecordFailure, RecordFailureKind, TargetFieldType, TargetLookup, TargetRecord, TargetValue,
    ValidatedMapping, WriteMode,
};
use crate::metadata::{EntityMetadata, MetadataOptions};
use crate::sink::{BatchCheckpoint, KeySet, Operation, RecordSink, WriteFailure, WriteResult};
use crate::source::{
    Checkpoint, EntitySource, Page, ReadMode, ReadPlan, RecordChange, table_count,
};
use crate::transport::ThrottleStats;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Instrument;

/// Stops a running job cleanly after the batch it is writing. Cloning shares the token.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every run holding this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Progress after each batch the sink accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncProgress {
    /// The job's name.
    pub job: String,
    /// Pages written so far.
    pub pages: u32,
    /// Counts so far.
    pub counts: SyncCounts,
    /// Where a run resumed after a crash should start: every batch up to here is written and
    /// flushed, so a host may store it now. (During a full resync that must remove deleted
    /// records it stays the checkpoint the run started from, so a crash restarts the resync.)
    pub checkpoint: Option<Checkpoint>,
    /// The records of this batch that failed (they are in the report's failures too). A host
    /// that stores `checkpoint` now stores these first: the next run does not read them again.
    pub failures: Vec<RecordFailure>,
}

/// Called after every batch the sink accepted, with the run's progress. Shared, so options
/// holding it clone cheaply; to get progress out of a spawned run, send it into a channel:
///
/// ```
/// # use d365_connector::{RunOptions, SyncProgress};
/// # use std::sync::Arc;
/// let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel::<SyncProgress>();
/// let options = RunOptions {
///     progress: Some(Arc::new(move |p: &SyncProgress| drop(progress.send(p.clone())))),
///     ..RunOptions::default()
/// };
/// # let _ = (options, updates.try_recv());
/// ```
pub type ProgressFn = Arc<dyn Fn(&SyncProgress) + Send + Sync>;

/// How one run starts and what it reports to. Owned and `Clone` (the lookup and the progress
/// callback are shared), so a host can move a copy into a spawned task.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Where the previous run stopped; `None` reads from the beginning.
    pub checkpoint: Option<Checkpoint>,
    /// The entity's metadata, if the host already has it (otherwise it is fetched once).
    pub metadata: Option<Arc<EntityMetadata>>,
    /// Finds target ids for derived mappings.
    pub lookup: Option<Arc<dyn TargetLookup>>,
    /// Called after every batch the sink accepted.
    pub progress: Option<ProgressFn>,
    /// Stops the run after the current batch.
    pub cancel: Option<CancelToken>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("checkpoint", &self.checkpoint)
            .field(
                "metadata",
                &self.metadata.as_ref().map(|m| m.logical_name()),
            )
            .field("lookup", &self.lookup.is_some())
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl SyncJob {
    /// Runs the job: validates the mapping (refusing to start on any violation), then streams
    /// pages, converts every record and writes each batch to `sink`, fetching the next page
    /// while the current one is written.
    ///
    /// The checkpoint in the report only moves past a page once the sink has accepted it, so a
    /// crash at any point loses nothing (at worst the last batch is written twice). An error
    /// once the run has started ends it with [`SyncStatus::Failed`] and that checkpoint; an
    /// `Err` means the job refused to start (invalid definition or mapping, unreadable entity).
    ///
    /// The run is traced (with the `tracing` crate) as a `job` span holding a `page` span per
    /// batch and a `request` span per Web API request; nothing is recorded without a subscriber.
    pub async fn run(
        &self,
        client: &DataverseClient,
        sink: &dyn RecordSink,
        options: RunOptions,
    ) -> Result<SyncReport> {
        let span = tracing::info_span!("job", job = %self.name, entity = %self.source.entity);
        let outcome = self
            .run_in_span(client, sink, options)
            .instrument(span.clone())
            .await;
        span.in_scope(|| match &outcome {
            Ok(report) => tracing::info!(
                status = ?report.status,
                read = report.counts.read,
                expected = report.counts.expected,
                written = report.counts.written(),
                failed = report.counts.failed,
                "job ended"
            ),
            Err(error) => tracing::warn!(kind = ?error.kind(), "job refused to start"),
        });
        outcome
    }

    /// [`SyncJob::run`] within its span: checks and prepares, reads, reports.
    async fn run_in_span(
        &self,
        client: &DataverseClient,
        sink: &dyn RecordSink,
        options: RunOptions,
    ) -> Result<SyncReport> {
        self.check()?;
        let throttling_before = client.throttle_stats();
        let (metadata, mapping) = self.prepare(client, options.metadata.clone()).await?;
        self.require_lookup(&options)?;
        let delete_key = self.delete_key_fields(&metadata)?;
        sink.prepare(&self.mapping.target, &self.mapping.identifiers)
            .await?;
        let expected = self
            .expected_count(client, options.checkpoint.as_ref())
            .await;
        let mut run = Run::new(self, &mapping, delete_key, sink, &options, expected);
        let started_at = Utc::now();
        let outcome = run.read_and_reconcile(client, &metadata).await;
        let throttling = client.throttle_stats().since(&throttling_before);
        Ok(run.report(outcome, started_at, throttling))
    }

    /// Refuses to run a job that fills a field by a derived lookup without a [`TargetLookup`].
    fn require_lookup(&self, options: &RunOptions) -> Result<()> {
        if options.lookup.is_some() {
            return Ok(());
        }
        match self.mapping.mappings.iter().find(|m| m.lookup.is_some()) {
            Some(derived) => Err(Error::config(format!(
                "job `{}` fills `{}` by a derived lookup, but the run has no TargetLookup; pass one in RunOptions (or ChainOptions)",
                self.name, derived.target
            ))),
            None => Ok(()),
        }
    }
}

impl SyncJob {
    /// Plans this job's first read in `partitions` partitions for separate workers (see
    /// [`ReadPlan`]): worker `i` runs the job with `RunOptions { checkpoint:
    /// Some(plan.worker(i)?), .. }` into its own sink, and once every worker is done, one run
    /// from `plan.finishing()` finishes the read and leaves the checkpoint for the next
    /// incremental run. `metadata`, when given, saves fetching it.
    pub async fn plan_read(
        &self,
        client: &DataverseClient,
        partitions: usize,
        metadata: Option<Arc<EntityMetadata>>,
    ) -> Result<ReadPlan> {
        self.check()?;
        let (metadata, mapping) = self.prepare(client, metadata).await?;
        job_source(self, &mapping, client, &metadata, None)
            .plan_read(partitions)
            .await
    }

    /// The metadata of the source entity (fetched unless given) and the validated mapping.
    async fn prepare(
        &self,
        client: &DataverseClient,
        metadata: Option<Arc<EntityMetadata>>,
    ) -> Result<(Arc<EntityMetadata>, ValidatedMapping)> {
        let metadata = match metadata {
            Some(metadata) if metadata.logical_name() != self.source.entity => {
                return Err(Error::config(format!(
                    "the metadata given for job `{}` describes `{}`, not its source entity `{}`",
                    self.name,
                    metadata.logical_name(),
                    self.source.entity
                )));
            }
            Some(metadata) => metadata,
            None => Arc::new(
                EntityMetadata::fetch(client, &self.source.entity, &MetadataOptions::default())
                    .await
                    .map_err(|e| self.unknown_entity(e))?,
            ),
        };
        let mapping = self.mapping.validate(&metadata)?;
        Ok((metadata, mapping))
    }

    /// A 404 for the source entity's metadata is a job naming a table the environment does not
    /// have: a [`Config`](ErrorKind::Config) error. Other errors are kept.
    fn unknown_entity(&self, error: Error) -> Error {
        if error.status() != Some(404) {
            return error;
        }
        Error::config(format!(
            "job `{}` reads `{}`, which is not a table of this environment; check `source.entity` (a logical name such as `contact`)",
            self.name, self.source.entity
        ))
        .with_source(error)
    }

    /// The table's count when this run reads the whole table without a filter: a first read,
    /// or any run of a `full` job.
    async fn expected_count(
        &self,
        client: &DataverseClient,
        checkpoint: Option<&Checkpoint>,
    ) -> Option<u64> {
        let whole_table = checkpoint.is_none_or(|c| c.mode() == ReadMode::Full && c.is_finished());
        if !whole_table || self.source.filter.is_some() {
            return None;
        }
        table_count(client, &self.source.entity).await
    }

    /// Whether run number `run_number` (counted from 1) reconciles deletions.
    fn reconcile_due(&self, run_number: u64) -> bool {
        let every = u64::from(self.reconcile_every.unwrap_or(1).max(1));
        self.deletes == DeletePolicy::Reconcile && run_number % every == 0
    }
}

/// How a read ended when it did not fail.
enum Ending {
    Finished,
    Cancelled,
}

/// The state of one run.
struct Run<'a> {
    job: &'a SyncJob,
    /// This run's number, counted from 1 through the checkpoints: every checkpoint it stores
    /// carries it, for `reconcile_every`.
    run_number: u64,
    mapping: &'a ValidatedMapping,
    delete_key: Vec<(String, TargetFieldType)>,
    sink: &'a dyn RecordSink,
    options: &'a RunOptions,
    counts: SyncCounts,
    failures: Vec<RecordFailure>,
    checkpoint: Option<Checkpoint>,
    pages: u32,
    full_resync: bool,
    /// During a full resync under `deletes: propagate`: the keys of every record read.
    seen: Option<KeySet>,
}

/// How a run's reading ended, once any resync and reconciliation are done.
struct ReadOutcome {
    ending: Result<Ending>,
    /// Whether the records deleted in Dynamics are accounted for.
    reconciled: bool,
    /// Why Dynamics asked for a full resync, if it did.
    resync_reason: Option<String>,
}

impl<'a> Run<'a> {
    /// A run of `job` from the checkpoint of `options`, before anything is read.
    fn new(
        job: &'a SyncJob,
        mapping: &'a ValidatedMapping,
        delete_key: Vec<(String, TargetFieldType)>,
        sink: &'a dyn RecordSink,
        options: &'a RunOptions,
        expected: Option<u64>,
    ) -> Self {
        let previous_runs = options.checkpoint.as_ref().map_or(0, |c| c.runs);
        Run {
            run_number: previous_runs + 1,
            job,
            mapping,
            delete_key,
            sink,
            options,
            counts: SyncCounts {
                expected,
                ..SyncCounts::default()
            },
            failures: Vec::new(),
            checkpoint: options.checkpoint.clone(),
            pages: 0,
            full_resync: false,
            seen: None,
        }
    }

    /// Reads from the run's checkpoint on, reading everything again when Dynamics asks for a
    /// full resync, then reconciles deletions when this run is due to.
    async fn read_and_reconcile(
        &mut self,
        client: &DataverseClient,
        metadata: &Arc<EntityMetadata>,
    ) -> ReadOutcome {
        let resume = self.options.checkpoint.clone();
        let mut ending = self.read_all(client, metadata, resume).await;
        let mut reconciled = true;
        let mut resync_reason = None;
        if let Err(error) = &ending {
            if error.kind() == ErrorKind::ResyncRequired {
                resync_reason = Some(error.to_string());
                (ending, reconciled) = self.resync(client, metadata).await;
            }
        }
        if matches!(ending, Ok(Ending::Finished))
            && !self.full_resync
            && self.job.reconcile_due(self.run_number)
        {
            match self.reconcile(client, metadata).await {
                Ok(done) => reconciled = done,
                Err(error) => ending = Err(error),
            }
        }
        ReadOutcome {
            ending,
            reconciled,
            resync_reason,
        }
    }

    /// The report of the run, whose reading ended as `outcome`.
    fn report(
        self,
        outcome: ReadOutcome,
        started_at: DateTime<Utc>,
        throttling: ThrottleStats,
    ) -> SyncReport {
        let warnings = deletion_warnings(outcome.reconciled, self.full_resync);
        let status = self.status(&outcome.ending, &warnings);
        let error = match outcome.ending {
            Err(error) => Some(error),
            Ok(_) if status == SyncStatus::Failed => Some(every_record_failed(&self.failures)),
            Ok(_) => None,
        };
        SyncReport {
            job: self.job.name.clone(),
            status,
            started_at,
            finished_at: Utc::now(),
            counts: self.counts,
            failures: self.failures,
            full_resync: self.full_resync,
            resync_reason: outcome.resync_reason,
            warnings,
            throttled: throttling.refused(),
            throttled_for: throttling.paused,
            error,
            checkpoint: self.checkpoint,
        }
    }

    /// The status of a run whose reading ended as `ending`, with `warnings`: failed when every
    /// record failed, partial when some did or deletions may be missing.
    fn status(&self, ending: &Result<Ending>, warnings: &[String]) -> SyncStatus {
        let nothing_written = self.counts.failed > 0 && self.counts.written() == 0;
        match ending {
            Err(_) => SyncStatus::Failed,
            Ok(Ending::Cancelled) => SyncStatus::Cancelled,
            Ok(Ending::Finished) if nothing_written => SyncStatus::Failed,
            Ok(Ending::Finished) if self.failures.is_empty() && warnings.is_empty() => {
                SyncStatus::Success
            }
            Ok(Ending::Finished) => SyncStatus::PartialSuccess,
        }
    }

    /// Reads every page from `resume` on, writing each; the next page is fetched while the
    /// current one is written, so at most two pages are in memory.
    async fn read_all(
        &mut self,
        client: &DataverseClient,
        metadata: &Arc<EntityMetadata>,
        resume: Option<Checkpoint>,
    ) -> Result<Ending> {
        let source = self.source(client, metadata, resume);
        let mut pages = source.pages();
        let mut next = pages.next().await;
        while let Some(page) = next {
            let Page {
                changes,
                checkpoint,
                ..
            } = page?;
            let batch = self.batch(&changes).await;
            if let Some(seen) = &mut self.seen {
                for change in &changes {
                    if let RecordChange::Upsert(record) = change {
                        seen.insert(&key_for_id(&self.delete_key, record.id()));
                    }
                }
            }
            // The batch holds what is written: the decoded page goes before the next arrives.
            drop(changes);
            let resume_from = self.resumable(Some(&checkpoint));
            let span = tracing::debug_span!("page", number = self.pages + 1, records = batch.read);
            let write = self.write(&batch, resume_from).instrument(span.clone());
            let (fetched, written) = futures::join!(pages.next(), write);
            let failed_before = self.failures.len();
            self.accept(batch, written?);
            span.in_scope(|| self.trace_page(failed_before));
            self.pages += 1;
            self.checkpoint = Some(Checkpoint {
                runs: self.run_number,
                ..checkpoint
            });
            if let Some(progress) = &self.options.progress {
                progress(&SyncProgress {
                    job: self.job.name.clone(),
                    pages: self.pages,
                    counts: self.counts,
                    checkpoint: self.resumable(self.checkpoint.as_ref()).cloned(),
                    failures: self.failures[failed_before..].to_vec(),
                });
            }
            if self
                .options
                .cancel
                .as_ref()
                .is_some_and(CancelToken::is_cancelled)
            {
                return Ok(Ending::Cancelled);
            }
            next = fetched;
        }
        Ok(Ending::Finished)
    }

    /// The event of a page written: the counts so far, and the failures since `failed_before`.
    fn trace_page(&self, failed_before: usize) {
        tracing::debug!(
            read = self.counts.read,
            written = self.counts.written(),
            failed = self.failures.len() - failed_before,
            "page written"
        );
    }

    fn source(
        &self,
        client: &DataverseClient,
        metadata: &Arc<EntityMetadata>,
        resume: Option<Checkpoint>,
    ) -> EntitySource {
        job_source(self.job, self.mapping, client, metadata, resume)
            .with_known_count(self.counts.expected)
    }

    /// Converts one page into sink operations; records that cannot be converted become
    /// failures of the batch, deletions under `deletes: ignore` are skipped.
    async fn batch(&self, changes: &[RecordChange]) -> Batch {
        let mut batch = Batch {
            read: changes.len() as u64,
            ..Batch::default()
        };
        for change in changes {
            match change {
                RecordChange::Upsert(record) => {
                    match self
                        .mapping
                        .convert(record, self.options.lookup.as_deref())
                        .await
                    {
                        Ok(target) => {
                            let key = self.mapping.identifier_key(&target);
                            let operation = match self.job.mapping.mode {
                                WriteMode::Insert => Operation::Insert { record: target },
                                WriteMode::Update => Operation::Update {
                                    key,
                                    record: target,
                                },
                                WriteMode::Upsert => Operation::Upsert {
                                    key,
                                    record: target,
                                },
                            };
                            batch.push(record.id(), operation);
                        }
                        Err(failure) => batch.failures.push(failure),
                    }
                }
                RecordChange::Delete { id } => match self.job.deletes {
                    DeletePolicy::Ignore => batch.skipped += 1,
                    DeletePolicy::Propagate | DeletePolicy::Reconcile => {
                        let key = key_for_id(&self.delete_key, id);
                        batch.push(id, Operation::Delete { key });
                    }
                },
            }
        }
        batch
    }

    /// Writes a batch, with the checkpoint a run resumes from once it is written, and makes it
    /// durable; the answer has one result per operation.
    async fn write(
        &self,
        batch: &Batch,
        resume_from: Option<&Checkpoint>,
    ) -> Result<Vec<WriteResult>> {
        let checkpoint = BatchCheckpoint {
            job: &self.job.name,
            checkpoint: resume_from,
        };
        let results = self
            .sink
            .write_with_checkpoint(
                &self.job.mapping.target.object,
                &batch.operations,
                checkpoint,
            )
            .await?;
        if results.len() != batch.operations.len() {
            return Err(Error::new(
                ErrorKind::Sink,
                format!(
                    "the sink answered {} results for {} operations; a RecordSink must answer exactly one result per operation, in order",
                    results.len(),
                    batch.operations.len()
                ),
            ));
        }
        self.sink.flush().await?;
        Ok(results)
    }

    /// Counts a batch the sink accepted: what was written, skipped and failed.
    fn accept(&mut self, batch: Batch, results: Vec<WriteResult>) {
        self.counts.read += batch.read;
        self.counts.skipped += batch.skipped;
        for failure in batch.failures {
            self.fail(failure);
        }
        for ((record_id, operation), result) in
            batch.record_ids.iter().zip(&batch.operations).zip(results)
        {
            match result {
                Ok(()) => match operation {
                    Operation::Insert { .. } => self.counts.inserted += 1,
                    Operation::Update { .. } => self.counts.updated += 1,
                    Operation::Upsert { .. } => self.counts.upserted += 1,
                    Operation::Delete { .. } => self.counts.deleted += 1,
                },
                Err(failure) => self.fail(write_failure(record_id, failure)),
            }
        }
    }

    /// The checkpoint a host may store once the read reached `position`. During a full resync
    /// that must remove what Dynamics deleted, that is the one the run started from: a position
    /// inside the resync would resume as a plain read and never remove them.
    fn resumable<'c>(&'c self, position: Option<&'c Checkpoint>) -> Option<&'c Checkpoint> {
        if self.seen.is_some() {
            self.options.checkpoint.as_ref()
        } else {
            position
        }
    }

    /// Reads everything again after Dynamics refused the change-tracking token. Under
    /// `deletes: propagate` it then removes what the resync did not read, and says whether
    /// deletions are accounted for; an unfinished resync keeps the expired checkpoint so the
    /// next run starts it again (it cannot tell yet which records are gone).
    async fn resync(
        &mut self,
        client: &DataverseClient,
        metadata: &Arc<EntityMetadata>,
    ) -> (Result<Ending>, bool) {
        self.full_resync = true;
        let propagate = self.job.deletes != DeletePolicy::Ignore;
        if propagate {
            self.seen = Some(KeySet::new());
        }
        let mut ending = self.read_all(client, metadata, None).await;
        let mut reconciled = true;
        match self.delete_missing(&ending).await {
            Ok(done) => reconciled = done,
            Err(error) => ending = Err(error),
        }
        if propagate && !matches!(ending, Ok(Ending::Finished)) {
            self.checkpoint = self.options.checkpoint.clone();
        }
        (ending, reconciled)
    }

    /// After a finished full resync under `deletes: propagate`, asks the sink to delete what
    /// the resync did not read. `false` when the sink cannot: deletions may be missing. (An
    /// unfinished resync is started again by the next run, so it owes nothing yet.)
    async fn delete_missing(&mut self, ending: &Result<Ending>) -> Result<bool> {
        let Some(seen) = self.seen.take() else {
            return Ok(true);
        };
        if !matches!(ending, Ok(Ending::Finished)) {
            return Ok(true);
        }
        if !self.remove_missing(&seen).await? {
            return Ok(false);
        }
        // The resync is complete: a sink that keeps checkpoints moves on from the expired one
        // (an empty batch carries the new checkpoint).
        self.write(&Batch::default(), self.checkpoint.as_ref())
            .await?;
        Ok(true)
    }

    /// Asks the sink to remove the target records whose keys are not in `keep`, counting them
    /// as deleted. `false` when the sink cannot enumerate its records.
    async fn remove_missing(&mut self, keep: &KeySet) -> Result<bool> {
        let object = &self.job.mapping.target.object;
        let Some(deleted) = self.sink.delete_missing(object, keep).await? else {
            return Ok(false);
        };
        self.counts.deleted += deleted;
        Ok(true)
    }

    /// Reads the table's primary ids alone (under the job's filter) and asks the sink to remove
    /// the target records missing from them. `false` when the sink cannot.
    async fn reconcile(
        &mut self,
        client: &DataverseClient,
        metadata: &Arc<EntityMetadata>,
    ) -> Result<bool> {
        let mut source = EntitySource::new(client.clone(), metadata.clone())
            .with_mode(ReadMode::Full)
            .with_parallelism(self.job.source.parallelism);
        if let Some(filter) = &self.job.source.filter {
            source = source.with_filter(Filter::raw(filter));
        }
        let mut keep = KeySet::new();
        let mut pages = source.pages();
        while let Some(page) = pages.try_next().await? {
            for change in &page.changes {
                keep.insert(&key_for_id(&self.delete_key, change.id()));
            }
        }
        self.remove_missing(&keep).await
    }

    fn fail(&mut self, failure: RecordFailure) {
        self.counts.failed += 1;
        self.failures.push(failure);
    }
}

/// The warnings of a run whose deletions are not all accounted for (`reconciled` false).
fn deletion_warnings(reconciled: bool, full_resync: bool) -> Vec<String> {
    let warning = match (reconciled, full_resync) {
        (true, _) => return Vec::new(),
        (false, false) => {
            "this sink cannot enumerate its records, so the records deleted in Dynamics cannot be found and removed; use a sink that implements RecordSink::delete_missing"
        }
        (false, true) => {
            "Dynamics required a full resync, and this sink cannot remove the records deleted while the change-tracking token was stale; compare the target's records with this run's to remove them"
        }
    };
    vec![warning.to_owned()]
}

/// The source a run of `job` reads: the mapped columns only, the job's mode, parallelism,
/// filter and page size.
fn job_source(
    job: &SyncJob,
    mapping: &ValidatedMapping,
    client: &DataverseClient,
    metadata: &Arc<EntityMetadata>,
    resume: Option<Checkpoint>,
) -> EntitySource {
    let spec = &job.source;
    let mut source = EntitySource::new(client.clone(), metadata.clone())
        .with_columns(mapping.source_columns())
        .with_mode(spec.incremental)
        .with_parallelism(spec.parallelism)
        .with_formatted_values(mapping.needs_formatted_values())
        .with_lookup_tables(mapping.needs_lookup_annotations());
    if let Some(filter) = &spec.filter {
        source = source.with_filter(Filter::raw(filter));
    }
    if let Some(size) = spec.page_size {
        source = source.with_page_size(size);
    }
    if let Some(checkpoint) = resume {
        source = source.resume_from(checkpoint);
    }
    source
}

/// The identifiers of the target record written from the Dynamics record `id`.
fn key_for_id(delete_key: &[(String, TargetFieldType)], id: &str) -> TargetRecord {
    let mut key = TargetRecord::new();
    for (field, field_type) in delete_key {
        let value = match field_type {
            TargetFieldType::Id => TargetValue::Id(id.to_owned()),
            _ => TargetValue::String(id.to_owned()),
        };
        key.insert(field.clone(), value);
    }
    key
}

/// The error of a run that read records and wrote none because every one of `failures` failed:
/// a [`Sink`](ErrorKind::Sink) error when the sink refused them all, a
/// [`Mapping`](ErrorKind::Mapping) one otherwise.
fn every_record_failed(failures: &[RecordFailure]) -> Error {
    let refused = failures.iter().all(|f| f.kind == RecordFailureKind::Write);
    let kind = if refused {
        ErrorKind::Sink
    } else {
        ErrorKind::Mapping
    };
    Error::new(
        kind,
        format!(
            "every record failed ({} failures) and nothing was written; see the failures",
            failures.len()
        ),
    )
}

/// A record the sink refused, with the field it named (or the whole record).
fn write_failure(record_id: &str, failure: WriteFailure) -> RecordFailure {
    RecordFailure {
        record_id: record_id.to_owned(),
        field: failure
            .field
            .unwrap_or_else(|| RecordFailure::WHOLE_RECORD.to_owned()),
        source: None,
        reason: failure.reason,
        kind: RecordFailureKind::Write,
    }
}

/// One page made ready for the sink: the operations, each with the Dynamics id it came from,
/// and what the page's other records became.
#[derive(Default)]
struct Batch {
    operations: Vec<Operation>,
    record_ids: Vec<String>,
    failures: Vec<RecordFailure>,
    skipped: u64,
    read: u64,
}

impl Batch {
    fn push(&mut self, record_id: &str, operation: Operation) {
        self.record_ids.push(record_id.to_owned());
        self.operations.push(operation);
    }
}
