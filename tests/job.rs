//! Sync jobs end to end against the stand-in Dynamics instance: full and incremental runs,
//! crash and resume, partial failures, deletes, resyncs, cancellation, chains and the
//! out-of-the-box job.

use async_trait::async_trait;
use d365_connector::testkit::{Fault, StandIn, VirtualClock};
use d365_connector::{
    CancelToken, ChainOptions, ChainOutcome, Checkpoint, ClientOptions, Connection,
    DataverseClient, ErrorKind, JobChain, MappingErrors, MemorySink, Operation, ProgressFn,
    RecordFailureKind, RecordSink, RunOptions, SyncJob, SyncProgress, SyncStatus, TargetRecord,
    TargetValue, Violation, ViolationKind, WriteResult,
};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

async fn connect(crm: &StandIn) -> (Connection, DataverseClient) {
    let options = ClientOptions::default().with_clock(Arc::new(VirtualClock::new()));
    (crm.connection(), crm.client(options).unwrap())
}

/// Contact to Person, read page by page (`parallelism: 1`) so that tests can count pages;
/// tests/parallel.rs covers partitioned reads.
fn contacts_job(page_size: u32) -> SyncJob {
    SyncJob::from_json(
        &json!({
            "name": "Contacts to Person",
            "source": { "entity": "contact", "incremental": "auto", "page_size": page_size,
                        "parallelism": 1 },
            "target": { "object": "Person",
                        "fields": { "ExternalId": "id", "FirstName": "string",
                                    "LastName": {"type": "string", "max_length": 60},
                                    "Email": "string", "CompanyId": "id", "Birthday": "date" },
                        "required": ["ExternalId"] },
            "mode": "upsert",
            "identifiers": ["ExternalId"],
            "mappings": [
                { "source": "contactid", "target": "ExternalId" },
                { "source": "firstname", "target": "FirstName" },
                { "source": "lastname", "target": "LastName" },
                { "source": "emailaddress1", "target": "Email" },
                { "source": "parentcustomerid", "target": "CompanyId" },
                { "source": "birthdate", "target": "Birthday" }
            ],
            "deletes": "propagate"
        })
        .to_string(),
    )
    .unwrap()
}

/// Account to Company, upserting by the Dynamics account id.
fn companies_job(name: &str) -> SyncJob {
    SyncJob::from_json(
        &json!({
            "name": name,
            "source": { "entity": "account" },
            "target": { "object": "Company", "fields": { "DynamicsId": "id", "Name": "string" } },
            "mode": "upsert",
            "identifiers": ["DynamicsId"],
            "mappings": [
                { "source": "accountid", "target": "DynamicsId" },
                { "source": "name", "target": "Name" }
            ]
        })
        .to_string(),
    )
    .unwrap()
}

/// The error of a job that refuses to start (into a fresh sink).
async fn refused_to_start(job: &SyncJob, client: &DataverseClient) -> d365_connector::Error {
    job.run(client, &MemorySink::new(), RunOptions::default())
        .await
        .expect_err("the job should refuse to start")
}

/// Run options that resume from `checkpoint`.
fn resuming(checkpoint: Option<Checkpoint>) -> RunOptions {
    RunOptions {
        checkpoint,
        ..RunOptions::default()
    }
}

/// A progress callback that keeps every update, and the updates it keeps.
fn recording() -> (ProgressFn, Arc<Mutex<Vec<SyncProgress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    let progress: ProgressFn =
        Arc::new(move |p: &SyncProgress| keep.lock().unwrap().push(p.clone()));
    (progress, seen)
}

fn key(id: &str) -> TargetRecord {
    let mut key = TargetRecord::new();
    key.insert("ExternalId", TargetValue::Id(id.to_owned()));
    key
}

