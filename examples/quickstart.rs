//! A whole sync with zero configuration, against an embedded stand-in Dynamics instance.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! It starts the stand-in with sample users, accounts and contacts, creates and authorizes a
//! connection (an application user, client credentials), runs the out-of-the-box user job, then
//! a chain of two jobs: Account to Company, and Contact to Person, which maps the Customer field
//! `parentcustomerid` by its id. Each report is printed; the exit code is 0 when every job
//! succeeded.

use d365_connector::testkit::StandIn;
use d365_connector::{
    ChainOptions, ChainOutcome, ClientCredentialsAuthorizer, ClientSecret, Connection,
    DataverseClient, EntraApp, JobChain, MemorySink, RunOptions, SyncJob, SyncStatus, who_am_i,
};
use std::process::ExitCode;
use std::sync::Arc;

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

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let crm = StandIn::with_sample_data().await;
    println!("Stand-in Dynamics 365 instance at {}\n", crm.url());

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
    println!(
        "Authorized as user {} of organization {}\n",
        me.user_id, me.organization_id
    );

    // 3. The out-of-the-box job: Dynamics users into the User object.
    let sink = MemorySink::new();
    let users = SyncJob::user_sync(&connection);
    let report = users.run(&client, &sink, RunOptions::default()).await?;
    println!("{report}\n");
    let mut all_succeeded = report.status == SyncStatus::Success;

    // 4. Data sync jobs: Company first, then Person, which depends on it.
    let chain = JobChain::new(vec![
        SyncJob::from_json(ACCOUNTS_TO_COMPANY)?,
        SyncJob::from_json(CONTACTS_TO_PERSON)?,
    ])?;
    let chain_report = chain.run(&client, &sink, &ChainOptions::default()).await;
    for outcome in &chain_report.outcomes {
        match outcome {
            ChainOutcome::Ran(report) => {
                all_succeeded &= report.status == SyncStatus::Success;
                println!("{report}\n");
            }
            other => {
                all_succeeded = false;
                println!("{}: {other:?}\n", other.job());
            }
        }
    }

    println!("A few of the Person records now in the sink:");
    for person in sink.records("Person").iter().take(3) {
        println!("  {}", serde_json::to_string(person)?);
    }
    println!(
        "\nIn the sink: {} users, {} companies, {} people.",
        sink.records("User").len(),
        sink.records("Company").len(),
        sink.records("Person").len()
    );
    Ok(if all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
