//! Cookbook: the host traits implemented over a store of the host's own, with zero
//! configuration against the embedded stand-in Dynamics instance.
//!
//! ```sh
//! cargo run --example host_traits
//! ```
//!
//! `HostDb` stands for the host's database. It is the [`RecordSink`] that jobs write into (each
//! batch with its checkpoint, as one transaction), the [`CheckpointStore`] they resume from and
//! the [`TargetLookup`] that derived mappings search; `TokenRow`, one row of it, is the
//! [`TokenStore`] of a user's sign-in. Every trait is implemented with `#[async_trait]`
//! (re-exported by the crate) and fails with the crate's `Error`: `ErrorKind::Sink`,
//! `ErrorKind::Lookup` or `ErrorKind::Store`, the cause attached with `with_source`, and an
//! outage marked `with_retryable(true)`.
//!
//! It signs a user in once (the tokens go to `TokenRow`), then, as a restarted service would,
//! builds a new authorizer that loads them from there, runs a two-job chain built in code
//! (Company, then Person, whose `CompanyId` is looked up in `HostDb`), and finally runs the chain
//! while the database is offline, deciding from the typed error whether to retry later.

use d365_connector::testkit::StandIn;
use d365_connector::{
    AuthorizationCodeAuthorizer, AuthorizeOptions, BatchCheckpoint, ChainOptions, ChainOutcome,
    ChainReport, Checkpoint, CheckpointStore, Connection, DataverseClient, DeletePolicy,
    DerivedLookup, EntraApp, Error, ErrorKind, FieldMapping, JobChain, MappingSet, MultipleMatches,
    Operation, RecordSink, Result, SyncJob, TargetField, TargetFieldType, TargetLookup,
    TargetRecord, TargetSchema, TargetValue, TokenSet, TokenStore, WriteFailure, WriteMode,
    WriteResult, async_trait,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

type Failure = Box<dyn std::error::Error>;

/// Where the stand-in's sign-in sends the browser back to.
const REDIRECT_URI: &str = "http://localhost:8400/callback";

#[allow(dead_code)] // `main` is unused where tests include this file as a module.
#[tokio::main]
async fn main() -> std::result::Result<ExitCode, Failure> {
    let crm = StandIn::with_sample_data().await;
    let db = run(&crm, &mut std::io::stdout()).await?;
    let synced = db.holds_tokens() && db.rows("Person") > 0 && db.rows("Company") > 0;
    Ok(if synced {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The whole cookbook against `crm`, telling `out` what happens; hands back the host's
/// database.
pub async fn run(crm: &StandIn, out: &mut dyn Write) -> std::result::Result<Arc<HostDb>, Failure> {
    let db = Arc::new(HostDb::default());
    let connection = Connection::builder("Contoso (stand-in)", crm.url())
        .with_authority(crm.authority())
        .build()?;
    let app = EntraApp::builder(StandIn::TENANT_ID, StandIn::CLIENT_ID)
        .with_redirect_uri(REDIRECT_URI)
        .build()?;
    let token_row = Arc::new(TokenRow(Arc::clone(&db)));

    // 1. A user signs in once; the token set goes to the host's TokenStore.
    let signing_in = AuthorizationCodeAuthorizer::builder(&connection, app.clone())
        .with_token_store(token_row.clone())
        .build()?;
    let request = signing_in.authorization_request(&AuthorizeOptions::new())?;
    let redirect = sign_in_at_stand_in(request.url().as_str()).await?;
    signing_in
        .complete_authorization(request, &redirect)
        .await?;
    writeln!(out, "Signed in; the token set is in the host's token row.")?;

    // 2. A restarted service: a new authorizer loads the tokens from the same store.
    let restarted = AuthorizationCodeAuthorizer::builder(&connection, app)
        .with_token_store(token_row)
        .build()?;
    let client = DataverseClient::new(connection, Arc::new(restarted))?;

    // 3. A chain built in code, resuming from the checkpoints the database keeps.
    let chain = JobChain::new(vec![companies_job()?, people_job()?])?;
    let report = chain
        .run(&client, db.as_ref(), chain_options(&chain, &db).await?)
        .await;
    print_outcomes(&report, out)?;
    writeln!(
        out,
        "Company: {} rows, Person: {} rows ({} with a CompanyId found by the lookup)\n",
        db.rows("Company"),
        db.rows("Person"),
        db.people_with_company()
    )?;

    // 4. The database goes offline once the chain has started: the typed error in the report
    //    says what to do.
    let options = chain_options(&chain, &db).await?;
    db.offline.store(true, Ordering::SeqCst);
    let report = chain.run(&client, db.as_ref(), options).await;
    print_outcomes(&report, out)?;
    db.offline.store(false, Ordering::SeqCst);
    Ok(db)
}

/// What the user's browser does at the sign-in page: the stand-in signs in at once and answers
/// with a redirect to [`REDIRECT_URI`], whose URL (code and state) is returned.
async fn sign_in_at_stand_in(url: &str) -> std::result::Result<String, Failure> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let answer = browser.get(url).send().await?;
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .ok_or("the sign-in page did not redirect back")?;
    Ok(location.to_str()?.to_owned())
}

/// Options resuming each job from its checkpoint in `db`, looking Company ids up in `db`.
async fn chain_options(chain: &JobChain, db: &Arc<HostDb>) -> Result<ChainOptions> {
    let mut options = ChainOptions {
        lookup: Some(Arc::clone(db) as Arc<dyn TargetLookup>),
        ..ChainOptions::default()
    };
    for job in chain.jobs() {
        if let Some(checkpoint) = db.load(&job.name).await? {
            options.checkpoints.insert(job.name.clone(), checkpoint);
        }
    }
    Ok(options)
}

/// Prints each job's outcome and, for a failure, what the host does about it.
fn print_outcomes(report: &ChainReport, out: &mut dyn Write) -> std::result::Result<(), Failure> {
    for outcome in &report.outcomes {
        match outcome {
            ChainOutcome::Ran(report) => writeln!(out, "{report}")?,
            ChainOutcome::Refused { job, .. } => writeln!(out, "{job}: refused to start")?,
            ChainOutcome::NotRun { job, reason } => writeln!(out, "{job}: {reason}")?,
        }
        if let Some(error) = outcome.error() {
            let decision = if error.is_retryable() {
                "retry later"
            } else {
                "page a person"
            };
            writeln!(out, "  -> {decision} ({:?}: {error})", error.kind())?;
        }
    }
    writeln!(out)?;
    Ok(())
}

/// Accounts into Company, upserting by the Dynamics account id.
fn companies_job() -> Result<SyncJob> {
    let target = TargetSchema::new("Company")
        .with_field("DynamicsId", TargetField::new(TargetFieldType::Id))
        .with_field("Name", TargetField::new(TargetFieldType::String))
        .with_required("DynamicsId");
    let mapping = MappingSet::new(target, WriteMode::Upsert)
        .with_identifier("DynamicsId")
        .with_mapping(FieldMapping::source("accountid", "DynamicsId"))
        .with_mapping(FieldMapping::source("name", "Name"));
    SyncJob::builder("Company", "account", mapping)
        .with_deletes(DeletePolicy::Propagate)
        .build()
}

/// Contacts into Person; `CompanyId` is the host's id of the Company whose `DynamicsId` is the
/// contact's `parentcustomerid` (none when the customer is a contact).
fn people_job() -> Result<SyncJob> {
    let target = TargetSchema::new("Person")
        .with_field("DynamicsId", TargetField::new(TargetFieldType::Id))
        .with_field("LastName", TargetField::new(TargetFieldType::String))
        .with_field("CompanyId", TargetField::new(TargetFieldType::Id));
    let company = DerivedLookup {
        object: "Company".to_owned(),
        match_fields: BTreeMap::from([("DynamicsId".to_owned(), "parentcustomerid".to_owned())]),
        multiple: MultipleMatches::Fail,
    };
    let mapping = MappingSet::new(target, WriteMode::Upsert)
        .with_identifier("DynamicsId")
        .with_mapping(FieldMapping::source("contactid", "DynamicsId"))
        .with_mapping(FieldMapping::source("lastname", "LastName"))
        .with_mapping(FieldMapping::derived(company, "CompanyId"));
    SyncJob::builder("Person", "contact", mapping)
        .with_depends_on("Company")
        .build()
}

/// The host's own database, in memory: tables of records by key, each record with the id the
/// host gave it, the jobs' checkpoints and one row of (serialized) tokens.
#[derive(Debug, Default)]
pub struct HostDb {
    data: Mutex<Data>,
    /// While set, every call fails as an unreachable database would.
    pub offline: AtomicBool,
}

#[derive(Debug, Default)]
struct Data {
    /// Table name to (key as JSON to (host id, record)).
    tables: BTreeMap<String, BTreeMap<String, (String, TargetRecord)>>,
    checkpoints: BTreeMap<String, Checkpoint>,
    /// A real host keeps this row encrypted.
    token_row: Option<String>,
    next_id: u64,
}

impl HostDb {
    /// The number of rows of `table`.
    pub fn rows(&self, table: &str) -> usize {
        self.lock()
            .map(|data| data.tables.get(table).map_or(0, BTreeMap::len))
            .unwrap_or(0)
    }

    /// How many Person rows have a `CompanyId`.
    pub fn people_with_company(&self) -> usize {
        let Ok(data) = self.lock() else { return 0 };
        data.tables.get("Person").map_or(0, |people| {
            people
                .values()
                .filter(|(_, person)| person.get("CompanyId").is_some_and(|id| !id.is_null()))
                .count()
        })
    }

    /// Whether the token row holds a token set.
    pub fn holds_tokens(&self) -> bool {
        self.lock().is_ok_and(|data| data.token_row.is_some())
    }

    /// The data, or the `kind` error of an unreachable database.
    fn lock_for(&self, kind: ErrorKind) -> Result<MutexGuard<'_, Data>> {
        if self.offline.load(Ordering::SeqCst) {
            let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
            return Err(
                Error::new(kind, "the host database is unreachable; retry later")
                    .with_retryable(true)
                    .with_source(cause),
            );
        }
        Ok(self.data.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Data>> {
        self.lock_for(ErrorKind::Sink)
    }
}

impl Data {
    /// Applies one operation to `table`.
    fn apply(&mut self, table: &str, operation: &Operation) -> WriteResult {
        let rows = self.tables.entry(table.to_owned()).or_default();
        match operation {
            Operation::Insert { .. } => {
                return Err(WriteFailure::new(
                    "this database writes by key only; use upsert",
                ));
            }
            Operation::Delete { key } => {
                rows.remove(&key_text(key));
            }
            Operation::Update { key, record } => match rows.get_mut(&key_text(key)) {
                Some((_, stored)) => *stored = record.clone(),
                None => {
                    let fields: Vec<&str> = key.iter().map(|(name, _)| name).collect();
                    return Err(WriteFailure::new("no row has this key; use upsert")
                        .with_field(fields.join(", ")));
                }
            },
            Operation::Upsert { key, record } => {
                self.next_id += 1;
                let id = format!("{table}-{}", self.next_id);
                let (_, stored) = rows.entry(key_text(key)).or_insert((id, record.clone()));
                *stored = record.clone();
            }
        }
        Ok(())
    }
}

/// A record's fields as JSON: the key a row is found by.
fn key_text(record: &TargetRecord) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

#[async_trait]
impl RecordSink for HostDb {
    async fn write(&self, object: &str, operations: &[Operation]) -> Result<Vec<WriteResult>> {
        let mut data = self.lock()?;
        Ok(operations.iter().map(|op| data.apply(object, op)).collect())
    }

    /// The batch and the checkpoint under one lock: one transaction of a real database.
    async fn write_with_checkpoint(
        &self,
        object: &str,
        operations: &[Operation],
        checkpoint: BatchCheckpoint<'_>,
    ) -> Result<Vec<WriteResult>> {
        let mut data = self.lock()?;
        let results = operations.iter().map(|op| data.apply(object, op)).collect();
        if let Some(resume) = checkpoint.checkpoint {
            data.checkpoints
                .insert(checkpoint.job.to_owned(), resume.clone());
        }
        Ok(results)
    }
}

#[async_trait]
impl CheckpointStore for HostDb {
    async fn load(&self, job: &str) -> Result<Option<Checkpoint>> {
        Ok(self
            .lock_for(ErrorKind::Store)?
            .checkpoints
            .get(job)
            .cloned())
    }

    async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<()> {
        let mut data = self.lock_for(ErrorKind::Store)?;
        data.checkpoints.insert(job.to_owned(), checkpoint.clone());
        Ok(())
    }
}

#[async_trait]
impl TargetLookup for HostDb {
    async fn find_ids(&self, object: &str, criteria: &TargetRecord) -> Result<Vec<String>> {
        let data = self.lock_for(ErrorKind::Lookup)?;
        let matches = |record: &TargetRecord| {
            criteria.iter().all(|(field, value)| {
                record.get(field).and_then(TargetValue::as_str) == value.as_str()
            })
        };
        Ok(data
            .tables
            .get(object)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|(_, record)| matches(record))
            .map(|(id, _)| id.clone())
            .take(2)
            .collect())
    }
}

/// The row of `HostDb` that keeps a signed-in user's tokens.
#[derive(Debug)]
pub struct TokenRow(Arc<HostDb>);

impl TokenRow {
    /// A `Store` error saying what could not be done with the row.
    fn error(doing: &str, source: serde_json::Error) -> Error {
        Error::new(
            ErrorKind::Store,
            format!("the token row could not be {doing}; sign the user in again"),
        )
        .with_source(source)
    }
}

#[async_trait]
impl TokenStore for TokenRow {
    async fn load(&self) -> Result<Option<TokenSet>> {
        let data = self.0.lock_for(ErrorKind::Store)?;
        let row = data.token_row.as_deref();
        row.map(serde_json::from_str)
            .transpose()
            .map_err(|e| Self::error("read", e))
    }

    async fn save(&self, tokens: &TokenSet) -> Result<()> {
        let row = serde_json::to_string(tokens).map_err(|e| Self::error("written", e))?;
        self.0.lock_for(ErrorKind::Store)?.token_row = Some(row);
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.0.lock_for(ErrorKind::Store)?.token_row = None;
        Ok(())
    }
}