fn ids(records: &[TargetRecord]) -> HashSet<String> {
    records
        .iter()
        .map(|r| {
            r.get("ExternalId")
                .and_then(TargetValue::as_str)
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Asserts that `violations` hold one of `kind` for the source column `source`.
fn assert_violation(violations: &[Violation], kind: ViolationKind, source: &str) {
    assert!(
        violations
            .iter()
            .any(|v| v.kind == kind && v.source.as_deref() == Some(source)),
        "no {kind:?} for `{source}` among {violations:?}"
    );
}

fn contact_ids(crm: &StandIn) -> HashSet<String> {
    crm.rows("contact")
        .iter()
        .map(|row| row["contactid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_full_run_writes_every_record_with_its_customer_id() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = MemorySink::new();

    let report = contacts_job(10)
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();

    assert_eq!(report.status, SyncStatus::Success, "{report}");
    let rows = crm.rows("contact");
    assert_eq!(report.counts.read, rows.len() as u64);
    assert_eq!(report.counts.upserted, rows.len() as u64);
    assert_eq!(report.counts.failed, 0);
    let people = sink.records("Person");
    assert_eq!(ids(&people), contact_ids(&crm));
    for row in &rows {
        let person = sink
            .get("Person", &key(row["contactid"].as_str().unwrap()))
            .unwrap();
        let expected_company = row["_parentcustomerid_value"].as_str();
        assert_eq!(
            person.get("CompanyId").and_then(TargetValue::as_str),
            expected_company,
            "{row}"
        );
        assert_eq!(
            person.get("LastName").and_then(TargetValue::as_str),
            row["lastname"].as_str()
        );
    }
    let queries: Vec<String> = crm
        .api_requests()
        .iter()
        .filter(|r| r.path().ends_with("/contacts"))
        .map(|r| r.path_and_query.clone())
        .collect();
    assert_eq!(queries.len(), 3, "{queries:?}");
    let select = crm
        .api_requests()
        .iter()
        .find(|r| r.path().ends_with("/contacts"))
        .unwrap()
        .query_pairs()
        .into_iter()
        .find(|(name, _)| name == "$select")
        .unwrap()
        .1;
    let mut columns: Vec<&str> = select.split(',').collect();
    columns.sort_unstable();
    assert_eq!(
        columns,
        [
            "_parentcustomerid_value",
            "birthdate",
            "contactid",
            "emailaddress1",
            "firstname",
            "lastname"
        ]
    );
    assert!(report.checkpoint.as_ref().unwrap().delta_link().is_some());
}

#[tokio::test]
async fn a_second_run_writes_only_changes_and_deletes() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = MemorySink::new();
    let job = contacts_job(10);
    let first = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    let before = sink.operation_count("Person");

    let rows = crm.rows("contact");
    let changed = rows[3]["contactid"].as_str().unwrap().to_owned();
    let deleted = rows[7]["contactid"].as_str().unwrap().to_owned();
    crm.upsert(
        "contact",
        json!({"contactid": changed, "lastname": "Renamed"}),
    );
    crm.delete("contact", &deleted);

    let second = job
        .run(&client, &sink, resuming(first.checkpoint))
        .await
        .unwrap();

    assert_eq!(second.status, SyncStatus::Success, "{second}");
    assert_eq!(second.counts.read, 2);
    assert_eq!(second.counts.upserted, 1);
    assert_eq!(second.counts.deleted, 1);
    assert_eq!(sink.operation_count("Person") - before, 2);
    assert!(sink.get("Person", &key(&deleted)).is_none());
    let renamed = sink.get("Person", &key(&changed)).unwrap();
    assert_eq!(
        renamed.get("LastName").and_then(TargetValue::as_str),
        Some("Renamed")
    );
    assert_eq!(ids(&sink.records("Person")), contact_ids(&crm));
}

/// A sink that refuses whole batches from the `fail_from`-th write on (counting from 1).
#[derive(Debug)]
struct CrashingSink<'a> {
    inner: &'a MemorySink,
    writes: AtomicUsize,
    fail_from: usize,
}

#[async_trait]
impl RecordSink for CrashingSink<'_> {
    async fn write(
        &self,
        object: &str,
        operations: &[Operation],
    ) -> d365_connector::Result<Vec<WriteResult>> {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 >= self.fail_from {
            return Err(d365_connector::Error::new(
                ErrorKind::Sink,
                "the store is down; retry the run later",
            ));
        }
        self.inner.write(object, operations).await
    }
}

#[tokio::test]
async fn a_run_killed_at_page_three_resumes_and_writes_every_record_once() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let store = MemorySink::new();
    let job = contacts_job(10);
    let crashing = CrashingSink {
        inner: &store,
        writes: AtomicUsize::new(0),
        fail_from: 3,
    };

    let crashed = job
        .run(&client, &crashing, RunOptions::default())
        .await
        .unwrap();

    assert_eq!(crashed.status, SyncStatus::Failed);
    assert!(
        crashed
            .error
            .as_ref()
            .unwrap()
            .to_string()
            .contains("store is down"),
        "{crashed}"
    );
    assert_eq!(crashed.counts.upserted, 20);
    assert_eq!(store.records("Person").len(), 20);
    let checkpoint = crashed.checkpoint.clone().unwrap();
    assert!(checkpoint.next_link().is_some(), "{checkpoint:?}");

    // A new process: a fresh client, the saved checkpoint as JSON, a healthy sink.
    let saved = serde_json::to_string(&checkpoint).unwrap();
    let (_, fresh_client) = connect(&crm).await;
    crm.clear_requests();
    let resumed = job
        .run(
            &fresh_client,
            &store,
            resuming(Some(serde_json::from_str(&saved).unwrap())),
        )
        .await
        .unwrap();

    assert_eq!(resumed.status, SyncStatus::Success, "{resumed}");
    assert_eq!(resumed.counts.read, 5, "only page 3 is read again");
    let people = store.records("Person");
    assert_eq!(people.len(), crm.rows("contact").len());
    assert_eq!(ids(&people), contact_ids(&crm));
    assert_eq!(store.operation_count("Person"), people.len());
}

#[tokio::test]
async fn one_unconvertible_record_fails_alone_and_the_page_goes_on() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let long_name = "W".repeat(61);
    let bad = crm.rows("contact")[5]["contactid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.upsert("contact", json!({"contactid": bad, "lastname": long_name}));
    let sink = MemorySink::new();

    let report = contacts_job(5000)
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();

    assert_eq!(report.status, SyncStatus::PartialSuccess, "{report}");
    assert_eq!(report.counts.failed, 1);
    assert_eq!(report.failures.len(), 1);
    let failure = &report.failures[0];
    assert_eq!(failure.record_id, bad);
    assert_eq!(failure.field, "LastName");
    assert_eq!(failure.kind, RecordFailureKind::Conversion);
    assert!(failure.reason.contains("60"), "{}", failure.reason);
    let total = crm.rows("contact").len();
    assert_eq!(report.counts.upserted as usize, total - 1);
    assert_eq!(sink.records("Person").len(), total - 1);
    assert!(sink.get("Person", &key(&bad)).is_none());

    let mut csv = Vec::new();
    report.write_failures_csv(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("record_id,field,reason\n"));
    assert!(csv.contains(&format!("{bad},LastName,")), "{csv}");
    let mut jsonl = Vec::new();
    report.write_failures_jsonl(&mut jsonl).unwrap();
    let line: Value = serde_json::from_slice(jsonl.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["record_id"], bad.as_str());

    let entry: Value = serde_json::to_value(&report).unwrap();
    assert_eq!(entry["status"], "PartialSuccess");
    assert_eq!(entry["counts"]["failed"], 1);
    assert_eq!(entry["job"], "Contacts to Person");
}

#[tokio::test]
async fn an_expired_delta_token_runs_a_full_resync_that_removes_what_dynamics_deleted() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = MemorySink::new();
    let job = contacts_job(10);
    let first = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    let gone = crm.rows("contact")[4]["contactid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.delete("contact", &gone);
    crm.inject(Fault::ExpireDeltaTokens);

    let second = job
        .run(&client, &sink, resuming(first.checkpoint))
        .await
        .unwrap();

    assert_eq!(second.status, SyncStatus::Success, "{second}");
    assert!(second.full_resync);
    assert!(second.warnings.is_empty(), "{second}");
    assert_eq!(second.counts.read as usize, crm.rows("contact").len());
    assert_eq!(second.counts.deleted, 1, "{second}");
    assert!(sink.get("Person", &key(&gone)).is_none());
    assert_eq!(ids(&sink.records("Person")), contact_ids(&crm));
    assert!(second.to_string().contains("full resync"));
    assert!(
        second.resync_reason.as_deref().unwrap().contains("expired"),
        "{second}"
    );
    let entry = serde_json::to_string(&second).unwrap();
    assert!(
        !entry.contains("deltatoken"),
        "the activity-log entry carries no token: {entry}"
    );
    assert!(second.checkpoint.unwrap().delta_link().is_some());
}

#[tokio::test]
async fn a_resync_into_a_sink_that_cannot_remove_records_warns() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = d365_connector::JsonLinesSink::new(Vec::new());
    let job = contacts_job(5000);
    let first = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    crm.inject(Fault::ExpireDeltaTokens);

    let second = job
        .run(&client, &sink, resuming(first.checkpoint))
        .await
        .unwrap();

    assert_eq!(second.status, SyncStatus::PartialSuccess, "{second}");
    assert!(second.failures.is_empty());
    assert!(second.warnings[0].contains("cannot remove"), "{second}");
    assert!(second.to_string().contains("warning"));
}

