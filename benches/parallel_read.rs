//! Partitioned reads against the stand-in with Dataverse's costs: 1 s of server time per full
//! page of 13 columns (a quarter for a page of ids), `x-ms-dop-hint: 4`, and an execution-time
//! limit of about four pages in flight (40 s of server time per 10 s window).
//!
//! ```sh
//! cargo bench --bench parallel_read            # 100k accounts: full and change-tracking first
//!                                              # reads, parallelism 1 against auto
//! cargo bench --bench parallel_read -- memory  # peak memory of a 1M-record read, 4 partitions
//! ```
//!
//! The memory run reads in a child process (this benchmark run again), so that the stand-in's
//! own rows do not count; the child reports its peak resident memory (`VmHWM`).

use d365_connector::testkit::{AccountShape, ServiceLimits, StandIn, client_at};
use d365_connector::{
    ClientOptions, EntityMetadata, EntitySource, JsonLinesSink, MetadataOptions, Parallelism,
    ReadMode, RunOptions, SyncJob,
};
use futures::TryStreamExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// The 13 columns a read selects (server time is charged by columns).
const COLUMNS: [&str; 13] = [
    "name",
    "accountnumber",
    "revenue",
    "numberofemployees",
    "industrycode",
    "address1_city",
    "websiteurl",
    "statecode",
    "statuscode",
    "primarycontactid",
    "ownerid",
    "createdon",
    "modifiedon",
];

const CHILD_URL: &str = "D365_BENCH_CHILD_URL";

/// A stand-in with `accounts` clustered accounts and Dataverse's costs.
async fn stand_in(accounts: usize, full_page: Duration) -> StandIn {
    let crm = StandIn::start().await;
    crm.add_accounts(accounts, AccountShape::default());
    crm.set_server_time(full_page);
    crm.set_dop_hint(Some(4));
    crm.set_limits(ServiceLimits {
        window: Duration::from_secs(10),
        execution_time: Some(Duration::from_secs(40)),
        ..ServiceLimits::default()
    });
    crm
}

/// Reads every page; returns the records read.
async fn read(source: EntitySource) -> usize {
    let mut pages = source.pages();
    let mut records = 0;
    while let Some(page) = pages.try_next().await.unwrap() {
        records += page.changes.len();
    }
    records
}

/// One read of 100k accounts; prints and returns its time.
async fn timed(mode: ReadMode, parallelism: Parallelism) -> Duration {
    let crm = stand_in(100_000, Duration::from_secs(1)).await;
    let client = crm.client(ClientOptions::default()).unwrap();
    let metadata = EntityMetadata::fetch(&client, "account", &MetadataOptions::default())
        .await
        .unwrap();
    let source = EntitySource::new(client.clone(), metadata)
        .with_columns(COLUMNS)
        .with_mode(mode)
        .with_parallelism(parallelism);
    let started = Instant::now();
    let records = read(source).await;
    let took = started.elapsed();
    assert_eq!(records, 100_000);
    let refused = crm.throttled_requests();
    println!(
        "{mode:>15} parallelism {parallelism:>4}: {:>6.1} s, {records} records, {} requests refused by the stand-in ({} execution time)",
        took.as_secs_f64(),
        refused.total(),
        refused.execution_time,
    );
    took
}

async fn timings() {
    for mode in [ReadMode::Full, ReadMode::ChangeTracking] {
        let sequential = timed(mode, Parallelism::Fixed(1)).await;
        let parallel = timed(mode, Parallelism::Auto).await;
        println!(
            "{mode:>15}: parallel read {:.2}x faster",
            sequential.as_secs_f64() / parallel.as_secs_f64()
        );
    }
}

/// The parent: a stand-in with 1M accounts, and a child that reads them.
async fn memory() {
    let crm = stand_in(1_000_000, Duration::from_millis(100)).await;
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_URL, crm.url())
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The child: a job reading 1M accounts in 4 partitions into JSON Lines thrown away.
async fn child(url: String) {
    let client = client_at(&url, ClientOptions::default()).unwrap();
    let columns = std::iter::once("accountid").chain(COLUMNS);
    let mappings: Vec<serde_json::Value> = columns
        .clone()
        .map(|column| serde_json::json!({ "source": column, "target": column }))
        .collect();
    let fields: serde_json::Map<String, serde_json::Value> = columns
        .map(|column| (column.to_owned(), target_type(column).into()))
        .collect();
    let job = SyncJob::from_json(
        &serde_json::json!({
            "name": "Accounts", "source": { "entity": "account", "incremental": "full", "parallelism": 4 },
            "target": { "object": "Account", "fields": fields },
            "mode": "upsert", "identifiers": ["accountid"], "mappings": mappings
        })
        .to_string(),
    )
    .unwrap();
    let sink = JsonLinesSink::new(std::io::sink());
    let started = Instant::now();
    let report = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    println!(
        "1M-record read, 4 partitions: {} records in {:.1} s, {:?}; peak resident memory {}",
        report.counts.upserted,
        started.elapsed().as_secs_f64(),
        report.status,
        peak_memory()
    );
}

/// The target field type a column maps to.
fn target_type(column: &str) -> &'static str {
    match column {
        "accountid" | "primarycontactid" | "ownerid" => "id",
        "revenue" => "number",
        "numberofemployees" => "integer",
        "createdon" | "modifiedon" => "datetime",
        _ => "string",
    }
}

/// `VmHWM` of this process, from `/proc/self/status`.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .map(|line| line.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown (no /proc)".to_owned())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(url) = std::env::var(CHILD_URL) {
        return runtime.block_on(child(url));
    }
    if std::env::args().any(|arg| arg == "memory") {
        runtime.block_on(memory());
    } else {
        runtime.block_on(timings());
    }
}
