//! A whole sync with zero configuration, against an embedded stand-in Dynamics instance.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! It starts the stand-in with sample users, accounts and contacts, creates and authorizes a
//! connection (an application user, client credentials), runs the out-of-the-box user job, then
//! a chain of two jobs: Account to Company, and Contact to Person, which maps the Customer field
//! `parentcustomerid` by its id. Everything goes into the SQLite file `target/quickstart.db`
//! (tables `User`, `Company`, `Person`, and the checkpoints in `d365_checkpoints`). Then it
//! changes the stand-in (an update, a delete, a new contact) and runs the chain again from the
//! first run's checkpoints (`ChainReport::checkpoints`), which writes only those changes. Rows read back with SQL are printed before and after; the exit
//! code is 0 when every job succeeded.

use d365_connector::testkit::StandIn;
use d365_connector::{
    ChainOptions, ChainOutcome, ChainReport, CheckpointStore, ClientCredentialsAuthorizer,
    ClientSecret, Connection, DataverseClient, EntraApp, JobChain, RunOptions, SqlSink, SyncJob,
    SyncStatus, who_am_i,
};
use serde_json::json;
use sqlx::{Row, SqlitePool};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// The SQLite file the quickstart writes (made anew on every run).
const DATABASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/quickstart.db");

type Failure = Box<dyn std::error::Error>;

/// A few companies and people, read back with SQL.
const COMPANIES: &str = "SELECT \"Name\", \"Revenue\", \"City\" FROM \"Company\" WHERE \"Name\" IN ('Contoso Ltd', 'Fabrikam, Inc.') ORDER BY \"Name\"";
const PEOPLE: &str = "SELECT \"FirstName\" || ' ' || \"LastName\", \"Email\", \"CompanyId\" FROM \"Person\" ORDER BY \"LastName\" LIMIT 4";

/// Account to Company, upserting by the Dynamics account id.
const ACCOUNTS_TO_COMPANY: &str = r#"{
  "name": "Accounts to Company",
  "source": { "entity": "account", "incremental": "auto" },
  "target": { "object": "Company",
              "fields": { "DynamicsId": "id", "Name": "string", "Revenue": "number",
                          "Employees": "integer", "Industry": "string", "City": "string" },
              "required": ["DynamicsId", "Name"] },
  "mode": "upsert",
  "identifiers": ["DynamicsId"],
  "mappings": [
    { "source": "accountid", "target": "DynamicsId" },
    { "source": "name", "target": "Name" },
    { "source": "revenue", "target": "Revenue" },
    { "source": "numberofemployees", "target": "Employees" },
    { "source": "industrycode", "target": "Industry", "label": true },
    { "source": "address1_city", "target": "City" }
  ],
  "deletes": "propagate"
}"#;