#[tokio::test]
async fn an_unfinished_resync_keeps_the_expired_checkpoint_so_the_next_run_starts_it_again() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let store = MemorySink::new();
    let job = contacts_job(10);
    let first = job
        .run(&client, &store, RunOptions::default())
        .await
        .unwrap();
    crm.inject(Fault::ExpireDeltaTokens);
    let crashing = CrashingSink {
        inner: &store,
        writes: AtomicUsize::new(0),
        fail_from: 2,
    };

    let (on_progress, seen) = recording();

    let crashed = job
        .run(
            &client,
            &crashing,
            RunOptions {
                checkpoint: first.checkpoint.clone(),
                progress: Some(on_progress),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(crashed.status, SyncStatus::Failed, "{crashed}");
    assert!(crashed.full_resync);
    assert_eq!(crashed.checkpoint, first.checkpoint);
    let progress_checkpoints: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.checkpoint.clone())
        .collect();
    assert_eq!(
        progress_checkpoints.len(),
        1,
        "one batch was accepted before the crash"
    );
    assert_eq!(
        progress_checkpoints[0], first.checkpoint,
        "a checkpoint stored mid-resync restarts the resync"
    );
}

#[tokio::test]
async fn cancelling_stops_after_the_batch_with_a_checkpoint_that_resumes() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = MemorySink::new();
    let job = contacts_job(10);
    let cancel = CancelToken::new();
    let (record, seen) = recording();
    let stop = cancel.clone();
    let on_progress: ProgressFn = Arc::new(move |progress: &SyncProgress| {
        record(progress);
        stop.cancel();
    });

    let cancelled = job
        .run(
            &client,
            &sink,
            RunOptions {
                cancel: Some(cancel.clone()),
                progress: Some(on_progress),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(cancelled.status, SyncStatus::Cancelled);
    assert_eq!(cancelled.counts.upserted, 10);
    let progress = seen.lock().unwrap().clone();
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].pages, 1);
    assert_eq!(progress[0].counts.upserted, 10);

    let resumed = job
        .run(&client, &sink, resuming(cancelled.checkpoint))
        .await
        .unwrap();
    assert_eq!(resumed.status, SyncStatus::Success);
    assert_eq!(ids(&sink.records("Person")), contact_ids(&crm));
}

#[tokio::test]
async fn an_invalid_mapping_refuses_to_start_and_reads_no_record() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let mut job = contacts_job(10);
    job.mapping.mappings[4].source = Some("parentcustomerid.name".to_owned());
    job.mapping.mappings[1].source = Some("firstnme".to_owned());

    let error = refused_to_start(&job, &client).await;

    assert_eq!(error.kind(), ErrorKind::Mapping);
    let violations = MappingErrors::from_error(&error).unwrap().violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert_violation(violations, ViolationKind::UnknownAttribute, "firstnme");
    assert_violation(
        violations,
        ViolationKind::LookupFieldAccess,
        "parentcustomerid.name",
    );
    assert!(
        crm.api_requests()
            .iter()
            .all(|r| !r.path().ends_with("/contacts"))
    );
}

#[tokio::test]
async fn propagating_deletes_needs_an_identifier_mapped_from_the_primary_id() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let mut job = contacts_job(10);
    job.mapping.mappings[0].source = Some("emailaddress1".to_owned());
    job.mapping.mappings[3].source = Some("contactid".to_owned());
    job.mapping.target.fields.insert(
        "Email".to_owned(),
        d365_connector::TargetField::new(d365_connector::TargetFieldType::Id),
    );
    job.mapping.target.fields.insert(
        "ExternalId".to_owned(),
        d365_connector::TargetField::new(d365_connector::TargetFieldType::String),
    );

    let error = refused_to_start(&job, &client).await;

    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("contactid"), "{error}");
}

