//! The Dataverse HTTP client against a wiremock stand-in: headers, retries, 401 refresh,
//! origin checks, redirects, error bodies.

use async_trait::async_trait;
use d365_connector::testkit::VirtualClock;
use d365_connector::{
    AccessToken, Authorizer, ClientOptions, Connection, DataverseClient, ErrorKind, Result,
    RetryPolicy, StaticTokenAuthorizer,
};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOi-test-token";

fn connection(server: &MockServer) -> Connection {
    Connection::builder("test", server.uri())
        .with_authority(server.uri())
        .build()
        .unwrap()
}

fn client_with(server: &MockServer, authorizer: Arc<dyn Authorizer>) -> DataverseClient {
    let options = ClientOptions::default().with_request_timeout(Duration::from_secs(2));
    DataverseClient::with_options(connection(server), authorizer, options).unwrap()
}

fn client(server: &MockServer) -> DataverseClient {
    client_options(server, ClientOptions::default())
}

/// A client of `server` with a static token, sending as `options` say.
fn client_options(server: &MockServer, options: ClientOptions) -> DataverseClient {
    let token = Arc::new(StaticTokenAuthorizer::new(AccessToken::new(TOKEN)));
    DataverseClient::with_options(connection(server), token, options).unwrap()
}

/// Options with a virtual clock and `retry`.
fn virtual_options(clock: &Arc<VirtualClock>, retry: RetryPolicy) -> ClientOptions {
    ClientOptions::default()
        .with_clock(clock.clone())
        .with_retry_policy(retry)
}

/// Answers every request no other mock matched with a loud 599, so a stray request fails the test.
async fn fail_unexpected(server: &MockServer) {
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(599).set_body_string("unexpected request"))
        .with_priority(u8::MAX)
        .mount(server)
        .await;
}

fn accounts_page() -> Value {
    json!({
        "@odata.context": "https://contoso.crm4.dynamics.com/api/data/v9.2/$metadata#accounts(name)",
        "value": [
            {"@odata.etag": "W/\"2264380\"", "name": "Sample Account", "accountid": "00000000-0000-0000-0000-000000000020"}
        ]
    })
}

#[tokio::test]
async fn sends_odata_headers_and_the_bearer_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/accounts"))
        .and(header("Accept", "application/json"))
        .and(header("OData-MaxVersion", "4.0"))
        .and(header("OData-Version", "4.0"))
        .and(header("Authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(accounts_page()))
        .expect(1)
        .mount(&server)
        .await;
    fail_unexpected(&server).await;

    let page: Value = client(&server)
        .get_json("accounts?$select=name")
        .await
        .unwrap();
    assert_eq!(page["value"][0]["name"], "Sample Account");

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.query(), Some("$select=name"));
    let agent = requests[0]
        .headers
        .get("user-agent")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(agent.starts_with("d365-connector/"), "{agent}");
}

#[tokio::test]
async fn throttling_waits_at_least_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "2")
                .set_body_json(json!({"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds."}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(accounts_page()))
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new());
    let client = client_options(
        &server,
        virtual_options(
            &clock,
            RetryPolicy::default().with_initial_backoff(Duration::from_millis(100)),
        ),
    );

    let page: Value = client.get_json("accounts").await.unwrap();

    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["value"][0]["accountid"],
        "00000000-0000-0000-0000-000000000020"
    );
    assert_eq!(clock.sleeps().len(), 1);
    assert!(
        clock.total_slept() >= Duration::from_secs(2),
        "{:?}",
        clock.sleeps()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_503_storm_exhausts_the_attempts_with_a_retryable_error() {
    let server = MockServer::start().await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(ResponseTemplate::new(503))
        .expect(4)
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new());
    let client = client_options(
        &server,
        virtual_options(&clock, RetryPolicy::default().with_max_attempts(4)),
    );

    let error = client.get_json::<Value>("accounts").await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Service);
    assert!(error.is_retryable());
    assert_eq!(error.status(), Some(503));
    assert!(error.is_exhausted(), "{error}");
    assert_eq!(clock.sleeps().len(), 3);
}

/// Hands out `old-token` until refreshed, then `new-token`; counts refreshes.
#[derive(Debug, Default)]
struct RotatingAuthorizer {
    refreshes: AtomicU32,
}

#[async_trait]
impl Authorizer for RotatingAuthorizer {
    async fn access_token(&self) -> Result<AccessToken> {
        Ok(AccessToken::new(
            if self.refreshes.load(Ordering::SeqCst) == 0 {
                "old-token"
            } else {
                "new-token"
            },
        ))
    }

