//! Partitioned reads on the stand-in instance: clustered ids and a `createdon` spike read
//! exactly once, change tracking begun before the data read, resumes that skip finished
//! partitions, read plans run by separate workers, `deletes: reconcile`, and `parallelism: 1`
//! reading as before.

use d365_connector::testkit::{AccountShape, StandIn, VirtualClock};
use d365_connector::{
    Checkpoint, ClientOptions, DataverseClient, EntityMetadata, EntitySource, MemorySink,
    MetadataOptions, Page, Parallelism, ReadMode, RecordChange, RunOptions, SyncJob, SyncStatus,
};
use futures::TryStreamExt;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

async fn connect(crm: &StandIn) -> DataverseClient {
    let options = ClientOptions::default().with_clock(Arc::new(VirtualClock::new()));
    crm.client(options).unwrap()
}

/// A stand-in holding `n` accounts in three id clusters, 40% created in one second.
async fn accounts(n: usize) -> (StandIn, DataverseClient, Arc<EntityMetadata>) {
    let crm = StandIn::start().await;
    crm.add_accounts(
        n,
        AccountShape {
            clusters: 3,
            createdon_spike: 0.4,
        },
    );
    let client = connect(&crm).await;
    let metadata = EntityMetadata::fetch(&client, "account", &MetadataOptions::default())
        .await
        .unwrap();
    (crm, client, Arc::new(metadata))
}

fn source(
    client: &DataverseClient,
    metadata: &Arc<EntityMetadata>,
    mode: ReadMode,
) -> EntitySource {
    EntitySource::new(client.clone(), metadata.clone())
        .with_columns(["name", "revenue", "createdon"])
        .with_page_size(100)
        .with_mode(mode)
        .with_parallelism(Parallelism::Fixed(4))
}

async fn collect(source: EntitySource) -> Vec<Page> {
    source.pages().try_collect().await.unwrap()
}

fn table_ids(crm: &StandIn) -> BTreeSet<String> {
    crm.rows("account")
        .iter()
        .map(|row| row["accountid"].as_str().unwrap().to_owned())
        .collect()
}

/// How often each id was returned.
fn tally<'a>(pages: impl IntoIterator<Item = &'a Page>) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for page in pages {
        for change in &page.changes {
            *seen.entry(change.id().to_owned()).or_default() += 1;
        }
    }
    seen
}

fn assert_each_once(seen: &HashMap<String, usize>, expected: &BTreeSet<String>) {
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "read more than once: {twice:?}");
    let read: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(read.len(), expected.len(), "every record, no other");
    assert_eq!(&read, expected);
}

/// The `$filter`s of the data requests the stand-in received (probes included).
fn partition_filters(crm: &StandIn) -> Vec<String> {
    crm.api_requests()
        .iter()
        .filter(|r| r.path().ends_with("/accounts"))
        .filter_map(|r| {
            r.query_pairs()
                .into_iter()
                .find(|(k, _)| k == "$filter")
                .map(|(_, v)| v)
        })
        .collect()
}

#[tokio::test]
async fn a_parallel_full_read_of_clustered_ids_with_a_createdon_spike_reads_every_record_once() {
    let (crm, client, metadata) = accounts(3000).await;

    let pages = collect(source(&client, &metadata, ReadMode::Full)).await;

    assert_each_once(&tally(&pages), &table_ids(&crm));
    let last = pages.last().unwrap();
    assert!(last.last && last.checkpoint.is_finished());
    assert!(
        pages
            .iter()
            .rev()
            .skip(1)
            .all(|p| !p.last && !p.checkpoint.is_finished())
    );
    let ranges: BTreeSet<String> = partition_filters(&crm)
        .into_iter()
        .filter(|f| f.contains(" gt ") && f.contains(" le "))
        .collect();
    assert!(
        ranges.len() >= 3,
        "the read ran in several bounded ranges: {ranges:?}"
    );
}