#[tokio::test]
async fn throttling_during_a_run_is_waited_out_and_reported() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    crm.inject(Fault::Throttle {
        retry_after_secs: 2,
    });
    crm.inject(Fault::Unavailable);
    crm.inject(Fault::Throttle {
        retry_after_secs: 30,
    });
    let sink = MemorySink::new();

    let report = contacts_job(10)
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();

    assert_eq!(report.status, SyncStatus::Success, "{report}");
    assert_eq!(ids(&sink.records("Person")), contact_ids(&crm));
    assert_eq!(report.throttled, 2, "two 429s; the 503 is not throttling");
    assert_eq!(report.throttled_for, std::time::Duration::from_secs(32));
    assert!(
        report
            .to_string()
            .contains("throttled: 2 requests refused by service protection limits, 32.0s waited"),
        "{report}"
    );
    let logged = serde_json::to_value(&report).unwrap();
    assert_eq!(logged["throttled"], 2);
    assert_eq!(logged["throttled_for"], 32.0);
}

#[tokio::test]
async fn the_out_of_the_box_job_syncs_users_and_keeps_its_source_and_target() {
    let crm = StandIn::with_sample_data().await;
    let (connection, client) = connect(&crm).await;
    let job = SyncJob::user_sync(&connection);
    assert_eq!(job.name, "User Sync_Stand-in");
    let sink = MemorySink::new();

    let report = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();

    assert_eq!(report.status, SyncStatus::Success, "{report}");
    let users = crm.rows("systemuser");
    assert_eq!(sink.records("User").len(), users.len());
    for row in &users {
        let mut key = TargetRecord::new();
        key.insert(
            "DynamicsUserId",
            TargetValue::Id(row["systemuserid"].as_str().unwrap().to_owned()),
        );
        let user = sink.get("User", &key).unwrap();
        assert_eq!(
            user.get("Username").and_then(TargetValue::as_str),
            row["domainname"].as_str()
        );
        assert_eq!(
            user.get("Email").and_then(TargetValue::as_str),
            row["internalemailaddress"].as_str()
        );
        assert_eq!(
            user.get("FirstName").and_then(TargetValue::as_str),
            row["firstname"].as_str()
        );
    }

    let mut remapped = job.clone();
    remapped.mapping.mappings.retain(|m| m.target != "Email");
    remapped.mapping.target.fields.remove("Email");
    assert_eq!(
        remapped
            .run(&client, &MemorySink::new(), RunOptions::default())
            .await
            .unwrap()
            .status,
        SyncStatus::Success
    );
    let mut moved = job.clone();
    moved.source.entity = "contact".to_owned();
    let mut retargeted = job.clone();
    retargeted.mapping.target.object = "Person".to_owned();
    for changed in [moved, retargeted] {
        let error = refused_to_start(&changed, &client).await;
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("out-of-the-box"), "{error}");
    }
}

#[tokio::test]
async fn a_chain_whose_first_job_fails_does_not_run_its_dependent() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let companies = companies_job("Accounts to Company");
    let mut people = contacts_job(10);
    people.depends_on = Some("Accounts to Company".to_owned());
    let chain = JobChain::new(vec![companies, people]).unwrap();
    let store = MemorySink::new();
    let crashing = CrashingSink {
        inner: &store,
        writes: AtomicUsize::new(0),
        fail_from: 1,
    };

    let report = chain.run(&client, &crashing, ChainOptions::default()).await;

    let failed = report.outcome("Accounts to Company").unwrap();
    match failed {
        ChainOutcome::Ran(first) => assert_eq!(first.status, SyncStatus::Failed),
        other => panic!("{other:?}"),
    }
    let error = failed.error().expect("a failed run carries its error");
    assert_eq!(
        error.kind(),
        ErrorKind::Sink,
        "typed, not a string: {error}"
    );
    assert!(error.to_string().contains("store is down"), "{error}");
    match report.outcome("Contacts to Person").unwrap() {
        ChainOutcome::NotRun { reason, .. } => {
            assert!(reason.contains("Accounts to Company"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        crm.api_requests()
            .iter()
            .all(|r| !r.path().ends_with("/contacts"))
    );

    let healthy = chain.run(&client, &store, ChainOptions::default()).await;
    assert!(
        healthy.outcomes.iter().all(ChainOutcome::succeeded),
        "{healthy:?}"
    );
    assert_eq!(store.records("Company").len(), crm.rows("account").len());
}

#[test]
fn a_chain_refuses_unknown_or_later_dependencies() {
    let mut first = contacts_job(10);
    first.depends_on = Some("Later".to_owned());
    let mut later = contacts_job(10);
    later.name = "Later".to_owned();
    let error = JobChain::new(vec![first, later]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("earlier job"), "{error}");
}

#[test]
fn a_misspelt_job_key_is_refused_and_a_job_round_trips() {
    let mut definition: Value = serde_json::to_value(contacts_job(10)).unwrap();
    let round_trip = SyncJob::from_json(&definition.to_string()).unwrap();
    assert_eq!(round_trip, contacts_job(10));
    let with_serde: SyncJob = serde_json::from_value(definition.clone()).unwrap();
    assert_eq!(with_serde, contacts_job(10));

    definition["delete"] = json!("ignore");
    let error = SyncJob::from_json(&definition.to_string()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("`delete`"), "{error}");
    // Plain serde (a job kept in a JSON column) refuses it the same way, in a chain too.
    let error = serde_json::from_value::<SyncJob>(definition.clone()).unwrap_err();
    assert!(error.to_string().contains("`delete`"), "{error}");
    let error = serde_json::from_value::<JobChain>(json!([definition])).unwrap_err();
    assert!(error.to_string().contains("`delete`"), "{error}");

    let mut source_typo: Value = serde_json::to_value(contacts_job(10)).unwrap();
    source_typo["source"]["incremantal"] = json!("full");
    let error = SyncJob::from_json(&source_typo.to_string()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("incremantal"), "{error}");
}

#[tokio::test]
async fn propagating_deletes_without_identifiers_is_refused() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let mut job = contacts_job(10);
    job.mapping.mode = d365_connector::WriteMode::Insert;
    job.mapping.identifiers.clear();

    let error = refused_to_start(&job, &client).await;

    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("no identifiers"), "{error}");
}

