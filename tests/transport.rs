//! The transport pipeline against wiremock: one retry stage (token requests never retried
//! twice), throttling waited out within its budget, and the throttle governor shared by every
//! task of a client (pauses, `x-ms-dop-hint`, halving on execution-time refusals).

use d365_connector::testkit::VirtualClock;
use d365_connector::{
    ClientCredentialsAuthorizer, ClientOptions, ClientSecret, Connection, DataverseClient,
    EntraApp, ErrorKind, RetryPolicy, ThrottleLimit,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT_ID: &str = "66666666-7777-8888-9999-000000000000";

fn connection(server: &MockServer) -> Connection {
    Connection::builder("test", server.uri())
        .with_authority(server.uri())
        .build()
        .unwrap()
}

/// A client whose tokens come from the server's token endpoint (client credentials).
fn client(server: &MockServer, options: ClientOptions) -> DataverseClient {
    let connection = connection(server);
    let app = EntraApp::builder(TENANT, CLIENT_ID)
        .with_client_secret(ClientSecret::new("s3cr3t-value"))
        .build()
        .unwrap();
    let authorizer = ClientCredentialsAuthorizer::builder(&connection, app)
        .with_client_options(options.clone())
        .build()
        .unwrap();
    DataverseClient::with_options(connection, Arc::new(authorizer), options).unwrap()
}

fn virtual_options(clock: &Arc<VirtualClock>) -> ClientOptions {
    ClientOptions::default().with_clock(clock.clone())
}

async fn mount_token(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "access_token": "access-1"
        })))
        .mount(server)
        .await;
}

fn page() -> Value {
    json!({"value": [{"accountid": "00000000-0000-0000-0000-000000000001", "name": "A"}]})
}

fn throttled(seconds: u64, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(429)
        .insert_header("Retry-After", seconds.to_string().as_str())
        .set_body_json(json!({"error": {"code": code, "message": "limit"}}))
}

async fn count(server: &MockServer, wanted: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().contains(wanted))
        .count()
}

#[tokio::test]
async fn a_failing_token_endpoint_is_retried_by_its_own_policy_only() {
    let server = MockServer::start().await;
    Mock::given(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new());
    let options =
        virtual_options(&clock).with_retry_policy(RetryPolicy::default().with_max_attempts(5));

    let error = client(&server, options)
        .get_json::<Value>("accounts")
        .await
        .unwrap_err();

    assert_eq!(count(&server, "/token").await, 5, "not 5 x 5");
    assert_eq!(count(&server, "/accounts").await, 0);
    assert!(error.is_exhausted() && error.is_retryable());
    assert_eq!(error.kind(), ErrorKind::Service);
    let message = error.to_string();
    assert_eq!(message.matches("gave up after").count(), 1, "{message}");
    assert!(
        message.contains("gave up after 5 attempts over"),
        "{message}"
    );
}

#[tokio::test]
async fn a_refused_port_is_reported_after_one_short_retry() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener); // nothing listens there any more
    let connection = Connection::builder("closed", url.as_str())
        .with_authority(url.as_str())
        .build()
        .unwrap();
    let app = EntraApp::builder(TENANT, CLIENT_ID)
        .with_client_secret(ClientSecret::new("s3cr3t-value"))
        .build()
        .unwrap();
    let started = Instant::now();
    let authorizer = ClientCredentialsAuthorizer::builder(&connection, app)
        .build()
        .unwrap();
    let client = DataverseClient::new(connection, Arc::new(authorizer)).unwrap();

    let error = client.get_json::<Value>("accounts").await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Transport);
    assert!(error.is_exhausted());
    assert!(
        error.to_string().contains("gave up after 2 attempts"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn twenty_throttling_refusals_are_waited_out_while_a_503_storm_stops_at_the_cap() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(throttled(30, "0x80072322"))
        .up_to_n_times(20)
        .mount(&server)
        .await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page()))
        .mount(&server)
        .await;
    Mock::given(path("/api/data/v9.2/contacts"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new());
    let client = client(&server, virtual_options(&clock));

    let accounts: Value = client.get_json("accounts").await.unwrap();

    assert_eq!(accounts["value"][0]["name"], "A");
    assert_eq!(count(&server, "/accounts").await, 21);
    assert!(
        clock.total_slept() >= Duration::from_secs(600),
        "{:?}",
        clock.total_slept()
    );
    let stats = client.throttle_stats();
    assert_eq!((stats.requests, stats.refused()), (20, 20));
    assert_eq!(stats.paused, Duration::from_secs(600));

    let error = client.get_json::<Value>("contacts").await.unwrap_err();
    assert_eq!(count(&server, "/contacts").await, 5, "the attempt cap");
    assert!(error.is_exhausted());
}

#[tokio::test]
async fn throttling_longer_than_the_budget_fails_with_the_limit_named() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(throttled(600, "0x80072321"))
        .mount(&server)
        .await;
    let clock = Arc::new(VirtualClock::new());
    let retry = RetryPolicy::default().with_throttle_budget(Duration::from_secs(1200));
    let client = client(&server, virtual_options(&clock).with_retry_policy(retry));

    let error = client.get_json::<Value>("accounts").await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Throttled);
    assert_eq!(error.throttle_limit(), Some(ThrottleLimit::ExecutionTime));
    assert!(error.is_exhausted());
    assert_eq!(count(&server, "/accounts").await, 3);
    assert!(
        error.to_string().contains("combined execution time"),
        "{error}"
    );
}

