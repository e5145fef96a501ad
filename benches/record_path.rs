//! The record path against its floor, and a mapping of 5000 fields.
//!
//! ```sh
//! cargo bench --bench record_path          # 11 rounds; prints each measure's median
//! cargo bench --bench record_path -- 15    # 15 rounds
//! ```
//!
//! 1. **Floor and path.** Four 5000-record pages of accounts with 13 mapped columns (two read
//!    as labels), fetched once from the stand-in exactly as a job requests them. The floor
//!    parses each page's bytes into a `serde_json::Value`, nothing mapped or written. The
//!    crate's path takes each page's bytes to JSON Lines bytes: decode, convert through the
//!    validated mapping, write; its output is checked to be byte for byte what the job itself
//!    wrote from the same pages. Reported: both times per record and their ratio, the medians
//!    of the rounds, floor and path alternating.
//! 2. **5000 mappings × 1000 records.** A table of 5000 text columns, each mapped: the time to
//!    validate the mapping, convert the 1000 decoded records and write them (and, apart, the
//!    time to decode their 178 MB page).

use d365_connector::testkit::{AccountShape, RecordedRequest, StandIn};
use d365_connector::{
    AttributeMetadata, AttributeType, ClientOptions, EntityMetadata, FieldMapping, JsonLinesSink,
    MappingSet, MetadataOptions, Operation, RecordChange, RecordDecoder, RecordSink, RunOptions,
    SyncJob, TargetField, TargetFieldType, TargetSchema, ValidatedMapping, WriteMode,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 20_000;

/// The mapped columns and their target types; `label` reads a choice's label.
const COLUMNS: [(&str, &str, bool); 14] = [
    ("accountid", "id", false),
    ("name", "string", false),
    ("accountnumber", "string", false),
    ("revenue", "number", false),
    ("numberofemployees", "integer", false),
    ("industrycode", "string", true),
    ("address1_city", "string", false),
    ("websiteurl", "string", false),
    ("statecode", "integer", false),
    ("statuscode", "string", true),
    ("primarycontactid", "id", false),
    ("ownerid", "id", false),
    ("createdon", "datetime", false),
    ("modifiedon", "datetime", false),
];

fn accounts_job() -> SyncJob {
    let mappings: Vec<serde_json::Value> = COLUMNS
        .iter()
        .map(|(column, _, label)| serde_json::json!({ "source": column, "target": column, "label": label }))
        .collect();
    let fields: serde_json::Map<String, serde_json::Value> = COLUMNS
        .iter()
        .map(|(column, kind, _)| ((*column).to_owned(), (*kind).into()))
        .collect();
    SyncJob::from_json(
        &serde_json::json!({
            "name": "Accounts", "source": { "entity": "account", "incremental": "full", "parallelism": 1 },
            "target": { "object": "Account", "fields": fields },
            "mode": "upsert", "identifiers": ["accountid"], "mappings": mappings
        })
        .to_string(),
    )
    .unwrap()
}

/// What the floor and the path are measured on, and what the path must produce.
struct Pages {
    bodies: Vec<Vec<u8>>,
    decoder: RecordDecoder,
    mapping: ValidatedMapping,
    job_output: Vec<u8>,
}

/// Runs the job once, then fetches the pages it read again, as it requested them.
async fn pages() -> Pages {
    let crm = StandIn::start().await;
    crm.add_accounts(ACCOUNTS, AccountShape::default());
    let client = crm.client(ClientOptions::default()).unwrap();
    let job = accounts_job();
    let sink = JsonLinesSink::new(Vec::new());
    crm.clear_requests();
    let report = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.counts.upserted, ACCOUNTS as u64);
    let first = crm
        .api_requests()
        .into_iter()
        .find(|r| r.path_and_query.contains("/accounts?$select="))
        .expect("the job read accounts");
    let metadata = EntityMetadata::fetch(&client, "account", &MetadataOptions::default())
        .await
        .unwrap();
    Pages {
        bodies: fetch_pages(&crm, &first).await,
        decoder: RecordDecoder::new(metadata.clone()),
        mapping: job.mapping.validate(&metadata).unwrap(),
        job_output: sink.into_inner(),
    }
}

/// The first page as `first` asked for it, then every next link.
async fn fetch_pages(crm: &StandIn, first: &RecordedRequest) -> Vec<Vec<u8>> {
    let http = reqwest::Client::new();
    let prefer = first.header("prefer").unwrap_or_default().to_owned();
    let mut next = Some(format!("{}{}", crm.url(), first.path_and_query));
    let mut bodies = Vec::new();
    while let Some(url) = next.take() {
        let body = http
            .get(&url)
            .bearer_auth(crm.issue_access_token())
            .header("Prefer", &prefer)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
        bodies.push(body);
    }
    bodies
}

/// The floor: every page parsed into a `serde_json::Value`.
fn floor(pages: &Pages) {
    for body in &pages.bodies {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap());
    }
}

/// The crate's path: every page's bytes to JSON Lines bytes, as a job converts and writes it.
async fn path(pages: &Pages) -> Vec<u8> {
    let sink = JsonLinesSink::new(Vec::new());
    for body in &pages.bodies {
        let operations = operations(&pages.decoder, &pages.mapping, body).await;
        sink.write("Account", &operations).await.unwrap();
    }
    sink.into_inner()
}