/// Contact to Person; `parentcustomerid` (a Customer field) maps by the Account/Contact id.
const CONTACTS_TO_PERSON: &str = r#"{
  "name": "Contacts to Person",
  "depends_on": "Accounts to Company",
  "source": { "entity": "contact", "incremental": "auto" },
  "target": { "object": "Person",
              "fields": { "ExternalId": "id", "FirstName": "string", "LastName": "string",
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
}"#;

#[allow(dead_code)] // `main` is unused where tests include this file as a module.
#[tokio::main]
async fn main() -> Result<ExitCode, Failure> {
    let succeeded = run(Path::new(DATABASE), &mut std::io::stdout()).await?;
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The whole quickstart, writing its tables to `database` and telling `out` what happens;
/// says whether every job succeeded.
pub async fn run(database: &Path, out: &mut dyn Write) -> Result<bool, Failure> {
    let crm = StandIn::with_sample_data().await;
    writeln!(out, "Stand-in Dynamics 365 instance at {}\n", crm.url())?;

    // 1. Create a connection: one Dynamics instance.
    let connection = Connection::builder("Contoso (stand-in)", crm.url())
        .with_authority(crm.authority())
        .build()?;

    // 2. Authorize it: an application user signs in with client credentials.
    let app = EntraApp::builder(StandIn::TENANT_ID, StandIn::CLIENT_ID)
        .with_client_secret(ClientSecret::new(StandIn::CLIENT_SECRET))
        .build()?;
    let authorizer = ClientCredentialsAuthorizer::builder(&connection, app).build()?;
    authorizer.authorize().await?;
    let client = DataverseClient::new(connection.clone(), Arc::new(authorizer))?;
    let me = who_am_i(&client).await?;
    writeln!(
        out,
        "Authorized as user {} of organization {}\n",
        me.user_id, me.organization_id
    )?;

    // 3. The out-of-the-box job: Dynamics users into the User table of a SQLite file.
    let _ = std::fs::remove_file(database);
    let url = format!("sqlite://{}", database.display());
    let sink = SqlSink::connect(&url).await?;
    let users = SyncJob::user_sync(&connection);
    let report = users.run(&client, &sink, RunOptions::default()).await?;
    writeln!(out, "{report}\n")?;
    let mut all_succeeded = report.status == SyncStatus::Success;

    // 4. Data sync jobs: Company first, then Person, which depends on it. Each resumes from
    //    the checkpoint the sink keeps in the database (none yet: everything is read).
    let chain = JobChain::new(vec![
        SyncJob::from_json(ACCOUNTS_TO_COMPANY)?,
        SyncJob::from_json(CONTACTS_TO_PERSON)?,
    ])?;
    let mut options = ChainOptions::default();
    for job in chain.jobs() {
        if let Some(checkpoint) = sink.load(&job.name).await? {
            options.checkpoints.insert(job.name.clone(), checkpoint);
        }
    }
    let first = chain.run(&client, &sink, options).await;
    all_succeeded &= print_chain(&first, out)?;
    let tables = SqlitePool::connect(&url).await?;
    print_rows(&tables, "Company", COMPANIES, out).await?;
    print_rows(&tables, "Person", PEOPLE, out).await?;

    // 5. Changes in Dynamics: an account updated, a contact deleted, a contact created.
    let contoso = crm
        .rows("account")
        .into_iter()
        .find(|row| row["name"] == "Contoso Ltd")
        .ok_or("the sample data has no Contoso Ltd")?;
    let contoso_id = contoso["accountid"].as_str().unwrap_or_default().to_owned();
    crm.upsert(
        "account",
        json!({"accountid": contoso_id, "revenue": "5250000.1234", "address1_city": "Bellevue"}),
    );
    if let Some(gone) = crm.rows("contact").first() {
        crm.delete("contact", gone["contactid"].as_str().unwrap_or_default());
    }
    crm.upsert(
        "contact",
        json!({"firstname": "Nestor", "lastname": "Adams", "emailaddress1": "nestor@contoso.com",
               "_parentcustomerid_value": contoso_id,
               "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account"}),
    );
    writeln!(
        out,
        "Changed in Dynamics: Contoso's revenue and city, one contact deleted, Nestor Adams created.\n"
    )?;

    // 6. The incremental pass: each job resumes from where the first pass left it (the same
    //    checkpoints the database keeps, which a restarted process would load as above).
    let options = ChainOptions {
        checkpoints: first.checkpoints().clone(),
        ..ChainOptions::default()
    };
    let second = chain.run(&client, &sink, options).await;
    all_succeeded &= print_chain(&second, out)?;
    print_rows(&tables, "Company", COMPANIES, out).await?;
    print_rows(&tables, "Person", PEOPLE, out).await?;
    writeln!(out, "The tables are in {}.", database.display())?;
    Ok(all_succeeded)
}

/// Prints each job's report, or why it did not run, and says whether every job succeeded.
fn print_chain(report: &ChainReport, out: &mut dyn Write) -> Result<bool, Failure> {
    let mut all_succeeded = true;
    for outcome in &report.outcomes {
        match outcome {
            ChainOutcome::Ran(report) => {
                all_succeeded &= report.status == SyncStatus::Success;
                writeln!(out, "{report}\n")?;
            }
            ChainOutcome::Refused { job, error } => {
                all_succeeded = false;
                writeln!(
                    out,
                    "{job}: refused to start ({:?}): {error}\n",
                    error.kind()
                )?;
            }
            ChainOutcome::NotRun { job, reason } => {
                all_succeeded = false;
                writeln!(out, "{job}: {reason}\n")?;
            }
        }
    }
    Ok(all_succeeded)
}

/// Prints the rows of `sql` (every column text) under `title`.
async fn print_rows(
    database: &SqlitePool,
    title: &str,
    sql: &str,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{title}\""))
        .fetch_one(database)
        .await?;
    writeln!(out, "{title}: {count} rows; {sql}")?;
    for row in sqlx::query(sql).fetch_all(database).await? {
        let cells: Vec<String> = (0..row.len())
            .map(|i| {
                row.get::<Option<String>, _>(i)
                    .unwrap_or_else(|| "NULL".to_owned())
            })
            .collect();
        writeln!(out, "  {}", cells.join(" | "))?;
    }
    writeln!(out)?;
    Ok(())
}
