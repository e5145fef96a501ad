//! EntitySource: streamed reads, checkpoints, incremental reads, decoding of real payloads.

use d365_connector::{
    AccessToken, Checkpoint, ClientOptions, Connection, DataverseClient, EntityMetadata,
    EntitySource, ErrorKind, Field, Filter, FilterValue, Number, Page, PageCounts, ReadMode,
    RecordChange, RecordDecoder, RetryPolicy, StaticTokenAuthorizer, Url, Value,
};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use wiremock::matchers::{any, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const API: &str = "/api/data/v9.2";

// ---------------------------------------------------------------------------------------------
// Helpers

/// Metadata in `EntityMetadata`'s own serde form. `attributes` are (logical name, type,
/// targets, date only).
fn metadata(
    logical_name: &str,
    entity_set_name: &str,
    primary_id: &str,
    change_tracking: bool,
    attributes: &[(&str, &str, &[&str], bool)],
) -> EntityMetadata {
    let attributes: Vec<serde_json::Value> = attributes
        .iter()
        .map(|(name, kind, targets, date_only)| {
            serde_json::json!({
                "logical_name": name,
                "attribute_type": kind,
                "is_valid_for_read": true,
                "attribute_of": null,
                "targets": targets,
                "date_only": date_only,
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "logical_name": logical_name,
        "entity_set_name": entity_set_name,
        "primary_id_attribute": primary_id,
        "primary_name_attribute": "name",
        "change_tracking_enabled": change_tracking,
        "attributes": attributes,
    }))
    .expect("EntityMetadata's serde form")
}

fn account_metadata(change_tracking: bool) -> EntityMetadata {
    metadata(
        "account",
        "accounts",
        "accountid",
        change_tracking,
        &[
            ("accountid", "Uniqueidentifier", &[], false),
            ("name", "String", &[], false),
            ("revenue", "Money", &[], false),
            ("revenue_base", "Money", &[], false),
            ("exchangerate", "Decimal", &[], false),
            ("versionnumber", "BigInt", &[], false),
            ("statecode", "State", &[], false),
            ("primarycontactid", "Lookup", &["contact"], false),
            ("ownerid", "Owner", &["systemuser", "team"], false),
            ("createdon", "DateTime", &[], false),
            ("modifiedon", "DateTime", &[], false),
        ],
    )
}

fn contact_metadata() -> EntityMetadata {
    let mut json = serde_json::to_value(metadata(
        "contact",
        "contacts",
        "contactid",
        false,
        &[
            ("contactid", "Uniqueidentifier", &[], false),
            ("lastname", "String", &[], false),
            ("firstname", "String", &[], false),
            ("description", "Memo", &[], false),
            ("annualincome", "Money", &[], false),
            ("exchangerate", "Decimal", &[], false),
            ("birthdate", "DateTime", &[], true),
            ("createdon", "DateTime", &[], false),
            ("modifiedon", "DateTime", &[], false),
            (
                "parentcustomerid",
                "Customer",
                &["account", "contact"],
                false,
            ),
            ("ownerid", "Owner", &["systemuser", "team"], false),
            ("parentcustomeridname", "String", &[], false),
        ],
    ))
    .unwrap();
    // The generated companion of parentcustomerid.
    json["attributes"][11]["attribute_of"] = "parentcustomerid".into();
    serde_json::from_value(json).unwrap()
}

fn organization_metadata() -> EntityMetadata {
    metadata(
        "organization",
        "organizations",
        "organizationid",
        false,
        &[
            ("organizationid", "Uniqueidentifier", &[], false),
            ("modifiedby", "Lookup", &["systemuser"], false),
            ("basecurrencyid", "Lookup", &["transactioncurrency"], false),
            ("createdby", "Lookup", &["systemuser"], false),
        ],
    )
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/real/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn server() -> MockServer {
    let server = MockServer::start().await;
    catch_all(&server).await;
    server
}

/// Any request no other mock expects fails the test when the server is dropped.
async fn catch_all(server: &MockServer) {
    Mock::given(any())
        .respond_with(ResponseTemplate::new(599).set_body_string("unexpected request"))
        .with_priority(u8::MAX)
        .named("unexpected request")
        .expect(0)
        .mount(server)
        .await;
}

fn client(server: &MockServer) -> DataverseClient {
    let connection = Connection::builder("t", server.uri())
        .with_authority(server.uri())
        .build()
        .unwrap();
    DataverseClient::with_options(
        connection,
        Arc::new(StaticTokenAuthorizer::new(AccessToken::new("t"))),
        ClientOptions::default().with_retry_policy(RetryPolicy::disabled()),
    )
    .unwrap()
}

/// Matches a request whose query is exactly `query`, byte for byte (no decoding).
struct RawQuery(String);

impl Match for RawQuery {
    fn matches(&self, request: &Request) -> bool {
        request.url.query() == Some(self.0.as_str())
    }
}

fn json_response(body: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.into().into_bytes(), "application/json")
}

/// A GET of `/api/data/v9.2/<set>?<raw query>`, answered with `body`, expected `times`.
async fn page(server: &MockServer, set: &str, query: &str, body: String, times: u64) {
    Mock::given(method("GET"))
        .and(path(format!("{API}/{set}")))
        .and(RawQuery(query.to_owned()))
        .respond_with(json_response(body))
        .expect(times)
        .mount(server)
        .await;
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn path_and_query(request: &Request) -> String {
    request.url[url::Position::BeforePath..].to_owned()
}

fn prefer(request: &Request) -> Option<&str> {
    request.headers.get("prefer").and_then(|v| v.to_str().ok())
}

async fn collect(source: EntitySource) -> Vec<Page> {
    source.pages().try_collect().await.unwrap()
}

fn ids(page: &Page) -> Vec<&str> {
    page.changes.iter().map(RecordChange::id).collect()
}

fn string(field: Option<&Field>) -> &str {
    field
        .and_then(|f| f.value.as_str())
        .expect("a string field")
}

fn number(field: Option<&Field>) -> &str {
    match &field.expect("a number field").value {
        Value::Number(n) => n.as_str(),
        other => panic!("not a number: {other:?}"),
    }
}

fn account_row(id: &str, name: &str) -> String {
    format!(r#"{{"@odata.etag":"W/\"1\"","accountid":"{id}","name":"{name}"}}"#)
}

fn guid(n: u32) -> String {
    format!("00000000-0000-0000-0000-{n:012}")
}

// ---------------------------------------------------------------------------------------------
// Real payloads

#[test]
fn contact_fixture_reads_the_customer_lookup_by_its_logical_name() {
    let decoder = RecordDecoder::new(contact_metadata());
    let record = decoder
        .decode_record(&fixture("contact_record.json"))
        .unwrap();

    assert_eq!(record.id(), "00000000-0000-0000-0000-000000000010");
    let parent = record.get("parentcustomerid").expect("parentcustomerid");
    assert_eq!(
        parent.value,
        Value::String("00000000-0000-0000-0000-000000000020".into())
    );
    assert!(record.get("_parentcustomerid_value").is_none());
    assert_eq!(
        string(record.get("ownerid")),
        "c76fee97-961f-ef11-840b-000d3abf969a"
    );
    // Not a lookup in this metadata: the property keeps its Web API name.
    assert_eq!(
        record.get("_owninguser_value").map(|f| &f.value),
        Some(&Value::String(
            "c76fee97-961f-ef11-840b-000d3abf969a".into()
        ))
    );
    assert_eq!(
        record.get("_accountid_value").map(|f| &f.value),
        Some(&Value::Null)
    );
    // Exact numbers, dates as sent, escapes decoded, annotations of the row skipped.
    assert_eq!(number(record.get("exchangerate")), "1.000000000000");
    assert_eq!(number(record.get("annualincome")), "1234.5600000000");
    assert_eq!(string(record.get("birthdate")), "2024-04-10");
    assert_eq!(string(record.get("createdon")), "2024-06-12T14:13:17Z");
    assert_eq!(
        string(record.get("description")),
        "This is the description of the the terraform \n\nsample contact"
    );
    assert_eq!(
        record.get("donotphone").map(|f| &f.value),
        Some(&Value::Bool(false))
    );
    assert!(record.fields().all(|(name, _)| !name.starts_with('@')));
}

#[test]
fn account_fixture_keeps_money_and_decimals_digit_for_digit() {
    let decoder = RecordDecoder::new(account_metadata(false));
    let record = decoder
        .decode_record(&fixture("account_record.json"))
        .unwrap();

    assert_eq!(record.id(), "00000000-0000-0000-0000-000000000020");
    assert_eq!(number(record.get("exchangerate")), "1.000000000000");
    assert_eq!(number(record.get("revenue_base")), "5000000.0000000000");
    assert_eq!(number(record.get("revenue")), "5000000.0000000000");
    assert_eq!(number(record.get("address1_latitude")), "47.63");
    assert_eq!(number(record.get("versionnumber")), "2264380");
    assert_eq!(
        string(record.get("primarycontactid")),
        "00000000-0000-0000-0000-000000000010"
    );
    assert_eq!(string(record.get("modifiedon")), "2024-06-12T14:13:25Z");
    // Serialized back, the digits are the ones received.
    let Value::Number(revenue) = &record.get("revenue_base").unwrap().value else {
        unreachable!()
    };
    assert_eq!(
        serde_json::to_string(revenue).unwrap(),
        "5000000.0000000000"
    );
}

#[test]
fn organizations_fixture_carries_formatted_values_and_lookup_tables() {
    let decoder = RecordDecoder::new(organization_metadata());
    let changes = decoder
        .decode_changes(&fixture("organizations_with_annotations.json"))
        .unwrap();
    assert_eq!(changes.len(), 1);
    let record = changes[0].record().unwrap();
    assert_eq!(record.id(), "bfdab4ec-9997-f011-a700-000d3a4a1557");

    let days = record.get("dayssincerecordlastmodifiedmaxvalue").unwrap();
    assert_eq!(number(Some(days)), "9999");
    assert_eq!(days.formatted.as_deref(), Some("9,999"));
    let correlation = record.get("emailcorrelationenabled").unwrap();
    assert_eq!(correlation.value, Value::Bool(true));
    assert_eq!(correlation.formatted.as_deref(), Some("Yes"));
    assert_eq!(
        record
            .get("iscontextualemailenabled")
            .unwrap()
            .formatted
            .as_deref(),
        Some("No")
    );
    // An empty label is still a label.
    assert_eq!(
        record
            .get("fiscalyearformatsuffix")
            .unwrap()
            .formatted
            .as_deref(),
        Some("")
    );
    assert_eq!(record.get("kbprefix").unwrap().formatted, None);

    let modified_by = record.get("modifiedby").expect("modifiedby");
    assert_eq!(
        modified_by.value,
        Value::String("b471396b-ba95-f011-b41b-7c1e52127beb".into())
    );
    assert_eq!(
        modified_by.formatted.as_deref(),
        Some("Admin AdminOnMicrosoft")
    );
    assert_eq!(modified_by.lookup_entity.as_deref(), Some("systemuser"));
    let currency = record.get("basecurrencyid").unwrap();
    assert_eq!(currency.formatted.as_deref(), Some("US Dollar"));
    assert_eq!(
        currency.lookup_entity.as_deref(),
        Some("transactioncurrency")
    );
    assert_eq!(record.get("createdby").unwrap().value, Value::Null);
    assert!(record.get("_modifiedby_value").is_none());
    // A lookup not in the metadata keeps its property name and its annotations.
    let profile = record.get("_defaultemailserverprofileid_value").unwrap();
    assert_eq!(profile.lookup_entity.as_deref(), Some("emailserverprofile"));
    assert_eq!(
        profile.formatted.as_deref(),
        Some("Microsoft Exchange Online")
    );
}

#[tokio::test]
async fn contacts_collection_fixture_is_read_as_one_page() {
    let server = server().await;
    page(
        &server,
        "contacts",
        "$select=contactid,createdon",
        String::from_utf8(fixture("contacts_collection_small.json")).unwrap(),
        1,
    )
    .await;

    let pages = collect(
        EntitySource::new(client(&server), contact_metadata())
            .with_columns(["createdon"])
            .with_mode(ReadMode::Full),
    )
    .await;

    assert_eq!(pages.len(), 1);
    let page = &pages[0];
    assert_eq!(
        ids(page),
        [
            "00000000-0000-0000-0000-000000000010",
            "00000000-0000-0000-0000-000000000011"
        ]
    );
    assert!(page.last);
    assert!(page.checkpoint.is_finished());
    assert_eq!(
        string(page.changes[1].record().unwrap().get("createdon")),
        "2024-06-12T14:13:17Z"
    );
    assert_eq!(
        prefer(&requests(&server).await[0]),
        Some("odata.maxpagesize=5000")
    );
}

// ---------------------------------------------------------------------------------------------
// Paging and checkpoints

/// A nextLink as Dataverse writes it: an opaque, doubly percent-encoded paging cookie.
fn next_link(server: &MockServer, page: u32) -> String {
    format!(
        "{}{API}/accounts?$select=accountid,name,_primarycontactid_value&$skiptoken=%3Ccookie%20pagenumber=%22{page}%22%20pagingcookie=%22%253ccookie%2520page%253d%2522{prev}%2522%253e%253caccountid%2520last%253d%2522%257b00000000-0000-0000-0000-00000000000{prev}%257d%2522%2520first%253d%2522%257b00000000-0000-0000-0000-000000000001%257d%2522%2520%252f%253e%253c%252fcookie%253e%22%20istracking=%22False%22%20/%3E",
        server.uri(),
        prev = page - 1
    )
}

fn query_of(link: &str) -> &str {
    link.split_once('?').unwrap().1
}

/// Mounts three pages of two accounts each; page 1 and 2 end with a nextLink.
async fn mount_three_pages(server: &MockServer, expect_first_two: u64) -> (String, String) {
    let link2 = next_link(server, 2);
    let link3 = next_link(server, 3);
    page(
        server,
        "accounts",
        "$select=accountid,name,_primarycontactid_value",
        format!(
            r#"{{"@odata.context":"x","value":[{},{}],"@odata.nextLink":"{link2}"}}"#,
            account_row(&guid(1), "A"),
            account_row(&guid(2), "B")
        ),
        expect_first_two,
    )
    .await;
    page(
        server,
        "accounts",
        query_of(&link2),
        format!(
            r#"{{"@odata.context":"x","value":[{},{}],"@odata.nextLink":"{link3}"}}"#,
            account_row(&guid(3), "C"),
            account_row(&guid(4), "D")
        ),
        expect_first_two,
    )
    .await;
    page(
        server,
        "accounts",
        query_of(&link3),
        format!(
            r#"{{"@odata.context":"x","value":[{},{}]}}"#,
            account_row(&guid(5), "E"),
            account_row(&guid(6), "F")
        ),
        1,
    )
    .await;
    (link2, link3)
}

fn three_page_source(server: &MockServer) -> EntitySource {
    EntitySource::new(client(server), account_metadata(false))
        .with_columns(["name", "primarycontactid"])
        .with_page_size(2)
        .with_mode(ReadMode::Full)
}

#[tokio::test]
async fn three_pages_follow_next_links_exactly_and_lazily() {
    let server = server().await;
    let (link2, link3) = mount_three_pages(&server, 1).await;
    // The links survive parsing unchanged: what is followed is what was sent.
    assert_eq!(Url::parse(&link2).unwrap().as_str(), link2);
    assert_eq!(Url::parse(&link3).unwrap().as_str(), link3);

    let mut pages = three_page_source(&server).pages();
    tokio::task::yield_now().await;
    assert!(
        requests(&server).await.is_empty(),
        "nothing is sent before the first poll"
    );
    let first = pages.try_next().await.unwrap().unwrap();
    assert_eq!(requests(&server).await.len(), 1, "one request per poll");
    let rest: Vec<Page> = pages.try_collect().await.unwrap();

    let all: Vec<&Page> = std::iter::once(&first).chain(&rest).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        all.iter().flat_map(|p| ids(p)).collect::<Vec<_>>(),
        (1..=6).map(guid).collect::<Vec<_>>()
    );
    assert_eq!(first.checkpoint.next_link(), Some(link2.as_str()));
    assert_eq!(all[1].checkpoint.next_link(), Some(link3.as_str()));
    assert!(!first.last && !all[1].last && all[2].last);
    assert!(all[2].checkpoint.is_finished());

    let sent = requests(&server).await;
    // Byte for byte: the path and query received are those of the links.
    assert_eq!(
        sent.iter().map(path_and_query).collect::<Vec<_>>(),
        [
            format!("{API}/accounts?$select=accountid,name,_primarycontactid_value"),
            link2[server.uri().len()..].to_owned(),
            link3[server.uri().len()..].to_owned(),
        ]
    );
    for request in &sent {
        assert_eq!(prefer(request), Some("odata.maxpagesize=2"));
    }
}

#[tokio::test]
async fn a_fresh_source_resumes_from_the_checkpoint_of_page_two_and_reads_page_three_only() {
    let server = server().await;
    mount_three_pages(&server, 1).await;
    let pages = collect(three_page_source(&server)).await;
    let stored = serde_json::to_string(&pages[1].checkpoint).unwrap();

    // A new process: new server state, new client, new source.
    server.reset().await;
    catch_all(&server).await;
    mount_three_pages(&server, 0).await;
    let checkpoint: Checkpoint = serde_json::from_str(&stored).unwrap();
    assert_eq!(checkpoint, pages[1].checkpoint);

    let resumed = collect(three_page_source(&server).resume_from(checkpoint)).await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].number, 3);
    assert_eq!(ids(&resumed[0]), [guid(5), guid(6)]);
    assert!(resumed[0].last);
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn checkpoints_for_another_table_or_other_columns_ask_for_a_full_read_before_sending() {
    let server = server().await;
    mount_three_pages(&server, 1).await;
    let pages = collect(three_page_source(&server)).await;
    let checkpoint = pages[0].checkpoint.clone();
    server.reset().await;
    catch_all(&server).await;

    let other_columns = three_page_source(&server)
        .with_columns(["revenue"])
        .resume_from(checkpoint.clone());
    let error = other_columns.pages().next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResyncRequired);
    assert!(error.to_string().contains("columns"), "{error}");

    let mut json = serde_json::to_value(&checkpoint).unwrap();
    json["entity"] = "contact".into();
    let other_table: Checkpoint = serde_json::from_value(json).unwrap();
    let error = three_page_source(&server)
        .resume_from(other_table)
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResyncRequired);
    assert!(error.to_string().contains("table `contact`"), "{error}");

    let filtered = three_page_source(&server)
        .with_filter(Filter::eq("name", "x"))
        .resume_from(checkpoint);
    let error = filtered.pages().next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResyncRequired);
    assert!(error.to_string().contains("filter"), "{error}");
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused_with_no_request_to_it() {
    let server = server().await;
    let foreign = MockServer::start().await;
    catch_all(&foreign).await;
    let foreign_link = format!("{}{API}/accounts?$skiptoken=stolen", foreign.uri());
    page(
        &server,
        "accounts",
        "$select=accountid,name",
        format!(
            r#"{{"value":[{}],"@odata.nextLink":"{foreign_link}"}}"#,
            account_row(&guid(1), "A")
        ),
        1,
    )
    .await;

    let mut pages = EntitySource::new(client(&server), account_metadata(false))
        .with_columns(["name"])
        .with_mode(ReadMode::Full)
        .pages();
    let error = pages.try_next().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol);
    assert!(error.to_string().contains(&foreign.uri()), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("not the instance `{}`", server.uri())),
        "the instance is named with its port: {error}"
    );
    assert!(!error.to_string().contains("stolen"), "{error}");
    assert!(
        pages.next().await.is_none(),
        "the stream ends after an error"
    );
    assert!(requests(&foreign).await.is_empty());

    // A stored checkpoint pointing elsewhere is refused the same way, before any request.
    let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
        "version": 1, "entity": "account", "mode": "full", "columns": ["name"], "filter": null,
        "position": {"state": "reading", "next_link": foreign_link, "pages": 1}
    }))
    .unwrap();
    let error = EntitySource::new(client(&server), account_metadata(false))
        .with_columns(["name"])
        .with_mode(ReadMode::Full)
        .resume_from(checkpoint)
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol);
    assert!(requests(&foreign).await.is_empty());
    assert_eq!(requests(&server).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Change tracking

fn delta_link(server: &MockServer, token: &str) -> String {
    format!(
        "{}{API}/accounts?$select=accountid,name&$deltatoken={token}",
        server.uri()
    )
}

fn tracked_source(server: &MockServer) -> EntitySource {
    EntitySource::new(client(server), account_metadata(true)).with_columns(["name"])
}

#[tokio::test]
async fn change_tracking_reads_everything_then_follows_the_delta_link_with_upserts_and_deletes() {
    let server = server().await;
    let first_delta = delta_link(&server, "919042%2108%2f22%2f2017%2008%3a10%3a44");
    let second_delta = delta_link(&server, "919043%2108%2f23%2f2017%2008%3a10%3a44");
    page(
        &server,
        "accounts",
        "$select=accountid,name",
        format!(
            r#"{{"@odata.context":"{uri}{API}/$metadata#accounts(accountid,name)","value":[{},{}],"@odata.deltaLink":"{first_delta}"}}"#,
            account_row(&guid(1), "A"),
            account_row(&guid(2), "B"),
            uri = server.uri()
        ),
        1,
    )
    .await;

    let initial = collect(tracked_source(&server)).await;
    assert_eq!(initial.len(), 1);
    assert_eq!(ids(&initial[0]), [guid(1), guid(2)]);
    assert_eq!(initial[0].checkpoint.mode(), ReadMode::ChangeTracking);
    assert_eq!(
        initial[0].checkpoint.delta_link(),
        Some(first_delta.as_str())
    );
    let stored = serde_json::to_string(&initial[0].checkpoint).unwrap();

    page(
        &server,
        "accounts",
        query_of(&first_delta),
        format!(
            r#"{{"@odata.context":"{uri}{API}/$metadata#accounts(accountid,name)/$delta","value":[
                {{"@odata.etag":"W/\"9\"","accountid":"{b}","name":"B renamed"}},
                {{"@odata.etag":"W/\"10\"","accountid":"{c}","name":"C"}},
                {{"@odata.context":"{uri}{API}/$metadata#accounts/$deletedEntity","id":"{a}","reason":"deleted"}}
            ],"@odata.deltaLink":"{second_delta}"}}"#,
            uri = server.uri(),
            a = guid(1),
            b = guid(2),
            c = guid(3)
        ),
        1,
    )
    .await;

    let delta =
        collect(tracked_source(&server).resume_from(serde_json::from_str(&stored).unwrap())).await;
    assert_eq!(delta.len(), 1);
    let changes = &delta[0].changes;
    assert_eq!(changes.len(), 3);
    assert_eq!(
        string(changes[0].record().unwrap().get("name")),
        "B renamed"
    );
    assert_eq!(changes[1].id(), guid(3));
    assert_eq!(changes[2], RecordChange::Delete { id: guid(1) });
    assert_eq!(
        delta[0].checkpoint.delta_link(),
        Some(second_delta.as_str())
    );

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(path_and_query(&sent[1]), first_delta[server.uri().len()..]);
    for request in &sent {
        assert_eq!(
            prefer(request),
            Some("odata.maxpagesize=5000,odata.track-changes")
        );
    }
}

