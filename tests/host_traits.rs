//! The cookbook example end to end: the host's own RecordSink, CheckpointStore, TargetLookup and
//! TokenStore at work against the stand-in, and its outage reported as a retryable error.

#[path = "../examples/host_traits.rs"]
mod host_traits;

use d365_connector::testkit::StandIn;

#[tokio::test]
async fn the_cookbook_runs_a_chain_through_the_hosts_own_traits() {
    let crm = StandIn::with_sample_data().await;
    let mut out = Vec::new();

    let db = host_traits::run(&crm, &mut out).await.unwrap();

    let out = String::from_utf8(out).unwrap();
    assert!(
        db.holds_tokens(),
        "the sign-in was saved to the host's TokenStore"
    );
    assert_eq!(
        crm.token_requests(),
        1,
        "the restarted authorizer used the stored tokens, no new sign-in or refresh"
    );
    assert_eq!(db.rows("Company"), crm.rows("account").len(), "{out}");
    assert_eq!(db.rows("Person"), crm.rows("contact").len(), "{out}");
    let accounts: Vec<_> = crm
        .rows("account")
        .into_iter()
        .map(|a| a["accountid"].clone())
        .collect();
    let with_account = crm
        .rows("contact")
        .iter()
        .filter(|c| accounts.contains(&c["_parentcustomerid_value"]))
        .count();
    assert!(with_account > 0);
    assert_eq!(
        db.people_with_company(),
        with_account,
        "the lookup found each Company"
    );
    let (_, outage) = out.split_once("with a CompanyId").unwrap();
    assert!(
        outage.contains("-> retry later (Sink: the host database is unreachable"),
        "{out}"
    );
    assert!(outage.contains("Person: not run"), "{out}");
}