/// A sink that answers with the wrong number of results, or fails to flush.
#[derive(Debug)]
enum BrokenSink {
    ExtraResult,
    MissingResult,
    FlushFails(MemorySink),
}

#[async_trait]
impl RecordSink for BrokenSink {
    async fn write(
        &self,
        object: &str,
        operations: &[Operation],
    ) -> d365_connector::Result<Vec<WriteResult>> {
        let mut results = vec![Ok(()); operations.len()];
        match self {
            BrokenSink::ExtraResult => results.push(Ok(())),
            BrokenSink::MissingResult => {
                results.pop();
            }
            BrokenSink::FlushFails(inner) => return inner.write(object, operations).await,
        }
        Ok(results)
    }

    async fn flush(&self) -> d365_connector::Result<()> {
        match self {
            BrokenSink::FlushFails(_) => Err(d365_connector::Error::new(
                ErrorKind::Sink,
                "the disk is full",
            )),
            _ => Ok(()),
        }
    }
}

#[tokio::test]
async fn a_sink_answering_the_wrong_number_of_results_or_failing_to_flush_fails_the_batch() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    for sink in [
        BrokenSink::ExtraResult,
        BrokenSink::MissingResult,
        BrokenSink::FlushFails(MemorySink::new()),
    ] {
        let report = contacts_job(10)
            .run(&client, &sink, RunOptions::default())
            .await
            .unwrap();

        assert_eq!(report.status, SyncStatus::Failed, "{sink:?}");
        assert!(
            report.checkpoint.is_none(),
            "{sink:?}: nothing durable, nothing to skip"
        );
        assert_eq!(report.counts.read, 0, "{sink:?}");
        assert_eq!(report.counts.upserted, 0, "{sink:?}");
        let error = report.error.unwrap();
        assert_eq!(error.kind(), ErrorKind::Sink, "{error}");
        let message = error.to_string();
        assert!(
            message.contains("exactly one result per operation")
                || message.contains("disk is full"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn progress_carries_a_checkpoint_after_every_accepted_batch() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = MemorySink::new();
    let (on_progress, seen) = recording();

    let report = contacts_job(10)
        .run(
            &client,
            &sink,
            RunOptions {
                progress: Some(on_progress),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen.iter().map(|p| p.counts.upserted).collect::<Vec<_>>(),
        [10, 20, 25]
    );
    assert!(seen[0].checkpoint.as_ref().unwrap().next_link().is_some());
    assert_eq!(seen[2].checkpoint, report.checkpoint);
}

#[test]
fn a_page_size_dataverse_cannot_serve_is_refused() {
    let mut definition = serde_json::to_value(contacts_job(10)).unwrap();
    definition["source"]["page_size"] = json!(0);
    let error = SyncJob::from_json(&definition.to_string()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("1 to 5000"), "{error}");
}

/// Finds Company ids in the memory sink by their `DynamicsId`, as a host would in its store.
#[derive(Debug)]
struct CompaniesInSink(Arc<MemorySink>);

#[async_trait]
impl d365_connector::TargetLookup for CompaniesInSink {
    async fn find_ids(
        &self,
        object: &str,
        criteria: &TargetRecord,
    ) -> d365_connector::Result<Vec<String>> {
        Ok(self
            .0
            .records(object)
            .iter()
            .filter(|record| {
                criteria
                    .iter()
                    .all(|(field, value)| record.get(field) == Some(value))
            })
            .map(|record| {
                format!(
                    "company-{}",
                    record
                        .get("DynamicsId")
                        .and_then(TargetValue::as_str)
                        .unwrap_or_default()
                )
            })
            .collect())
    }
}

#[tokio::test]
async fn a_chain_hands_the_lookup_to_derived_mappings_of_dependent_jobs() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let companies = companies_job("Company");
    let people = SyncJob::from_json(
        &json!({
            "name": "Company Person",
            "depends_on": "Company",
            "source": { "entity": "contact", "filter": "_parentcustomerid_value ne null" },
            "target": { "object": "Person", "fields": { "ExternalId": "id", "CompanyId": "id" } },
            "mode": "upsert",
            "identifiers": ["ExternalId"],
            "mappings": [
                { "source": "contactid", "target": "ExternalId" },
                { "target": "CompanyId",
                  "lookup": { "object": "Company", "match": { "DynamicsId": "parentcustomerid" } } }
            ]
        })
        .to_string(),
    )
    .unwrap();
    let chain = JobChain::new(vec![companies, people]).unwrap();
    let sink = Arc::new(MemorySink::new());

    let report = chain
        .run(
            &client,
            sink.as_ref(),
            ChainOptions {
                lookup: Some(Arc::new(CompaniesInSink(Arc::clone(&sink)))),
                ..ChainOptions::default()
            },
        )
        .await;

    let ChainOutcome::Ran(people) = report.outcome("Company Person").unwrap() else {
        panic!("{report:?}");
    };
    let account_ids: HashSet<Value> = crm
        .rows("account")
        .into_iter()
        .map(|row| row["accountid"].clone())
        .collect();
    let rows: Vec<Value> = crm
        .rows("contact")
        .into_iter()
        .filter(|row| !row["_parentcustomerid_value"].is_null())
        .collect();
    assert_eq!(people.status, SyncStatus::Success, "{people}");
    assert_eq!(people.counts.upserted as usize, rows.len(), "{people}");
    let mut at_contacts = 0;
    for row in &rows {
        let person = sink
            .get("Person", &key(row["contactid"].as_str().unwrap()))
            .unwrap();
        let customer = &row["_parentcustomerid_value"];
        if account_ids.contains(customer) {
            let company = format!("company-{}", customer.as_str().unwrap());
            assert_eq!(
                person.get("CompanyId").and_then(TargetValue::as_str),
                Some(company.as_str())
            );
        } else {
            // The customer is a contact: no Company matches, so the field stays empty.
            at_contacts += 1;
            assert_eq!(person.get("CompanyId"), Some(&TargetValue::Null));
        }
    }
    assert!(
        at_contacts > 0,
        "the sample has contacts whose customer is a contact"
    );
}

/// A sink whose first write waits until the stand-in has been asked for the next page.
#[derive(Debug)]
struct WaitsForPrefetch<'a> {
    crm: &'a StandIn,
    inner: MemorySink,
    saw_prefetch: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl RecordSink for WaitsForPrefetch<'_> {
    async fn write(
        &self,
        object: &str,
        operations: &[Operation],
    ) -> d365_connector::Result<Vec<WriteResult>> {
        if self.inner.operation_count(object) == 0 {
            let page_requests = || {
                self.crm
                    .api_requests()
                    .iter()
                    .filter(|r| r.path().ends_with("/contacts"))
                    .count()
            };
            for _ in 0..500 {
                if page_requests() >= 2 {
                    self.saw_prefetch.store(true, Ordering::SeqCst);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        self.inner.write(object, operations).await
    }
}

#[tokio::test]
async fn the_next_page_is_fetched_while_the_current_one_is_written() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = WaitsForPrefetch {
        crm: &crm,
        inner: MemorySink::new(),
        saw_prefetch: Default::default(),
    };

    let report = contacts_job(10)
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();

    assert_eq!(report.status, SyncStatus::Success, "{report}");
    assert!(
        sink.saw_prefetch.load(Ordering::SeqCst),
        "page 2 was not requested while page 1 was being written"
    );
}

#[tokio::test]
async fn a_changed_mapping_reads_everything_again_instead_of_failing_on_its_checkpoint() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = MemorySink::new();
    let job = contacts_job(10);
    let first = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    let mut wider = job.clone();
    wider.mapping.target.fields.insert(
        "Title".to_owned(),
        d365_connector::TargetField::new(d365_connector::TargetFieldType::String),
    );
    wider
        .mapping
        .mappings
        .push(d365_connector::FieldMapping::source("jobtitle", "Title"));

    let second = wider
        .run(&client, &sink, resuming(first.checkpoint))
        .await
        .unwrap();

    assert_eq!(second.status, SyncStatus::Success, "{second}");
    assert!(second.full_resync);
    assert!(
        second.resync_reason.as_deref().unwrap().contains("columns"),
        "{second}"
    );
    assert_eq!(second.counts.read as usize, crm.rows("contact").len());
    for row in crm.rows("contact") {
        let person = sink
            .get("Person", &key(row["contactid"].as_str().unwrap()))
            .unwrap();
        assert_eq!(
            person.get("Title").and_then(TargetValue::as_str),
            row["jobtitle"].as_str()
        );
    }
}

#[tokio::test]
async fn a_derived_mapping_without_a_lookup_refuses_to_start() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let mut job = contacts_job(10);
    job.mapping.mappings[4] = serde_json::from_value(json!({
        "target": "CompanyId",
        "lookup": { "object": "Company", "match": { "DynamicsId": "parentcustomerid" } }
    }))
    .unwrap();

    let error = refused_to_start(&job, &client).await;

    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("TargetLookup"), "{error}");
    assert!(
        crm.api_requests()
            .iter()
            .all(|r| !r.path().ends_with("/contacts"))
    );
}