async fn resync_case(code: &str, message: &str) {
    let server = server().await;
    let link = delta_link(&server, "919042%2108%2f22%2f2017%2008%3a10%3a44");
    Mock::given(method("GET"))
        .and(RawQuery(query_of(&link).to_owned()))
        .respond_with(ResponseTemplate::new(400).set_body_raw(
            format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#).into_bytes(),
            "application/json",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
        "version": 1, "entity": "account", "mode": "change_tracking", "columns": ["name"],
        "filter": null, "position": {"state": "delta", "delta_link": link}
    }))
    .unwrap();

    let mut pages = tracked_source(&server).resume_from(checkpoint).pages();
    let error = pages.try_next().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResyncRequired, "{error:?}");
    assert_eq!(error.service_code(), Some(code));
    assert_eq!(error.status(), Some(400));
    assert!(
        error.to_string().contains("without the checkpoint"),
        "{error}"
    );
    assert!(!error.to_string().contains("919042"), "no token in {error}");
    assert!(pages.next().await.is_none(), "never an empty read after it");
}

#[tokio::test]
async fn an_expired_delta_token_requires_a_full_resync() {
    resync_case(
        "0x80044352",
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )
    .await;
}

#[tokio::test]
async fn a_table_that_lost_change_tracking_requires_a_full_resync() {
    resync_case(
        "0x80072491",
        "Entity account isn't enabled for change tracking",
    )
    .await;

    // Known from the metadata already: refused before any request.
    let server = server().await;
    let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
        "version": 1, "entity": "account", "mode": "change_tracking", "columns": ["name"],
        "filter": null, "position": {"state": "delta", "delta_link": delta_link(&server, "1")}
    }))
    .unwrap();
    let error = EntitySource::new(client(&server), account_metadata(false))
        .with_columns(["name"])
        .resume_from(checkpoint)
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResyncRequired);
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn change_tracking_cannot_be_filtered_but_auto_falls_back_to_the_watermark() {
    let server = server().await;
    let error = tracked_source(&server)
        .with_mode(ReadMode::ChangeTracking)
        .with_filter(Filter::eq("statecode", 0))
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("$filter"), "{error}");

    page(
        &server,
        "accounts",
        "$select=accountid,name,modifiedon&$filter=statecode%20eq%200&$orderby=modifiedon%20asc,accountid%20asc",
        r#"{"value":[]}"#.to_owned(),
        1,
    )
    .await;
    let pages = collect(tracked_source(&server).with_filter(Filter::eq("statecode", 0))).await;
    assert_eq!(pages[0].checkpoint.mode(), ReadMode::ModifiedOn);
    assert!(pages[0].changes.is_empty() && pages[0].last);
}