#[tokio::test]
async fn a_parallel_first_change_tracking_read_gives_an_exact_next_delta() {
    let (crm, client, metadata) = accounts(1500).await;
    let mut pages = source(&client, &metadata, ReadMode::ChangeTracking).pages();
    let mut first_read = vec![pages.try_next().await.unwrap().unwrap()];
    // A change made while the data read runs arrives again in the next delta.
    let during = crm.rows("account")[700]["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.upsert(
        "account",
        json!({"accountid": during, "name": "Renamed during the read"}),
    );
    while let Some(page) = pages.try_next().await.unwrap() {
        first_read.push(page);
    }
    let checkpoint = first_read.last().unwrap().checkpoint.clone();
    assert!(checkpoint.delta_link().is_some(), "{checkpoint:?}");
    assert_each_once(&tally(&first_read), &table_ids(&crm));

    let rows = crm.rows("account");
    let changed = rows[10]["accountid"].as_str().unwrap().to_owned();
    let deleted = rows[2000 % rows.len()]["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.upsert(
        "account",
        json!({"accountid": changed, "name": "Changed after"}),
    );
    crm.delete("account", &deleted);
    let created = crm.upsert("account", json!({"name": "Created after"}));

    let delta =
        collect(source(&client, &metadata, ReadMode::ChangeTracking).resume_from(checkpoint)).await;
    let mut upserts = BTreeSet::new();
    let mut deletes = BTreeSet::new();
    for change in delta.iter().flat_map(|p| &p.changes) {
        match change {
            RecordChange::Upsert(record) => upserts.insert(record.id().to_owned()),
            RecordChange::Delete { id } => deletes.insert(id.clone()),
        };
    }
    assert_eq!(upserts, BTreeSet::from([during, changed, created]));
    assert_eq!(deletes, BTreeSet::from([deleted]));
}

#[tokio::test]
async fn a_read_stopped_part_way_resumes_only_the_unfinished_partitions() {
    let (crm, client, metadata) = accounts(2000).await;
    let mut pages = source(&client, &metadata, ReadMode::Full).pages();
    let mut before = Vec::new();
    for _ in 0..7 {
        before.push(pages.try_next().await.unwrap().unwrap());
    }
    let saved: Checkpoint =
        serde_json::from_str(&serde_json::to_string(&before.last().unwrap().checkpoint).unwrap())
            .unwrap();
    drop(pages); // the process dies: pages fetched but not returned are lost

    let after = collect(source(&client, &metadata, ReadMode::Full).resume_from(saved)).await;

    let mut seen = tally(&before);
    for (id, n) in tally(&after) {
        *seen.entry(id).or_default() += n;
    }
    assert_each_once(&seen, &table_ids(&crm));
}

#[tokio::test]
async fn a_read_plan_runs_as_separate_workers_and_one_finishing_step() {
    let (crm, client, metadata) = accounts(1200).await;
    let plan = source(&client, &metadata, ReadMode::ChangeTracking)
        .plan_read(5)
        .await
        .unwrap();
    assert_eq!(plan.partitions().len(), 5);
    let stored = serde_json::to_string(&plan).unwrap();
    let plan: d365_connector::ReadPlan = serde_json::from_str(&stored).unwrap();

    let mut all = Vec::new();
    for index in 0..plan.partitions().len() {
        let worker = plan.worker(index).unwrap();
        let pages =
            collect(source(&client, &metadata, ReadMode::ChangeTracking).resume_from(worker)).await;
        assert!(
            pages.iter().all(|p| p.checkpoint.delta_link().is_none()),
            "workers do not finish the read"
        );
        all.extend(pages);
    }
    assert_each_once(&tally(&all), &table_ids(&crm));
    let error = plan.worker(5).unwrap_err();
    assert_eq!(error.kind(), d365_connector::ErrorKind::Config);
    assert!(error.to_string().contains("partitions 0 to 4"), "{error}");

    let finishing =
        collect(source(&client, &metadata, ReadMode::ChangeTracking).resume_from(plan.finishing()))
            .await;
    assert!(finishing.iter().all(|p| p.changes.is_empty()));
    let last = finishing.last().unwrap();
    assert!(last.last && last.checkpoint.delta_link().is_some());
}

fn companies_job(parallelism: serde_json::Value, deletes: &str) -> SyncJob {
    let mut job = json!({
        "name": "Accounts to Company",
        "source": { "entity": "account", "incremental": "modified_on", "page_size": 200,
                    "parallelism": parallelism },
        "target": { "object": "Company",
                    "fields": { "DynamicsId": "id", "Name": "string", "Revenue": "number" },
                    "required": ["DynamicsId"] },
        "mode": "upsert",
        "identifiers": ["DynamicsId"],
        "mappings": [
            { "source": "accountid", "target": "DynamicsId" },
            { "source": "name", "target": "Name" },
            { "source": "revenue", "target": "Revenue" }
        ],
        "deletes": deletes
    });
    if deletes == "reconcile" {
        job["reconcile_every"] = json!(2);
    }
    SyncJob::from_json(&job.to_string()).unwrap()
}