/// A page decoded and converted into upserts.
async fn operations(
    decoder: &RecordDecoder,
    mapping: &ValidatedMapping,
    body: &[u8],
) -> Vec<Operation> {
    convert(mapping, decoder.decode_changes(body).unwrap()).await
}

/// Decoded records converted into upserts.
async fn convert(mapping: &ValidatedMapping, changes: Vec<RecordChange>) -> Vec<Operation> {
    let mut operations = Vec::with_capacity(changes.len());
    for change in changes {
        let RecordChange::Upsert(record) = change else {
            panic!("a full read has no deletes");
        };
        let record = mapping.convert(&record, None).await.unwrap();
        let key = mapping.identifier_key(&record);
        operations.push(Operation::Upsert { key, record });
    }
    operations
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn floor_and_path(runtime: &tokio::runtime::Runtime, rounds: usize) {
    let pages = runtime.block_on(pages());
    let records = ACCOUNTS as f64;
    let bytes: usize = pages.bodies.iter().map(Vec::len).sum();
    assert!(
        runtime.block_on(path(&pages)) == pages.job_output,
        "the benchmark's path must write what the job wrote"
    );
    let (mut floors, mut paths) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        floor(&pages);
        floors.push(started.elapsed());
        let started = Instant::now();
        black_box(runtime.block_on(path(&pages)));
        paths.push(started.elapsed());
    }
    let (floor, path) = (median(floors), median(paths));
    println!(
        "{} pages, {ACCOUNTS} records, {:.1} MB; medians of {rounds} rounds:",
        pages.bodies.len(),
        bytes as f64 / 1e6
    );
    println!(
        "  floor (bytes -> serde_json::Value): {:>6.2} us/record",
        floor.as_secs_f64() * 1e6 / records
    );
    println!(
        "  path  (bytes -> JSON Lines):        {:>6.2} us/record",
        path.as_secs_f64() * 1e6 / records
    );
    println!(
        "  ratio path / floor: {:.2}",
        path.as_secs_f64() / floor.as_secs_f64()
    );
}

const WIDE_COLUMNS: usize = 5000;
const WIDE_RECORDS: usize = 1000;

/// A table of 5000 text columns, a mapping of each, and a page of 1000 records.
fn wide() -> (EntityMetadata, MappingSet, Vec<u8>) {
    let name = |i: usize| format!("new_field{i:04}");
    let mut metadata = EntityMetadata::new("new_wide", "new_wides", "new_wideid").with_attribute(
        AttributeMetadata::new("new_wideid", AttributeType::Uniqueidentifier),
    );
    let mut target =
        TargetSchema::new("Wide").with_field("Id", TargetField::new(TargetFieldType::Id));
    let mut mappings = vec![FieldMapping::source("new_wideid", "Id")];
    for i in 0..WIDE_COLUMNS {
        metadata = metadata.with_attribute(AttributeMetadata::new(name(i), AttributeType::String));
        target = target.with_field(
            format!("Field{i}"),
            TargetField::new(TargetFieldType::String),
        );
        mappings.push(FieldMapping::source(name(i), format!("Field{i}")));
    }
    let set = mappings.into_iter().fold(
        MappingSet::new(target, WriteMode::Upsert).with_identifier("Id"),
        MappingSet::with_mapping,
    );
    let mut page = String::from("{\"value\":[");
    for record in 0..WIDE_RECORDS {
        if record > 0 {
            page.push(',');
        }
        page.push_str(&format!(
            "{{\"new_wideid\":\"00000000-0000-0000-0000-{record:012}\""
        ));
        for i in 0..WIDE_COLUMNS {
            page.push_str(&format!(",\"{}\":\"value {i} of {record}\"", name(i)));
        }
        page.push('}');
    }
    page.push_str("]}");
    (metadata, set, page.into_bytes())
}

fn wide_mapping(runtime: &tokio::runtime::Runtime, rounds: usize) {
    let (metadata, set, page) = wide();
    let (mut decoding, mut mapping) = (Vec::new(), Vec::new());
    for _ in 0..rounds.min(5) {
        let started = Instant::now();
        let changes = RecordDecoder::new(metadata.clone())
            .decode_changes(&page)
            .unwrap();
        decoding.push(started.elapsed());
        let started = Instant::now();
        let validated = set.validate(&metadata).unwrap();
        let operations = runtime.block_on(convert(&validated, changes));
        let sink = JsonLinesSink::new(Vec::new());
        runtime.block_on(sink.write("Wide", &operations)).unwrap();
        black_box(sink.into_inner());
        mapping.push(started.elapsed());
        assert_eq!(operations.len(), WIDE_RECORDS);
    }
    println!(
        "{WIDE_COLUMNS} mappings x {WIDE_RECORDS} records: validate, convert and write in {:.2} s; decoding the {:.0} MB page {:.2} s (medians of {})",
        median(mapping.clone()).as_secs_f64(),
        page.len() as f64 / 1e6,
        median(decoding).as_secs_f64(),
        mapping.len()
    );
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(11);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    floor_and_path(&runtime, rounds);
    wide_mapping(&runtime, rounds);
}