// ---------------------------------------------------------------------------------------------
// modifiedon watermark

/// A row as Dataverse sends it in a `modified_on` read: its etag (version 1 unless given),
/// id, name and `modifiedon`.
fn stamped_row(id: &str, modified_on: &str) -> String {
    versioned_row(id, modified_on, 1)
}

fn versioned_row(id: &str, modified_on: &str, version: u32) -> String {
    format!(
        r#"{{"@odata.etag":"W/\"{version}\"","accountid":"{id}","name":"n","modifiedon":"{modified_on}"}}"#
    )
}

#[tokio::test]
async fn the_modifiedon_watermark_keeps_records_that_share_the_boundary_second() {
    let server = server().await;
    let source = || {
        EntitySource::new(client(&server), account_metadata(false))
            .with_columns(["name"])
            .with_filter(Filter::eq("statecode", 0))
    };
    let ordered = "$orderby=modifiedon%20asc,accountid%20asc";
    page(
        &server,
        "accounts",
        &format!("$select=accountid,name,modifiedon&$filter=statecode%20eq%200&{ordered}"),
        format!(
            r#"{{"value":[{},{},{}]}}"#,
            stamped_row(&guid(1), "2024-06-12T10:00:00Z"),
            stamped_row(&guid(2), "2024-06-12T10:00:05Z"),
            stamped_row(&guid(3), "2024-06-12T10:00:05Z"),
        ),
        1,
    )
    .await;
    let first = collect(source()).await;
    assert_eq!(ids(&first[0]), [guid(1), guid(2), guid(3)]);
    let checkpoint = &first[0].checkpoint;
    assert_eq!(checkpoint.mode(), ReadMode::ModifiedOn);
    assert_eq!(
        checkpoint.watermark().unwrap().to_rfc3339(),
        "2024-06-12T10:00:05+00:00"
    );
    let stored = serde_json::to_value(checkpoint).unwrap();
    assert_eq!(
        stored["position"]["watermark"]["seen"],
        serde_json::json!({guid(2): "W/\"1\"", guid(3): "W/\"1\""})
    );

    // The next read starts AT the boundary second: 2 and 3 come again and are skipped (same
    // version), 4 shares the second but is new, 5 is later. The boundary spans two pages.
    let link = format!(
        "{}{API}/accounts?$select=accountid,name,modifiedon&$skiptoken=p2",
        server.uri()
    );
    page(
        &server,
        "accounts",
        &format!(
            "$select=accountid,name,modifiedon&$filter=(modifiedon%20ge%202024-06-12T10:00:05Z)%20and%20(statecode%20eq%200)&{ordered}"
        ),
        format!(
            r#"{{"value":[{},{}],"@odata.nextLink":"{link}"}}"#,
            stamped_row(&guid(2), "2024-06-12T10:00:05Z"),
            stamped_row(&guid(3), "2024-06-12T10:00:05Z"),
        ),
        1,
    )
    .await;
    page(
        &server,
        "accounts",
        query_of(&link),
        format!(
            r#"{{"value":[{},{}]}}"#,
            stamped_row(&guid(4), "2024-06-12T10:00:05Z"),
            stamped_row(&guid(5), "2024-06-12T10:00:07Z"),
        ),
        1,
    )
    .await;
    let second = collect(source().resume_from(serde_json::from_value(stored).unwrap())).await;
    assert_eq!(second.len(), 2);
    assert!(second[0].changes.is_empty(), "already seen at the boundary");
    assert!(!second[0].checkpoint.is_finished());
    assert_eq!(ids(&second[1]), [guid(4), guid(5)]);
    let end = serde_json::to_value(&second[1].checkpoint).unwrap();
    assert_eq!(
        end["position"]["watermark"],
        serde_json::json!({"modified_on": "2024-06-12T10:00:07Z", "seen": {guid(5): "W/\"1\""}})
    );
}