#[tokio::test]
async fn insert_and_update_modes_count_what_they_did_and_a_refused_record_is_reported() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let total = crm.rows("contact").len() as u64;

    let mut updates = contacts_job(10);
    updates.mapping.mode = d365_connector::WriteMode::Update;
    let sink = MemorySink::new();
    let refused = updates
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    // Every record failed and nothing was written: the run failed.
    assert_eq!(refused.status, SyncStatus::Failed, "{refused}");
    assert_eq!(refused.counts.failed, total);
    assert_eq!(refused.counts.updated, 0);
    let failure = &refused.failures[0];
    assert_eq!(failure.kind, RecordFailureKind::Write);
    assert!(failure.reason.contains("use upsert"), "{}", failure.reason);
    assert!(contact_ids(&crm).contains(&failure.record_id));
    assert_eq!(
        failure.field, "ExternalId",
        "the sink named the identifiers"
    );
    let mut csv = Vec::new();
    refused.write_failures_csv(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.contains(&format!("{},ExternalId,", failure.record_id)),
        "{csv}"
    );

    contacts_job(10)
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    let updated = updates
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(updated.status, SyncStatus::Success, "{updated}");
    assert_eq!(updated.counts.updated, total);

    let mut inserts = contacts_job(10);
    inserts.mapping.mode = d365_connector::WriteMode::Insert;
    inserts.deletes = d365_connector::DeletePolicy::Ignore;
    let fresh = MemorySink::new();
    let first = inserts
        .run(&client, &fresh, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(first.counts.inserted, total);
    let gone = crm.rows("contact")[0]["contactid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.delete("contact", &gone);
    let second = inserts
        .run(&client, &fresh, resuming(first.checkpoint))
        .await
        .unwrap();
    assert_eq!(second.status, SyncStatus::Success, "{second}");
    assert_eq!((second.counts.read, second.counts.skipped), (1, 1));
    assert_eq!(
        fresh.records("Person").len() as u64,
        total,
        "an ignored delete keeps the record"
    );
    assert!(second.started_at <= second.finished_at);
}

#[tokio::test]
async fn a_record_changed_twice_within_one_second_is_written_by_the_next_modified_on_run() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let mut definition = serde_json::to_value(contacts_job(10)).unwrap();
    definition["source"]["incremental"] = json!("modified_on");
    let job = SyncJob::from_json(&definition.to_string()).unwrap();
    let id = crm.upsert(
        "contact",
        json!({"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "first@example.com",
               "modifiedon": "2030-01-01T00:00:00Z"}),
    );
    let sink = MemorySink::new();
    let first = job
        .run(&client, &sink, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(first.status, SyncStatus::Success, "{first}");
    assert_eq!(
        sink.get("Person", &key(&id)).unwrap().get("Email"),
        Some(&TargetValue::String("first@example.com".into()))
    );

    // Changed again within the same second, after the first run ended.
    crm.upsert(
        "contact",
        json!({"contactid": id, "emailaddress1": "second@example.com",
               "modifiedon": "2030-01-01T00:00:00Z"}),
    );
    let second = job
        .run(&client, &sink, resuming(first.checkpoint))
        .await
        .unwrap();

    assert_eq!(second.status, SyncStatus::Success, "{second}");
    assert_eq!(second.counts.read, 1, "only the changed record: {second}");
    assert_eq!(
        sink.get("Person", &key(&id)).unwrap().get("Email"),
        Some(&TargetValue::String("second@example.com".into()))
    );
}

/// Accounts to Company and Contacts to Person (which depends on it), both read page by page.
fn companies_then_people() -> JobChain {
    let mut people = contacts_job(10);
    people.depends_on = Some("Accounts to Company".to_owned());
    JobChain::new(vec![companies_job("Accounts to Company"), people]).unwrap()
}

#[tokio::test]
async fn a_chain_whose_first_job_meets_an_outage_reports_a_retryable_typed_error() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    for _ in 0..5 {
        crm.inject(Fault::Unavailable); // every attempt of the first request
    }

    let report = companies_then_people()
        .run(&client, &MemorySink::new(), ChainOptions::default())
        .await;

    let error = report.outcomes[0]
        .error()
        .expect("the outage stopped the job");
    assert!(
        error.is_retryable(),
        "an outage is worth retrying later: {error:?}"
    );
    assert!(error.is_exhausted(), "{error:?}");
    assert_eq!(error.status(), Some(503), "{error:?}");
    assert_ne!(error.kind(), ErrorKind::Mapping);
    assert!(matches!(report.outcomes[1], ChainOutcome::NotRun { .. }));
    // The activity-log form keeps what a host decides on.
    let logged = serde_json::to_value(&report).unwrap();
    let logged_error = &logged["outcomes"][0]["error"];
    assert_eq!(logged_error["retryable"], json!(true), "{logged}");
    assert_eq!(logged_error["status"], json!(503), "{logged}");
    assert_eq!(logged_error["kind"], json!(error.kind()), "{logged}");
    let read_back: d365_connector::ChainReport = serde_json::from_value(logged).unwrap();
    assert_eq!(read_back.outcomes, report.outcomes);
}

