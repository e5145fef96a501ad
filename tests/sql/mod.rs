//! The SQL sink scenarios, written once and run on every database (`tests/sql_sqlite.rs`,
//! `tests/sql_postgres.rs`): each test gives its own database or schema.

use d365_connector::testkit::{AttributeDef, EntityDef, Fault, StandIn};
use d365_connector::{
    AttributeType, CheckpointStore, ClientOptions, DataverseClient, ErrorKind, MemorySink,
    Operation, RecordSink, RunOptions, SqlSink, SyncJob, SyncStatus, TargetFieldType, TargetRecord,
    TargetSchema, TargetValue, WriteResult,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::pending;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// One test's database (or schema), with SQL to read what the sink wrote.
pub(crate) trait TestDatabase {
    /// A sink on this test's database, on a connection of its own (as a new process would).
    async fn sink(&self) -> SqlSink;
    /// Runs a statement.
    async fn execute(&self, sql: &str);
    /// Runs a query; every column must be text.
    async fn texts(&self, sql: &str) -> Vec<Vec<Option<String>>>;
    /// SQL giving `column` (quoted) as the text the sink was given: digits of numbers,
    /// `true`/`false`, `YYYY-MM-DD`, RFC 3339 UTC.
    fn as_text(&self, column: &str, field_type: TargetFieldType) -> String;
    /// A column type that rounds numbers.
    fn rounding_type(&self) -> &'static str;
}

pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The names of the target object and two of its fields.
#[derive(Clone, Copy)]
struct Names {
    object: &'static str,
    id: &'static str,
    name: &'static str,
}

const PLAIN: Names = Names {
    object: "Ledger",
    id: "Id",
    name: "Name",
};

/// Quotes, spaces, unicode and `;` in every name.
const HOSTILE: Names = Names {
    object: "Ledger \"x\"); DROP TABLE canary; --",
    id: "Id ✓ \"key\"",
    name: "Näme; DELETE FROM canary; --",
};

/// The fields besides the id and name: (name, type, source column).
const FIELDS: [(&str, &str, &str); 8] = [
    ("Amount", "number", "new_amount"),
    ("Rate", "number", "new_rate"),
    ("Big", "integer", "new_big"),
    ("BigDigits", "number", "new_big"),
    ("Count", "integer", "new_count"),
    ("Active", "boolean", "new_active"),
    ("Day", "date", "new_day"),
    ("At", "datetime", "new_at"),
];

/// A Dynamics table with Money, Decimal and BigInt columns.
fn ledger_table() -> EntityDef {
    EntityDef::new("new_ledger", "new_ledgers", "new_ledgerid")
        .with_primary_name("new_name")
        .with_attribute(AttributeDef::new("new_amount", AttributeType::Money))
        .with_attribute(AttributeDef::new("new_rate", AttributeType::Decimal))
        .with_attribute(AttributeDef::new("new_big", AttributeType::BigInt))
        .with_attribute(AttributeDef::new("new_count", AttributeType::Integer))
        .with_attribute(AttributeDef::new("new_active", AttributeType::Boolean))
        .with_attribute(AttributeDef::date_only("new_day"))
        .with_attribute(AttributeDef::new("new_at", AttributeType::DateTime))
}

/// Row `n`: every digit an `f64` would lose, and a name made to break SQL.
fn ledger_row(n: u32) -> Value {
    json!({
        "new_ledgerid": format!("00000000-0000-0000-0000-{n:012}"),
        "new_name": if n == 3 { "O'Brien \"); DROP TABLE canary; --".to_owned() } else { format!("Ledger {n}") },
        "new_amount": format!("922337203685477.58{n:02}"),
        "new_rate": format!("-12345678901234.12345678{n:02}"),
        "new_big": if n % 2 == 0 { "9223372036854775807" } else { "-9223372036854775808" },
        "new_count": n,
        "new_active": n % 3 == 0,
        "new_day": "2024-02-29",
        "new_at": format!("2024-06-12T14:13:{n:02}Z"),
    })
}

async fn stand_in(rows: u32) -> StandIn {
    let crm = StandIn::start().await;
    crm.add_entity(ledger_table());
    for n in 0..rows {
        crm.upsert("new_ledger", ledger_row(n));
    }
    crm
}

async fn connect(crm: &StandIn) -> DataverseClient {
    crm.client(ClientOptions::default()).unwrap()
}

fn ledger_job(names: Names, mode: &str, identifiers: bool, page_size: u32) -> SyncJob {
    let mut fields = json!({ names.id: "id", names.name: {"type": "string", "max_length": 100} });
    let mut mappings = vec![
        json!({ "source": "new_ledgerid", "target": names.id }),
        json!({ "source": "new_name", "target": names.name }),
    ];
    for (field, kind, source) in FIELDS {
        fields[field] = json!(kind);
        mappings.push(json!({ "source": source, "target": field }));
    }
    let identifiers: Vec<&str> = if identifiers { vec![names.id] } else { vec![] };
    SyncJob::from_json(
        &json!({
            "name": "Ledger sync",
            "source": { "entity": "new_ledger", "page_size": page_size, "parallelism": 1 },
            "target": { "object": names.object, "fields": fields, "required": [names.id] },
            "mode": mode,
            "identifiers": identifiers,
            "mappings": mappings,
            "deletes": if identifiers.is_empty() { "ignore" } else { "propagate" }
        })
        .to_string(),
    )
    .unwrap()
}

/// Every field of the job's target with its type, the id first.
fn columns(job: &SyncJob) -> Vec<(String, TargetFieldType)> {
    let id = job.mapping.identifiers.first().cloned().unwrap_or_default();
    let mut columns: Vec<(String, TargetFieldType)> = job
        .mapping
        .target
        .fields
        .iter()
        .map(|(name, field)| (name.clone(), field.field_type))
        .collect();
    columns.sort_by_key(|(name, _)| *name != id);
    columns
}

type Rows = Vec<BTreeMap<String, Option<String>>>;

/// The table's rows as the sink's text, sorted.
async fn table_rows(db: &impl TestDatabase, job: &SyncJob) -> Rows {
    let columns = columns(job);
    let select: Vec<String> = columns
        .iter()
        .map(|(name, kind)| db.as_text(&quote(name), *kind))
        .collect();
    let sql = format!(
        "SELECT {} FROM {}",
        select.join(", "),
        quote(&job.mapping.target.object)
    );
    let mut rows: Rows = db
        .texts(&sql)
        .await
        .into_iter()
        .map(|row| columns.iter().map(|(n, _)| n.clone()).zip(row).collect())
        .collect();
    rows.sort();
    rows
}

/// What the job writes, as text: the same run into a `MemorySink`.
async fn expected_rows(client: &DataverseClient, job: &SyncJob) -> Rows {
    let memory = MemorySink::new();
    let report = job
        .run(client, &memory, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.status, SyncStatus::Success, "{report}");
    let mut rows: Rows = memory
        .records(&job.mapping.target.object)
        .iter()
        .map(|record| {
            columns(job)
                .into_iter()
                .map(|(name, _)| {
                    let text = record.get(&name).and_then(|value| match value {
                        TargetValue::Null => None,
                        TargetValue::String(s) | TargetValue::Id(s) => Some(s.clone()),
                        // Numbers serialize with every digit; dates and booleans as their text.
                        other => Some(
                            serde_json::to_string(other)
                                .unwrap()
                                .trim_matches('"')
                                .to_owned(),
                        ),
                    });
                    (name, text)
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

/// Resumes `job` from the checkpoint its sink keeps.
async fn run_from_store(
    job: &SyncJob,
    client: &DataverseClient,
    sink: &SqlSink,
) -> d365_connector::SyncReport {
    let checkpoint = sink.load(&job.name).await.unwrap();
    job.run(
        client,
        sink,
        RunOptions {
            checkpoint,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap()
}

fn cell<'r>(rows: &'r Rows, id: &str, field: &str) -> Option<&'r str> {
    let row = rows
        .iter()
        .find(|row| row["Id"].as_deref() == Some(id))
        .unwrap();
    row[field].as_deref()
}

fn ledger_id(n: u32) -> String {
    format!("00000000-0000-0000-0000-{n:012}")
}

/// A full sync, then changes in Dynamics (an update, a delete, a creation) and an incremental
/// sync: each time the table equals what the job writes, digit for digit.
pub(crate) async fn full_and_incremental_sync_mirror_dynamics(db: &impl TestDatabase) {
    let crm = stand_in(12).await;
    let client = connect(&crm).await;
    let job = ledger_job(PLAIN, "upsert", true, 5);
    let sink = db.sink().await;

    let full = run_from_store(&job, &client, &sink).await;

    assert_eq!(full.status, SyncStatus::Success, "{full}");
    assert_eq!(full.counts.upserted, 12);
    let rows = table_rows(db, &job).await;
    assert_eq!(rows, expected_rows(&client, &job).await);
    assert_eq!(rows.len(), 12);
    let second = ledger_id(2);
    assert_eq!(cell(&rows, &second, "Amount"), Some("922337203685477.5802"));
    assert_eq!(
        cell(&rows, &second, "Rate"),
        Some("-12345678901234.1234567802")
    );
    assert_eq!(cell(&rows, &second, "Big"), Some("9223372036854775807"));
    assert_eq!(
        cell(&rows, &ledger_id(1), "Big"),
        Some("-9223372036854775808")
    );
    assert_eq!(
        cell(&rows, &second, "BigDigits"),
        Some("9223372036854775807")
    );
    assert_eq!(cell(&rows, &second, "Day"), Some("2024-02-29"));
    assert_eq!(cell(&rows, &second, "At"), Some("2024-06-12T14:13:02Z"));
    assert_eq!(cell(&rows, &ledger_id(3), "Active"), Some("true"));
    assert_eq!(
        cell(&rows, &ledger_id(3), "Name"),
        Some("O'Brien \"); DROP TABLE canary; --")
    );

    crm.upsert(
        "new_ledger",
        json!({"new_ledgerid": ledger_id(4), "new_amount": "0.0001", "new_name": null}),
    );
    crm.delete("new_ledger", &ledger_id(5));
    crm.upsert("new_ledger", ledger_row(40));
    let sink = db.sink().await;
    let incremental = run_from_store(&job, &client, &sink).await;

    assert_eq!(incremental.status, SyncStatus::Success, "{incremental}");
    assert_eq!(incremental.counts.read, 3, "{incremental}");
    assert_eq!(incremental.counts.upserted, 2);
    assert_eq!(incremental.counts.deleted, 1);
    let rows = table_rows(db, &job).await;
    assert_eq!(rows, expected_rows(&client, &job).await);
    assert_eq!(rows.len(), 12);
    assert_eq!(cell(&rows, &ledger_id(4), "Amount"), Some("0.0001"));
    assert_eq!(cell(&rows, &ledger_id(4), "Name"), None);
    assert!(
        rows.iter()
            .all(|row| row["Id"].as_deref() != Some(ledger_id(5).as_str()))
    );
    assert_eq!(
        cell(&rows, &ledger_id(40), "Amount"),
        Some("922337203685477.5840")
    );
}

/// An expired change-tracking token: the full resync removes what Dynamics deleted meanwhile,
/// and the database's checkpoint moves on to the new token.
pub(crate) async fn a_resync_removes_what_dynamics_deleted(db: &impl TestDatabase) {
    let crm = stand_in(9).await;
    let client = connect(&crm).await;
    let job = ledger_job(PLAIN, "upsert", true, 4);
    let sink = db.sink().await;
    run_from_store(&job, &client, &sink).await;
    let expired = sink.load(&job.name).await.unwrap().unwrap();
    crm.delete("new_ledger", &ledger_id(7));
    crm.delete("new_ledger", &ledger_id(0));
    crm.inject(Fault::ExpireDeltaTokens);

    let resync = run_from_store(&job, &client, &sink).await;

    assert_eq!(resync.status, SyncStatus::Success, "{resync}");
    assert!(resync.full_resync);
    assert_eq!(resync.counts.deleted, 2, "{resync}");
    let rows = table_rows(db, &job).await;
    assert_eq!(rows, expected_rows(&client, &job).await);
    assert_eq!(rows.len(), 7);
    let saved = sink.load(&job.name).await.unwrap().unwrap();
    assert_ne!(saved, expired);
    assert_eq!(Some(&saved), resync.checkpoint.as_ref());
}

/// Passes batches to a sink until batch `kill_at`, which it starts and then never finishes:
/// the test then drops the run, as a killed process would stop it, mid-transaction.
#[derive(Debug)]
struct KilledAt<'a> {
    inner: &'a SqlSink,
    batches: AtomicUsize,
    kill_at: usize,
    killed: Notify,
}

#[async_trait::async_trait]
impl RecordSink for KilledAt<'_> {
    async fn prepare(
        &self,
        target: &TargetSchema,
        identifiers: &[String],
    ) -> d365_connector::Result<()> {
        self.inner.prepare(target, identifiers).await
    }

    async fn write(&self, _: &str, _: &[Operation]) -> d365_connector::Result<Vec<WriteResult>> {
        unreachable!("a job writes with its checkpoint")
    }

    async fn write_with_checkpoint(
        &self,
        object: &str,
        operations: &[Operation],
        checkpoint: d365_connector::BatchCheckpoint<'_>,
    ) -> d365_connector::Result<Vec<WriteResult>> {
        let batch = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
        let mut write = pin!(
            self.inner
                .write_with_checkpoint(object, operations, checkpoint)
        );
        if batch < self.kill_at {
            return write.await;
        }
        let _ = futures::poll!(write.as_mut());
        self.killed.notify_one();
        pending().await
    }
}

/// Insert mode into a table without a key: a run killed while writing its third batch (before
/// or after its commit reached the database), then a new process resuming from the database's
/// checkpoint, write every record exactly once.
pub(crate) async fn a_killed_run_resumes_without_repeating_or_missing_a_batch(
    db: &impl TestDatabase,
) {
    let crm = stand_in(14).await;
    let client = connect(&crm).await;
    let job = ledger_job(PLAIN, "insert", false, 4);
    let sink = db.sink().await;
    let killed = KilledAt {
        inner: &sink,
        batches: AtomicUsize::new(0),
        kill_at: 3,
        killed: Notify::new(),
    };

    tokio::select! {
        report = job.run(&client, &killed, RunOptions::default()) => panic!("the run was not killed: {report:?}"),
        () = killed.killed.notified() => {}
    }
    drop(sink);
    // The third batch's transaction was cut at some instant: its commit either reached the
    // database (with the checkpoint in the same transaction) or not; never part of it.
    let count = format!("SELECT CAST(COUNT(*) AS TEXT) FROM {}", quote("Ledger"));
    let written: u64 = db.texts(&count).await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        written == 8 || written == 12,
        "whole batches of four only: {written}"
    );
    let sink = db.sink().await;
    assert!(sink.load(&job.name).await.unwrap().is_some());
    let resumed = run_from_store(&job, &client, &sink).await;

    assert_eq!(resumed.status, SyncStatus::Success, "{resumed}");
    assert_eq!(
        resumed.counts.inserted,
        14 - written,
        "only the batches not written: {resumed}"
    );
    let rows = table_rows(db, &job).await;
    assert_eq!(rows, expected_rows(&client, &job).await, "each record once");
    assert_eq!(rows.len(), 14);
}

/// A table that exists with a rounding number column and a missing column is refused before
/// anything is read or written, with the table, the columns and the types expected.
pub(crate) async fn an_incompatible_table_is_refused_before_writing(db: &impl TestDatabase) {
    let crm = stand_in(3).await;
    let client = connect(&crm).await;
    let job = ledger_job(PLAIN, "upsert", true, 5);
    let columns: Vec<String> = columns(&job)
        .iter()
        .filter(|(name, _)| name != "Count")
        .map(|(name, kind)| {
            let sql_type = match (name.as_str(), kind) {
                ("Amount", _) => db.rounding_type(),
                ("Id", _) => "TEXT PRIMARY KEY",
                (_, TargetFieldType::Integer) => "BIGINT",
                (_, TargetFieldType::Boolean) => "BOOLEAN",
                _ => "TEXT",
            };
            format!("{} {sql_type}", quote(name))
        })
        .collect();
    db.execute(&format!(
        "CREATE TABLE {} ({})",
        quote("Ledger"),
        columns.join(", ")
    ))
    .await;
    let sink = db.sink().await;

    let error = job
        .run(&client, &sink, RunOptions::default())
        .await
        .expect_err("the job should refuse the table");

    assert_eq!(error.kind(), ErrorKind::Config);
    let message = error.to_string();
    for part in [
        "\"Ledger\"",
        "\"Amount\"",
        "\"Count\" is missing",
        "drop it",
    ] {
        assert!(message.contains(part), "{part} not in: {message}");
    }
    assert!(
        crm.api_requests()
            .iter()
            .all(|r| !r.path().ends_with("/new_ledgers"))
    );
    let count = format!("SELECT CAST(COUNT(*) AS TEXT) FROM {}", quote("Ledger"));
    assert_eq!(db.texts(&count).await[0][0].as_deref(), Some("0"));
    assert!(sink.load(&job.name).await.unwrap().is_none());
}

/// Object and field names with quotes, spaces, unicode and `;` are tables and columns of
/// exactly those names; the canary table beside them is untouched.
pub(crate) async fn hostile_names_work_and_inject_nothing(db: &impl TestDatabase) {
    db.execute("CREATE TABLE canary (n INTEGER)").await;
    db.execute("INSERT INTO canary VALUES (1)").await;
    let crm = stand_in(5).await;
    let client = connect(&crm).await;
    let job = ledger_job(HOSTILE, "upsert", true, 2);
    let sink = db.sink().await;

    let report = run_from_store(&job, &client, &sink).await;
    crm.delete("new_ledger", &ledger_id(1));
    crm.upsert(
        "new_ledger",
        json!({"new_ledgerid": ledger_id(2), "new_name": "renamed"}),
    );
    let again = run_from_store(&job, &client, &sink).await;

    assert_eq!(report.status, SyncStatus::Success, "{report}");
    assert_eq!(again.status, SyncStatus::Success, "{again}");
    assert_eq!(
        table_rows(db, &job).await,
        expected_rows(&client, &job).await
    );
    let names = format!(
        "SELECT {} FROM {} WHERE {} = '{}'",
        quote(HOSTILE.name),
        quote(HOSTILE.object),
        quote(HOSTILE.id),
        ledger_id(2)
    );
    assert_eq!(db.texts(&names).await[0][0].as_deref(), Some("renamed"));
    assert_eq!(
        db.texts("SELECT CAST(n AS TEXT) FROM canary").await,
        [[Some("1".to_owned())]]
    );
}

fn record(id: &str, name: &str) -> (TargetRecord, TargetRecord) {
    let mut key = TargetRecord::new();
    key.insert("Id", TargetValue::Id(id.to_owned()));
    let mut record = key.clone();
    record.insert("Name", TargetValue::String(name.to_owned()));
    (key, record)
}

/// In one batch: an insert of a taken key and an update of a missing record fail alone; the
/// rest is written, and a record the table cannot take says why.
pub(crate) async fn a_refused_record_fails_alone(db: &impl TestDatabase) {
    let sink = db.sink().await;
    let target: TargetSchema = serde_json::from_value(json!({
        "object": "Person", "fields": { "Id": "id", "Name": "string", "Age": "integer" }
    }))
    .unwrap();
    sink.prepare(&target, &["Id".to_owned()]).await.unwrap();
    let (a_key, a) = record("a", "Ann");
    let (b_key, b) = record("b", "Bob");
    let (_, ann_again) = record("a", "Ann again");
    let (c_key, c) = record("c", "Cid");
    let mut bad = b.clone();
    bad.insert("Age", TargetValue::String("forty".to_owned()));

    let results = sink
        .write(
            "Person",
            &[
                Operation::Insert { record: a.clone() },
                Operation::Insert { record: ann_again },
                Operation::Insert { record: b.clone() },
                Operation::Update {
                    key: c_key,
                    record: c,
                },
                Operation::Update {
                    key: b_key.clone(),
                    record: bad,
                },
                Operation::Upsert {
                    key: a_key.clone(),
                    record: a,
                },
            ],
        )
        .await
        .unwrap();

    let reasons: Vec<Option<String>> = results
        .into_iter()
        .map(|r| r.err().map(|failure| failure.reason))
        .collect();
    assert_eq!(reasons[0], None);
    assert!(
        reasons[1].as_deref().unwrap().contains("already exists"),
        "{reasons:?}"
    );
    assert_eq!(reasons[2], None);
    assert!(
        reasons[3].as_deref().unwrap().contains("no Person record"),
        "{reasons:?}"
    );
    assert!(
        reasons[4]
            .as_deref()
            .unwrap()
            .contains("integer field `Age` cannot hold \"forty\""),
        "{reasons:?}"
    );
    assert_eq!(reasons[5], None);
    let names = db
        .texts("SELECT \"Id\", \"Name\" FROM \"Person\" ORDER BY \"Id\"")
        .await;
    let expected = [["a", "Ann"], ["b", "Bob"]].map(|row| row.map(|s| Some(s.to_owned())).to_vec());
    assert_eq!(names, expected);
    let error = sink.write("Nobody", &[]).await.unwrap_err();
    assert!(error.to_string().contains("prepare"), "{error}");
}