#[tokio::test]
async fn a_record_modified_again_at_a_later_time_is_not_skipped() {
    let server = server().await;
    page(
        &server,
        "accounts",
        "$select=accountid,modifiedon&$filter=modifiedon%20ge%202024-06-12T10:00:05Z&$orderby=modifiedon%20asc,accountid%20asc",
        format!(
            r#"{{"value":[{},{}]}}"#,
            stamped_row(&guid(3), "2024-06-12T10:00:05Z"),
            stamped_row(&guid(2), "2024-06-12T11:00:00Z"),
        ),
        1,
    )
    .await;
    let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
        "version": 1, "entity": "account", "mode": "modified_on", "columns": [], "filter": null,
        "position": {"state": "watermark", "watermark": {"modified_on": "2024-06-12T10:00:05Z", "seen": {guid(2): "W/\"1\"", guid(3): "W/\"1\""}}}
    }))
    .unwrap();
    let pages = collect(
        EntitySource::new(client(&server), account_metadata(false)).resume_from(checkpoint),
    )
    .await;
    assert_eq!(ids(&pages[0]), [guid(2)]);
}

#[tokio::test]
async fn a_record_changed_again_within_the_watermark_second_is_returned() {
    let server = server().await;
    page(
        &server,
        "accounts",
        "$select=accountid,modifiedon&$filter=modifiedon%20ge%202024-06-12T10:00:05Z&$orderby=modifiedon%20asc,accountid%20asc",
        format!(
            r#"{{"value":[{},{}]}}"#,
            versioned_row(&guid(2), "2024-06-12T10:00:05Z", 1),
            versioned_row(&guid(3), "2024-06-12T10:00:05Z", 2),
        ),
        2,
    )
    .await;
    let resume = |watermark: serde_json::Value| {
        let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
            "version": 1, "entity": "account", "mode": "modified_on", "columns": [], "filter": null,
            "position": {"state": "watermark", "watermark": watermark}
        }))
        .unwrap();
        EntitySource::new(client(&server), account_metadata(false)).resume_from(checkpoint)
    };

    let pages = collect(resume(serde_json::json!({
        "modified_on": "2024-06-12T10:00:05Z", "seen": {guid(2): "W/\"1\"", guid(3): "W/\"1\""}
    })))
    .await;
    assert_eq!(
        ids(&pages[0]),
        [guid(3)],
        "3 has a new version within the same second"
    );

    // A checkpoint written by 0.1 knows ids without versions: they are returned again.
    let pages = collect(resume(serde_json::json!({
        "modified_on": "2024-06-12T10:00:05Z", "ids": [guid(2), guid(3)]
    })))
    .await;
    assert_eq!(ids(&pages[0]), [guid(2), guid(3)]);
}