#[tokio::test]
async fn a_chain_refused_for_a_mapping_violation_reports_a_non_retryable_mapping_error() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let mut people = contacts_job(10);
    people.mapping.mappings[4].source = Some("parentcustomerid.name".to_owned());
    let chain = JobChain::new(vec![people]).unwrap();

    let report = chain
        .run(&client, &MemorySink::new(), ChainOptions::default())
        .await;

    let ChainOutcome::Refused { error, .. } = &report.outcomes[0] else {
        panic!("{report:?}");
    };
    assert_eq!(error.kind(), ErrorKind::Mapping, "{error}");
    assert!(!error.is_retryable(), "a person must fix the mapping");
    let violations = MappingErrors::from_error(error).unwrap().violations();
    assert_violation(
        violations,
        ViolationKind::LookupFieldAccess,
        "parentcustomerid.name",
    );
    let logged = serde_json::to_value(&report).unwrap();
    assert_eq!(logged["outcomes"][0]["outcome"], json!("refused"));
    assert_eq!(logged["outcomes"][0]["error"]["kind"], json!("mapping"));
    assert_eq!(logged["outcomes"][0]["error"]["retryable"], json!(false));
}

#[tokio::test]
async fn a_chain_resumed_from_its_reports_checkpoints_reads_only_changes() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let chain = companies_then_people();
    let sink = MemorySink::new();
    let first = chain.run(&client, &sink, ChainOptions::default()).await;
    assert!(
        first.outcomes.iter().all(ChainOutcome::succeeded),
        "{first:?}"
    );
    let contoso = crm.rows("account")[0]["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.upsert(
        "account",
        json!({"accountid": contoso, "name": "Contoso Renamed"}),
    );

    let second = chain
        .run(
            &client,
            &sink,
            ChainOptions {
                checkpoints: first.checkpoints().clone(),
                ..ChainOptions::default()
            },
        )
        .await;

    let read = |report: &d365_connector::ChainReport, job: &str| match report.outcome(job) {
        Some(ChainOutcome::Ran(ran)) => ran.counts.read,
        other => panic!("{other:?}"),
    };
    assert_eq!(read(&second, "Accounts to Company"), 1);
    assert_eq!(read(&second, "Contacts to Person"), 0);
    assert_eq!(first.checkpoints().len(), 2);

    // A job that is not run keeps the checkpoint it was given, so the next run loses nothing.
    let crashing = CrashingSink {
        inner: &sink,
        writes: AtomicUsize::new(0),
        fail_from: 1,
    };
    crm.upsert(
        "account",
        json!({"accountid": contoso, "name": "Contoso Again"}),
    );
    let third = chain
        .run(
            &client,
            &crashing,
            ChainOptions {
                checkpoints: second.checkpoints().clone(),
                ..ChainOptions::default()
            },
        )
        .await;
    assert!(matches!(third.outcomes[1], ChainOutcome::NotRun { .. }));
    assert_eq!(third.checkpoints(), second.checkpoints());
}