    async fn refresh_rejected(&self, rejected: &AccessToken) -> Result<AccessToken> {
        assert_eq!(rejected.secret(), "old-token");
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Ok(AccessToken::new("new-token"))
    }
}

#[tokio::test]
async fn a_401_gets_one_fresh_token_and_one_retry() {
    let server = MockServer::start().await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .and(header("Authorization", "Bearer old-token"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .and(header("Authorization", "Bearer new-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(accounts_page()))
        .expect(1)
        .mount(&server)
        .await;
    fail_unexpected(&server).await;
    let authorizer = Arc::new(RotatingAuthorizer::default());

    let page: Value = client_with(&server, authorizer.clone())
        .get_json("accounts")
        .await
        .unwrap();

    assert_eq!(page["value"][0]["name"], "Sample Account");
    assert_eq!(authorizer.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_second_401_fails_with_advice_to_reauthorize() {
    let server = MockServer::start().await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;
    let authorizer = Arc::new(RotatingAuthorizer::default());

    let error = client_with(&server, authorizer.clone())
        .get_json::<Value>("accounts")
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Auth);
    assert_eq!(error.status(), Some(401));
    assert!(error.to_string().contains("re-authorize"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(authorizer.refreshes.load(Ordering::SeqCst), 1);
    let printed = format!("{error} {error:?}");
    assert!(
        !printed.contains("new-token") && !printed.contains("old-token"),
        "{printed}"
    );
}

#[tokio::test]
async fn a_static_token_rejected_by_the_instance_says_to_reauthorize() {
    let server = MockServer::start().await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(&server)
        .get_json::<Value>("accounts")
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        error.to_string().contains("re-authorize the connection"),
        "{error}"
    );
    assert!(!format!("{error:?}").contains(TOKEN));
}

#[tokio::test]
async fn a_url_of_another_origin_is_refused_before_sending() {
    let server = MockServer::start().await;
    let foreign = MockServer::start().await;
    fail_unexpected(&server).await;
    fail_unexpected(&foreign).await;
    let client = client(&server);

    for link in [
        format!(
            "{}/api/data/v9.2/accounts?$skiptoken=secret-cookie",
            foreign.uri()
        ),
        format!("//{}/api/data/v9.2/accounts", foreign.address()),
    ] {
        let error = client.get_json::<Value>(&link).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Protocol, "{link}");
        let printed = format!("{error} {error:?}");
        assert!(printed.contains("not the instance"), "{printed}");
        assert!(!printed.contains("secret-cookie"), "{printed}");
    }

    assert!(foreign.received_requests().await.unwrap().is_empty());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    fail_unexpected(&elsewhere).await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "Location",
            format!("{}/collect?token=1", elsewhere.uri()).as_str(),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(&server)
        .get_json::<Value>("accounts")
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Protocol);
    assert_eq!(error.status(), Some(302));
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

async fn error_for(response: ResponseTemplate) -> d365_connector::Error {
    let server = MockServer::start().await;
    Mock::given(path("/api/data/v9.2/acounts"))
        .respond_with(response)
        .mount(&server)
        .await;
    let options = ClientOptions::default().with_retry_policy(RetryPolicy::disabled());
    client_options(&server, options)
        .get_json::<Value>("acounts")
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_dataverse_json_error_keeps_code_message_status_and_request_id() {
    let error = error_for(
        ResponseTemplate::new(404)
            .insert_header("x-ms-service-request-id", "5f6a1d3c-0000-4000-8000-1234567890ab")
            .set_body_json(json!({"error": {"code": "0x80060888", "message": "Resource not found for the segment 'acounts'."}})),
    )
    .await;
    assert_eq!(error.kind(), ErrorKind::Service);
    assert_eq!(error.status(), Some(404));
    assert_eq!(error.service_code(), Some("0x80060888"));
    assert_eq!(
        error.service_message(),
        Some("Resource not found for the segment 'acounts'.")
    );
    assert_eq!(
        error.request_id(),
        Some("5f6a1d3c-0000-4000-8000-1234567890ab")
    );
    assert!(
        error
            .to_string()
            .contains("Resource not found for the segment 'acounts'")
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn an_empty_code_is_dropped_and_the_message_kept() {
    let error = error_for(
        ResponseTemplate::new(400)
            .set_body_json(json!({"error": {"code": "", "message": "Could not find a property named 'x' on type 'Microsoft.Dynamics.CRM.account'."}})),
    )
    .await;
    assert_eq!(error.service_code(), None);
    assert_eq!(
        error.service_message(),
        Some("Could not find a property named 'x' on type 'Microsoft.Dynamics.CRM.account'.")
    );
}

#[tokio::test]
async fn an_empty_body_still_names_the_status() {
    let error = error_for(ResponseTemplate::new(500)).await;
    assert_eq!(error.status(), Some(500));
    assert_eq!(error.service_message(), None);
    let message = error.to_string();
    assert!(
        message.contains("HTTP 500") && message.contains("empty body"),
        "{message}"
    );
}

#[tokio::test]
async fn an_html_gateway_page_is_summarised_by_its_title() {
    let error = error_for(
        ResponseTemplate::new(502).insert_header("Content-Type", "text/html").set_body_string(
            "<html><head><title>502 - Web server received an invalid response</title></head><body><h1>Server Error</h1></body></html>",
        ),
    )
    .await;
    assert_eq!(error.status(), Some(502));
    assert!(error.is_retryable());
    assert_eq!(
        error.service_message(),
        Some("502 - Web server received an invalid response")
    );
    assert!(!error.to_string().contains("<body>"), "{error}");
}

#[tokio::test]
async fn a_truncated_json_body_is_reported_as_such() {
    let error = error_for(
        ResponseTemplate::new(400)
            .insert_header("Content-Type", "application/json")
            .set_body_string(r#"{"error":{"code":"0x80040203","message":"Inva"#),
    )
    .await;
    assert_eq!(error.status(), Some(400));
    assert!(error.to_string().contains("truncated JSON"), "{error}");
}

#[tokio::test]
async fn a_403_says_which_privilege_is_missing() {
    let error = error_for(ResponseTemplate::new(403).set_body_json(
        json!({"error": {"code": "0x80072560", "message": "The user is not a member of the organization."}}),
    ))
    .await;
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert_eq!(error.service_code(), Some("0x80072560"));
    let message = error.to_string();
    assert!(
        message.contains("not a member of the organization"),
        "{message}"
    );
    assert!(message.contains("security role"), "{message}");
}

#[tokio::test]
async fn gzip_bodies_are_decompressed() {
    let server = MockServer::start().await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(accounts_page().to_string().as_bytes())
        .unwrap();
    Mock::given(path("/api/data/v9.2/accounts"))
        .and(header("accept-encoding", "gzip"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Encoding", "gzip")
                .insert_header("Content-Type", "application/json")
                .set_body_bytes(encoder.finish().unwrap()),
        )
        .mount(&server)
        .await;

    let page: Value = client(&server).get_json("accounts").await.unwrap();
    assert_eq!(page["value"][0]["name"], "Sample Account");
}

#[tokio::test]
async fn a_timeout_is_a_retryable_transport_error() {
    let server = MockServer::start().await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let options = virtual_options(
        &Arc::new(VirtualClock::new()),
        RetryPolicy::default().with_max_attempts(2),
    )
    .with_request_timeout(Duration::from_millis(200));
    let client = client_options(&server, options);

    let error = client.get_json::<Value>("accounts").await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Transport);
    assert!(error.is_retryable());
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn gateway_errors_are_retryable_and_other_server_errors_are_not() {
    for (status, retryable) in [
        (502, true),
        (503, true),
        (504, true),
        (500, false),
        (400, false),
    ] {
        let error = error_for(ResponseTemplate::new(status)).await;
        assert_eq!(error.status(), Some(status));
        assert_eq!(error.is_retryable(), retryable, "HTTP {status}");
    }
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_retried_as_a_transport_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket); // closed before any response
        }
    });
    let url = format!("http://{address}");
    let connection = Connection::builder("reset", url.as_str())
        .with_authority(url.as_str())
        .build()
        .unwrap();
    let clock = Arc::new(VirtualClock::new());
    let client = DataverseClient::with_options(
        connection,
        Arc::new(StaticTokenAuthorizer::new(AccessToken::new(TOKEN))),
        virtual_options(&clock, RetryPolicy::default().with_max_attempts(3)),
    )
    .unwrap();

    let error = client.get_json::<Value>("accounts").await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Transport);
    assert!(error.is_retryable());
    assert!(error.is_exhausted(), "{error}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_eq!(clock.sleeps().len(), 2);
}

#[tokio::test]
async fn an_html_page_answered_with_200_is_named_as_such() {
    let server = MockServer::start().await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/html; charset=utf-8")
                .set_body_string("<!DOCTYPE html><html><head><title>Sign in to your account</title></head></html>"),
        )
        .mount(&server)
        .await;

    let error = client(&server)
        .get_json::<Value>("accounts?$select=name")
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Decode);
    assert_eq!(error.status(), Some(200));
    let message = error.to_string();
    assert!(message.contains("GET /api/data/v9.2/accounts answered HTTP 200 with an HTML page titled \"Sign in to your account\""), "{message}");
    assert!(!message.contains("line 1 column 1"), "{message}");
}