#[tokio::test]
async fn auto_mode_keeps_the_mode_of_the_checkpoint_it_resumes() {
    // Change tracking was enabled on the table after the watermark read began.
    let server = server().await;
    page(
        &server,
        "accounts",
        "$select=accountid,modifiedon&$filter=modifiedon%20ge%202024-06-12T10:00:05Z&$orderby=modifiedon%20asc,accountid%20asc",
        r#"{"value":[]}"#.to_owned(),
        1,
    )
    .await;
    let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
        "version": 1, "entity": "account", "mode": "modified_on", "columns": [], "filter": null,
        "position": {"state": "watermark", "watermark": {"modified_on": "2024-06-12T10:00:05Z", "seen": {}}}
    }))
    .unwrap();
    let pages =
        collect(EntitySource::new(client(&server), account_metadata(true)).resume_from(checkpoint))
            .await;
    assert_eq!(pages[0].checkpoint.mode(), ReadMode::ModifiedOn);
    assert!(pages[0].changes.is_empty());
    assert_eq!(
        pages[0].checkpoint.watermark().unwrap().to_rfc3339(),
        "2024-06-12T10:00:05+00:00",
        "nothing new: the watermark stays"
    );
}

// ---------------------------------------------------------------------------------------------
// Values, filters, configuration