/// Answers 200 after `delay`, recording when each request arrived; the first request to
/// arrive gets a 429 with `Retry-After: 1` when `throttle_first` is set.
struct Recorder {
    arrivals: Mutex<Vec<Instant>>,
    throttled_at: Mutex<Option<Instant>>,
    throttle_first: AtomicBool,
    delay: Duration,
    dop_hint: Option<&'static str>,
}

impl Recorder {
    fn new(delay: Duration, throttle_first: bool, dop_hint: Option<&'static str>) -> Self {
        Self {
            arrivals: Mutex::new(Vec::new()),
            throttled_at: Mutex::new(None),
            throttle_first: AtomicBool::new(throttle_first),
            delay,
            dop_hint,
        }
    }
}

/// A [`Recorder`] shared between the server and the test.
#[derive(Clone)]
struct Shared(Arc<Recorder>);

impl Respond for Shared {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let recorder = &self.0;
        let now = Instant::now();
        if recorder.throttle_first.swap(false, Ordering::SeqCst) {
            *recorder.throttled_at.lock().unwrap() = Some(now);
            return throttled(1, "0x80072322");
        }
        recorder.arrivals.lock().unwrap().push(now);
        let mut response = ResponseTemplate::new(200)
            .set_body_json(page())
            .set_delay(recorder.delay);
        if let Some(hint) = recorder.dop_hint {
            response = response.insert_header("x-ms-dop-hint", hint);
        }
        response
    }
}

async fn mount_recorder(server: &MockServer, recorder: &Arc<Recorder>) {
    Mock::given(path("/api/data/v9.2/accounts"))
        .respond_with(Shared(recorder.clone()))
        .mount(server)
        .await;
}

/// `tasks` tasks each GET `accounts` `each` times through clones of `client`.
async fn read_concurrently(client: &DataverseClient, tasks: usize, each: usize) {
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    client.get_json::<Value>("accounts").await.unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_one_task_pauses_the_other_tasks_of_the_client() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    let recorder = Arc::new(Recorder::new(Duration::from_millis(50), true, None));
    mount_recorder(&server, &recorder).await;
    let client = client(&server, ClientOptions::default());

    read_concurrently(&client, 4, 6).await;

    let throttled_at = recorder.throttled_at.lock().unwrap().expect("one 429");
    let arrivals = recorder.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 24, "every request succeeded in the end");
    // Requests already in flight when the 429 was sent may arrive just after it; after that
    // nothing may arrive before its Retry-After (1 s) has passed.
    let held = arrivals
        .iter()
        .filter(|at| {
            let since = at.saturating_duration_since(throttled_at);
            since > Duration::from_millis(100) && since < Duration::from_millis(950)
        })
        .count();
    assert_eq!(held, 0, "requests were sent during the pause");
    assert!(
        arrivals
            .iter()
            .any(|at| *at > throttled_at + Duration::from_secs(1))
    );
    assert_eq!(client.throttle_stats().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dop_hint_caps_the_requests_in_flight() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    let delay = Duration::from_millis(300);
    let recorder = Arc::new(Recorder::new(delay, false, Some("2")));
    mount_recorder(&server, &recorder).await;
    let client = client(&server, ClientOptions::default());
    client.get_json::<Value>("accounts").await.unwrap(); // learns the hint
    assert_eq!(client.concurrency_limit(), 2);
    recorder.arrivals.lock().unwrap().clear();

    read_concurrently(&client, 6, 2).await;

    let arrivals = recorder.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 12);
    // Each request is in flight for `delay`: never more than 2 arrive within one such span.
    let most_in_flight = arrivals
        .iter()
        .map(|t| {
            arrivals
                .iter()
                .filter(|u| **u <= *t && t.duration_since(**u) < delay - Duration::from_millis(50))
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(most_in_flight, 2);
}

#[tokio::test]
async fn an_execution_time_refusal_halves_the_concurrency_and_successes_raise_it_again() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    let ok = ResponseTemplate::new(200)
        .set_body_json(page())
        .insert_header("x-ms-dop-hint", "4");
    let answers = [
        (ok.clone(), Some(1)),
        (throttled(5, "0x80072321"), Some(1)),
        (ok, None),
    ];
    for (priority, (answer, times)) in (1u8..).zip(answers) {
        let mock = Mock::given(path("/api/data/v9.2/accounts"))
            .respond_with(answer)
            .with_priority(priority);
        match times {
            Some(n) => mock.up_to_n_times(n).mount(&server).await,
            None => mock.mount(&server).await,
        }
    }
    let clock = Arc::new(VirtualClock::new());
    let client = client(&server, virtual_options(&clock).with_max_concurrency(8));
    assert_eq!(
        client.concurrency_limit(),
        8,
        "the configured maximum until a hint"
    );
    client.get_json::<Value>("accounts").await.unwrap();
    assert_eq!(client.concurrency_limit(), 4, "the hint");

    client.get_json::<Value>("accounts").await.unwrap();

    assert_eq!(client.concurrency_limit(), 2, "halved by the refusal");
    assert_eq!(client.throttle_stats().execution_time, 1);
    let mut limits = Vec::new();
    for _ in 0..40 {
        client.get_json::<Value>("accounts").await.unwrap();
        limits.push(client.concurrency_limit());
    }
    assert!(
        limits.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 1),
        "{limits:?}"
    );
    assert_eq!(limits.last(), Some(&4), "back to the hint, never above it");
}