#[tokio::test]
async fn reconcile_removes_records_deleted_on_a_modified_on_table_every_nth_run() {
    let (crm, client, _) = accounts(600).await;
    let job = companies_job(json!("auto"), "reconcile");
    let sink = MemorySink::new();
    let first = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(first.status, SyncStatus::Success, "{first}");
    assert_eq!(sink.records("Company").len(), 600);

    let gone = crm.rows("account")[42]["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.delete("account", &gone);
    let resume = |report: &d365_connector::SyncReport| RunOptions {
        checkpoint: report.checkpoint.clone(),
        ..RunOptions::default()
    };
    let second = job.run(&client, &sink, resume(&first)).await.unwrap();
    assert_eq!(
        second.counts.deleted, 1,
        "the second run reconciles: {second}"
    );
    assert_eq!(sink.records("Company").len(), 599);

    let gone_too = crm.rows("account")[7]["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.delete("account", &gone_too);
    let third = job.run(&client, &sink, resume(&second)).await.unwrap();
    assert_eq!(
        third.counts.deleted, 0,
        "reconcile_every 2: not on the third run"
    );
    let fourth = job.run(&client, &sink, resume(&third)).await.unwrap();
    assert_eq!(fourth.counts.deleted, 1, "{fourth}");
    assert_eq!(sink.records("Company").len(), 598);
}

#[tokio::test]
async fn parallelism_1_reads_by_following_next_links_as_before() {
    let (crm, client, _) = accounts(450).await;
    crm.clear_requests();
    let sink = MemorySink::new();

    let report = companies_job(json!(1), "ignore")
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();

    assert_eq!(report.counts.upserted, 450, "{report}");
    let reads: Vec<String> = crm
        .api_requests()
        .iter()
        .filter(|r| r.path().ends_with("/accounts"))
        .map(|r| r.path_and_query.clone())
        .collect();
    assert_eq!(reads.len(), 3, "three pages of 200: {reads:?}");
    assert!(
        reads[0].contains("$orderby=modifiedon%20asc,accountid%20asc"),
        "{}",
        reads[0]
    );
    assert!(!reads[0].contains("$filter"), "{}", reads[0]);
    assert!(
        reads[1..].iter().all(|r| r.contains("$skiptoken=")),
        "{reads:?}"
    );
}

/// Accepts `healthy` batches, then fails every write, as a store going down does.
#[derive(Debug)]
struct FailingAfter<'a> {
    inner: &'a MemorySink,
    healthy: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl d365_connector::RecordSink for FailingAfter<'_> {
    async fn write(
        &self,
        object: &str,
        operations: &[d365_connector::Operation],
    ) -> d365_connector::Result<Vec<d365_connector::WriteResult>> {
        let left = self.healthy.load(std::sync::atomic::Ordering::SeqCst);
        if left == 0 {
            return Err(d365_connector::Error::new(
                d365_connector::ErrorKind::Sink,
                "the store is down",
            ));
        }
        self.healthy
            .store(left - 1, std::sync::atomic::Ordering::SeqCst);
        self.inner.write(object, operations).await
    }
}

#[tokio::test]
async fn a_parallel_job_failing_part_way_resumes_and_writes_every_record_exactly_once() {
    let (_crm, client, _) = accounts(2400).await;
    let job = companies_job(json!(4), "ignore");
    let store = MemorySink::new();
    let failing = FailingAfter {
        inner: &store,
        healthy: 5.into(),
    };

    let failed = job
        .run(&client, &failing, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(failed.status, SyncStatus::Failed, "{failed}");
    let accepted = failed.counts.upserted;
    assert!(accepted > 0 && accepted <= 5 * 200, "{failed}");

    let resumed = job
        .run(
            &client,
            &store,
            RunOptions {
                checkpoint: failed.checkpoint.clone(),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(resumed.status, SyncStatus::Success, "{resumed}");
    assert_eq!(
        resumed.counts.read,
        2400 - accepted,
        "accepted pages are not read again"
    );
    let companies = store.records("Company");
    assert_eq!(companies.len(), 2400);
    assert_eq!(
        store.operation_count("Company"),
        2400,
        "no record written twice"
    );
}

#[tokio::test]
async fn a_job_asks_for_the_table_count_once() {
    let (crm, client, _) = accounts(1200).await;
    crm.clear_requests();

    let report = companies_job(json!(4), "ignore")
        .run(&client, &MemorySink::new(), RunOptions::default())
        .await
        .unwrap();

    assert_eq!(report.counts.expected, Some(1200), "{report}");
    let counts = crm
        .api_requests()
        .iter()
        .filter(|r| r.path().contains("RetrieveTotalRecordCount"))
        .count();
    assert_eq!(counts, 1, "the partitioned read reuses the job's count");
}

/// The tracking read is the longest chain of requests of a first change-tracking read: its
/// pages are asked for one after the other even while the caller is busy with a data page.
#[tokio::test]
async fn the_tracking_read_goes_on_while_the_caller_holds_a_page() {
    let (crm, client, metadata) = accounts(12_000).await;
    let mut pages = EntitySource::new(client.clone(), metadata.clone())
        .with_columns(["name"])
        .with_page_size(1000)
        .with_mode(ReadMode::ChangeTracking)
        .with_parallelism(Parallelism::Fixed(4))
        .pages();
    let first = pages.try_next().await.unwrap().unwrap();
    assert!(!first.changes.is_empty());
    let tracking_requests = || {
        crm.api_requests()
            .iter()
            .filter(|r| {
                r.header("prefer")
                    .is_some_and(|p| p.contains("odata.track-changes"))
            })
            .count()
    };
    // 12,000 ids are three pages of 5000; the caller asks for nothing while they are read.
    let waited = std::time::Instant::now();
    while tracking_requests() < 3 && waited.elapsed() < std::time::Duration::from_secs(20) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(tracking_requests(), 3);

    let mut read = vec![first];
    while let Some(page) = pages.try_next().await.unwrap() {
        read.push(page);
    }
    assert!(read.last().unwrap().checkpoint.delta_link().is_some());
    assert_each_once(&tally(&read), &table_ids(&crm));
}

#[tokio::test]
async fn a_range_asks_for_its_next_page_before_the_caller_takes_the_page() {
    let (crm, client, metadata) = accounts(12_000).await;
    let mut pages = EntitySource::new(client, metadata)
        .with_columns(["name"])
        .with_page_size(1000)
        .with_parallelism(Parallelism::Fixed(4))
        .pages();
    let first = pages.try_next().await.unwrap().unwrap();
    assert_eq!(first.changes.len(), 1000);
    let after_first = format!("accountid gt {}", first.changes.last().unwrap().id());
    let asked = || {
        partition_filters(&crm)
            .iter()
            .any(|f| f.contains(&after_first))
    };
    // The caller holds the page and asks for nothing more.
    let waited = std::time::Instant::now();
    while !asked() && waited.elapsed() < std::time::Duration::from_secs(20) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        asked(),
        "no request for `{after_first}` while the caller held the page"
    );

    let mut read = vec![first];
    while let Some(page) = pages.try_next().await.unwrap() {
        read.push(page);
    }
    assert_each_once(&tally(&read), &table_ids(&crm));
}

#[tokio::test]
async fn the_last_pages_ask_for_an_equal_share_of_what_is_left() {
    let (crm, client, metadata) = accounts(20_000).await;
    crm.set_server_time(std::time::Duration::from_millis(500));
    let source = EntitySource::new(client, metadata)
        .with_columns(["name"])
        .with_page_size(1000)
        .with_mode(ReadMode::Full)
        .with_parallelism(Parallelism::Fixed(4));

    let pages = collect(source).await;

    assert_each_once(&tally(&pages), &table_ids(&crm));
    let sizes: Vec<u32> = crm
        .api_requests()
        .iter()
        .filter(|r| {
            r.path().ends_with("/accounts") && r.query_pairs().iter().any(|(k, _)| k == "$select")
        })
        .filter_map(|r| r.header("prefer"))
        .filter_map(|p| p.split("odata.maxpagesize=").nth(1))
        .filter_map(|n| n.split(',').next()?.trim().parse().ok())
        .filter(|&n| n > 1)
        .collect();
    assert_eq!(sizes.first(), Some(&1000), "full pages first: {sizes:?}");
    assert!(
        sizes.iter().any(|&n| n < 1000),
        "the last pages ask for less than a full page: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&n| (200..=1000).contains(&n)),
        "never less than a fifth of a page, never more than one: {sizes:?}"
    );
}