#[tokio::test]
async fn money_decimal_and_bigint_keep_every_digit() {
    let server = server().await;
    page(
        &server,
        "accounts",
        "$select=accountid,revenue,exchangerate,versionnumber",
        format!(
            r#"{{"value":[{{"accountid":"{}","revenue":922337203685477.5807,"exchangerate":1.000000000000,"versionnumber":9007199254740993}},
                {{"accountid":"{}","revenue":-0.0001,"exchangerate":1.0000000001,"versionnumber":-9223372036854775808}}]}}"#,
            guid(1),
            guid(2)
        ),
        1,
    )
    .await;
    let pages = collect(
        EntitySource::new(client(&server), account_metadata(false))
            .with_columns(["revenue", "exchangerate", "versionnumber"])
            .with_mode(ReadMode::Full),
    )
    .await;
    let first = pages[0].changes[0].record().unwrap();
    assert_eq!(number(first.get("revenue")), "922337203685477.5807");
    assert_eq!(number(first.get("versionnumber")), "9007199254740993");
    assert_eq!(number(first.get("exchangerate")), "1.000000000000");
    let second = pages[0].changes[1].record().unwrap();
    assert_eq!(number(second.get("revenue")), "-0.0001");
    assert_eq!(number(second.get("exchangerate")), "1.0000000001");
    assert_eq!(number(second.get("versionnumber")), "-9223372036854775808");
    assert_eq!(
        Number::parse("9007199254740993").unwrap().as_i64(),
        Some(9_007_199_254_740_993)
    );
}