#[tokio::test]
async fn options_cloned_into_a_spawned_task_hand_progress_and_checkpoints_back() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let sink = Arc::new(MemorySink::new());
    let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel::<SyncProgress>();
    let options = ChainOptions {
        lookup: Some(Arc::new(CompaniesInSink(Arc::clone(&sink)))),
        progress: Some(Arc::new(move |p: &SyncProgress| {
            drop(progress.send(p.clone()))
        })),
        cancel: Some(CancelToken::new()),
        ..ChainOptions::default()
    };
    let chain = companies_then_people();

    let task = {
        let (chain, client, sink, options) = (
            chain.clone(),
            client.clone(),
            Arc::clone(&sink),
            options.clone(),
        );
        tokio::spawn(async move { chain.run(&client, sink.as_ref(), options).await })
    };
    let report = task.await.unwrap();
    drop(options); // the channel closes once the host's copy is gone too

    let mut last = std::collections::BTreeMap::new();
    while let Some(update) = updates.recv().await {
        last.insert(update.job.clone(), update.checkpoint.clone().unwrap());
    }
    assert!(
        report.outcomes.iter().all(ChainOutcome::succeeded),
        "{report:?}"
    );
    assert_eq!(
        &last,
        report.checkpoints(),
        "every job's last progress is its checkpoint"
    );
}

#[test]
fn a_job_built_in_code_equals_the_same_job_read_from_json() {
    use d365_connector::{
        DeletePolicy, FieldMapping, MappingSet, Parallelism, TargetField, TargetFieldType,
        TargetSchema, WriteMode,
    };
    let field = TargetField::new;
    let target = TargetSchema::new("Person")
        .with_field("ExternalId", field(TargetFieldType::Id))
        .with_field("FirstName", field(TargetFieldType::String))
        .with_field(
            "LastName",
            field(TargetFieldType::String).with_max_length(60),
        )
        .with_field("Email", field(TargetFieldType::String))
        .with_field("CompanyId", field(TargetFieldType::Id))
        .with_field("Birthday", field(TargetFieldType::Date))
        .with_required("ExternalId");
    let mapping = MappingSet::new(target, WriteMode::Upsert)
        .with_identifier("ExternalId")
        .with_mapping(FieldMapping::source("contactid", "ExternalId"))
        .with_mapping(FieldMapping::source("firstname", "FirstName"))
        .with_mapping(FieldMapping::source("lastname", "LastName"))
        .with_mapping(FieldMapping::source("emailaddress1", "Email"))
        .with_mapping(FieldMapping::source("parentcustomerid", "CompanyId"))
        .with_mapping(FieldMapping::source("birthdate", "Birthday"));

    let job = SyncJob::builder("Contacts to Person", "contact", mapping.clone())
        .with_page_size(10)
        .with_parallelism(Parallelism::Fixed(1))
        .with_deletes(DeletePolicy::Propagate)
        .build()
        .unwrap();

    assert_eq!(job, contacts_job(10));
    let error = SyncJob::builder("Contacts to Person", "contact", mapping)
        .with_reconcile_every(3)
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("reconcile_every"), "{error}");
}

#[tokio::test]
async fn chain_options_hand_each_job_the_metadata_of_its_entity() {
    let crm = StandIn::with_sample_data().await;
    let (_, client) = connect(&crm).await;
    let account = d365_connector::EntityMetadata::fetch(
        &client,
        "account",
        &d365_connector::MetadataOptions::default(),
    )
    .await
    .unwrap();
    crm.clear_requests();

    let report = companies_then_people()
        .run(
            &client,
            &MemorySink::new(),
            ChainOptions {
                metadata: vec![Arc::new(account)],
                ..ChainOptions::default()
            },
        )
        .await;

    assert!(
        report.outcomes.iter().all(ChainOutcome::succeeded),
        "{report:?}"
    );
    let definitions: Vec<String> = crm
        .api_requests()
        .iter()
        .filter(|r| r.path().contains("EntityDefinitions"))
        .map(|r| r.path_and_query.clone())
        .collect();
    assert!(!definitions.is_empty(), "contact's metadata is fetched");
    assert!(
        definitions.iter().all(|path| !path.contains("account")),
        "{definitions:?}"
    );
}