#[tokio::test]
async fn a_name_such_as_obrien_is_escaped_and_lookups_are_filtered_by_their_property() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/contacts")))
        .respond_with(json_response(r#"{"value":[]}"#))
        .expect(1)
        .mount(&server)
        .await;
    let filter = Filter::eq("lastname", "O'Brien")
        .and(Filter::eq(
            "parentcustomerid",
            FilterValue::guid("00000000-0000-0000-0000-000000000020").unwrap(),
        ))
        .and(Filter::ne("firstname", "a&b#c+d%e=f"));
    collect(
        EntitySource::new(client(&server), contact_metadata())
            .with_columns(["lastname", "parentcustomerid"])
            .with_filter(filter)
            .with_mode(ReadMode::Full)
            .with_lookup_tables(true),
    )
    .await;

    let sent = requests(&server).await;
    let pairs: Vec<(String, String)> = sent[0].url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        [
            (
                "$select".to_owned(),
                "contactid,lastname,_parentcustomerid_value".to_owned()
            ),
            (
                "$filter".to_owned(),
                "((lastname eq 'O''Brien') and (_parentcustomerid_value eq 00000000-0000-0000-0000-000000000020)) and (firstname ne 'a&b#c+d%e=f')".to_owned()
            ),
        ]
    );
    assert!(
        sent[0].url.query().unwrap().contains("%27O%27%27Brien%27"),
        "{}",
        sent[0].url
    );
    assert_eq!(
        prefer(&sent[0]),
        Some(
            "odata.maxpagesize=5000,odata.include-annotations=\"Microsoft.Dynamics.CRM.lookuplogicalname\""
        )
    );
}

#[tokio::test]
async fn every_bad_column_is_named_before_anything_is_sent() {
    let server = server().await;
    let error = EntitySource::new(client(&server), contact_metadata())
        .with_columns([
            "lastname",
            "nosuchcolumn",
            "_parentcustomerid_value",
            "parentcustomeridname",
        ])
        .with_filter(Filter::eq("alsomissing", 1))
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let message = error.to_string();
    for expected in [
        "`nosuchcolumn` is not a column of `contact`",
        "by their logical name, `parentcustomerid`",
        "`parentcustomeridname` is generated from `parentcustomerid`",
        "`alsomissing`",
    ] {
        assert!(
            message.contains(expected),
            "{expected} missing in: {message}"
        );
    }
    assert!(!message.contains("`lastname`"), "{message}");

    let error = EntitySource::new(client(&server), contact_metadata())
        .with_page_size(5001)
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn a_record_without_its_id_is_an_error_naming_its_position() {
    let server = server().await;
    page(
        &server,
        "accounts",
        "$select=accountid,name",
        format!(
            r#"{{"value":[{},{{"name":"no id"}}]}}"#,
            account_row(&guid(1), "A")
        ),
        1,
    )
    .await;
    let error = EntitySource::new(client(&server), account_metadata(false))
        .with_columns(["name"])
        .with_mode(ReadMode::Full)
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    let message = error.to_string();
    assert!(
        message.contains("page 1") && message.contains("record 2 has no primary id `accountid`"),
        "{message}"
    );
}

/// An `@odata.id` reference to contact `n`, as `$expand=primarycontactid/$ref` returns it.
fn contact_reference(n: u32) -> String {
    format!(
        r#"{{"@odata.id":"https://contoso.crm.dynamics.com{API}/contacts({})"}}"#,
        guid(n)
    )
}

#[tokio::test]
async fn with_count_asks_for_the_count_and_the_page_carries_what_dataverse_counted() {
    let server = server().await;
    let link = format!(
        "{}{API}/accounts?$select=accountid,name&$count=true&$skiptoken=p2",
        server.uri()
    );
    page(
        &server,
        "accounts",
        "$select=accountid,name&$count=true",
        format!(
            r#"{{"@odata.context":"x","@odata.count":5000,"@Microsoft.Dynamics.CRM.totalrecordcount":5000,"@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded":true,"value":[{}],"@odata.nextLink":"{link}"}}"#,
            account_row(&guid(1), "A")
        ),
        1,
    )
    .await;
    page(
        &server,
        "accounts",
        query_of(&link),
        format!(r#"{{"value":[{}]}}"#, account_row(&guid(2), "B")),
        1,
    )
    .await;

    let pages = collect(
        EntitySource::new(client(&server), account_metadata(false))
            .with_columns(["name"])
            .with_mode(ReadMode::Full)
            .with_count(true),
    )
    .await;

    let counts = pages[0].counts;
    assert_eq!(counts.count, Some(5000));
    assert_eq!(counts.total_record_count, Some(5000));
    assert_eq!(counts.total_record_count_limit_exceeded, Some(true));
    assert_eq!(pages[1].counts, PageCounts::default(), "not on this page");
    let prefer: Vec<String> = requests(&server)
        .await
        .iter()
        .map(|r| {
            r.headers
                .get("prefer")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(prefer.len(), 2);
    assert!(
        prefer.iter().all(|p| p
            == "odata.maxpagesize=5000,odata.include-annotations=\"Microsoft.Dynamics.CRM.totalrecordcount,Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded\""),
        "{prefer:?}"
    );
}

#[tokio::test]
async fn a_count_that_is_not_a_number_is_a_decode_error_naming_the_page() {
    let server = server().await;
    page(
        &server,
        "accounts",
        "$select=accountid&$count=true",
        r#"{"@odata.count":"many","value":[]}"#.to_owned(),
        1,
    )
    .await;
    let error = EntitySource::new(client(&server), account_metadata(false))
        .with_mode(ReadMode::Full)
        .with_count(true)
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    assert!(error.to_string().contains("page 1 of `account`"), "{error}");
}

#[test]
fn an_expanded_lookup_never_replaces_the_id_and_a_reference_gives_it() {
    let expanded = format!(
        r#"{{"@odata.etag":"W/\"7\"","fullname":"Ann","contactid":"{}"}}"#,
        guid(9)
    );
    let body = format!(
        r#"{{"value":[
            {{"accountid":"{a1}","_primarycontactid_value":"{c1}","_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname":"contact","primarycontactid":{expanded}}},
            {{"accountid":"{a2}","primarycontactid":{expanded},"_primarycontactid_value":"{c1}"}},
            {{"accountid":"{a3}","primarycontactid":{reference}}},
            {{"accountid":"{a4}","primarycontactid":{expanded}}},
            {{"accountid":"{a5}","_primarycontactid_value":null,"primarycontactid":null}}
        ]}}"#,
        a1 = guid(1),
        a2 = guid(2),
        a3 = guid(3),
        a4 = guid(4),
        a5 = guid(5),
        c1 = guid(11),
        reference = contact_reference(13),
    );
    let changes = RecordDecoder::new(account_metadata(false))
        .decode_changes(body.as_bytes())
        .unwrap();
    let contact_of = |i: usize| changes[i].record().unwrap().get("primarycontactid");

    // Whichever comes first, the field holds the id of `_primarycontactid_value`.
    let first = contact_of(0).unwrap();
    assert_eq!(first.value, Value::String(guid(11)));
    assert_eq!(first.lookup_entity.as_deref(), Some("contact"));
    assert_eq!(contact_of(1).unwrap().value, Value::String(guid(11)));
    // A `$ref` object gives the id it points at.
    assert_eq!(contact_of(2).unwrap().value, Value::String(guid(13)));
    // An expanded record alone is left out: the id is not guessed from it.
    assert_eq!(contact_of(3), None);
    assert_eq!(contact_of(4).unwrap().value, Value::Null);
    for change in &changes {
        let record = change.record().unwrap();
        assert!(
            record
                .fields()
                .all(|(_, f)| !matches!(f.value, Value::Json(_))),
            "{record:?}"
        );
    }
}

#[test]
fn a_reference_without_an_id_is_an_error_naming_the_record_and_column() {
    let body = format!(
        r#"{{"value":[{{"accountid":"{}","primarycontactid":{{"@odata.id":"https://contoso.crm.dynamics.com{API}/contacts"}}}}]}}"#,
        guid(1)
    );
    let error = RecordDecoder::new(account_metadata(false))
        .decode_changes(body.as_bytes())
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    let message = error.to_string();
    assert!(
        message.contains("record 1, column `primarycontactid`")
            && message.contains("does not end with the record's id"),
        "{message}"
    );
}

#[test]
fn read_modes_are_snake_case_serde() {
    for (mode, text) in [
        (ReadMode::Auto, "\"auto\""),
        (ReadMode::ChangeTracking, "\"change_tracking\""),
        (ReadMode::ModifiedOn, "\"modified_on\""),
        (ReadMode::Full, "\"full\""),
    ] {
        assert_eq!(serde_json::to_string(&mode).unwrap(), text);
        assert_eq!(serde_json::from_str::<ReadMode>(text).unwrap(), mode);
    }
}

#[test]
fn checkpoint_debug_leaves_the_tokens_out() {
    let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
        "version": 1, "entity": "account", "mode": "change_tracking", "columns": [],
        "filter": null, "position": {"state": "delta", "delta_link": "https://x.crm.dynamics.com/api/data/v9.2/accounts?$deltatoken=secret123"}
    }))
    .unwrap();
    let debug = format!("{checkpoint:?}");
    assert!(!debug.contains("secret123"), "{debug}");
    assert!(debug.contains("/api/data/v9.2/accounts"), "{debug}");
}

#[tokio::test]
async fn a_page_that_links_to_itself_stops_the_read_instead_of_looping() {
    let server = server().await;
    let link2 = next_link(&server, 2);
    page(
        &server,
        "accounts",
        "$select=accountid,name,_primarycontactid_value",
        format!(
            r#"{{"@odata.context":"x","value":[{}],"@odata.nextLink":"{link2}"}}"#,
            account_row(&guid(1), "A")
        ),
        1,
    )
    .await;
    page(
        &server,
        "accounts",
        query_of(&link2),
        format!(
            r#"{{"@odata.context":"x","value":[{}],"@odata.nextLink":"{link2}"}}"#,
            account_row(&guid(2), "B")
        ),
        1,
    )
    .await;

    let mut pages = three_page_source(&server).pages();
    assert_eq!(pages.try_next().await.unwrap().unwrap().number, 1);
    let error = pages.try_next().await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Protocol);
    assert!(error.to_string().contains("links to itself"), "{error}");
    assert!(!error.to_string().contains("skiptoken"), "{error}");
    assert!(pages.try_next().await.unwrap().is_none(), "the stream ends");
}

/// Pages 1 to `last` of two accounts each, page `n` linking to page `n + 1` and the last page
/// linking back to page `back_to`: a cycle of length `last - back_to + 1`. Each page may be
/// requested once.
async fn mount_cycle(server: &MockServer, last: u32, back_to: u32) {
    for number in 1..=last {
        let query = if number == 1 {
            "$select=accountid,name,_primarycontactid_value".to_owned()
        } else {
            query_of(&next_link(server, number)).to_owned()
        };
        let next = next_link(server, if number == last { back_to } else { number + 1 });
        page(
            server,
            "accounts",
            &query,
            format!(
                r#"{{"@odata.context":"x","value":[{}],"@odata.nextLink":"{next}"}}"#,
                account_row(&guid(number), "A")
            ),
            1,
        )
        .await;
    }
}

#[tokio::test]
async fn a_next_link_cycle_ends_the_read_with_an_error_naming_the_link() {
    for (last, back_to) in [(3, 2), (4, 2)] {
        let server = server().await;
        mount_cycle(&server, last, back_to).await;

        let mut pages = three_page_source(&server).pages();
        for number in 1..last {
            assert_eq!(pages.try_next().await.unwrap().unwrap().number, number);
        }
        let error = pages.try_next().await.unwrap_err();

        assert_eq!(error.kind(), ErrorKind::Protocol);
        let message = error.to_string();
        assert!(
            message.contains(&format!("page {last} of `account` links back to a page")),
            "{message}"
        );
        assert!(
            message
                .contains("/api/data/v9.2/accounts?$select=accountid,name,_primarycontactid_value"),
            "names the link: {message}"
        );
        assert!(!message.contains("cookie"), "no skiptoken value: {message}");
        assert!(pages.try_next().await.unwrap().is_none(), "the stream ends");
    }
}
