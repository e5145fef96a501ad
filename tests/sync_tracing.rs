//! The crate's tracing through the `sync` example's code path: spans for jobs, pages and
//! requests, and no token or secret in any field. A test binary of its own: a subscriber set
//! for one thread does not reliably see callsites that other tests' threads meet at the same
//! time.

#[path = "../examples/sync/main.rs"]
mod sync_example;
mod sync_support;

use d365_connector::testkit::StandIn;
use serde_json::json;
use std::sync::{Arc, Mutex};
use sync_support::{Paths, environment, job_file, run_sync};

/// Every span and event of the crate: names, and each field as `name=value`.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().target().starts_with("d365_connector") {
            let mut line = format!("span {}", attrs.metadata().name());
            attrs.record(&mut Fields(&mut line));
            self.0.lock().unwrap().push(line);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target().starts_with("d365_connector") {
            let mut line = "event".to_owned();
            event.record(&mut Fields(&mut line));
            self.0.lock().unwrap().push(line);
        }
    }
}

#[tokio::test]
async fn the_crate_traces_jobs_pages_and_requests_without_any_token_or_secret() {
    use tracing_subscriber::layer::SubscriberExt;
    let crm = StandIn::with_sample_data().await;
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    let mut job = job_file();
    job["source"] =
        json!({ "entity": "contact", "incremental": "change_tracking", "page_size": 2 });
    let paths = Paths::new("tracing", &job);
    crm.inject(d365_connector::testkit::Fault::Unavailable);

    let first = run_sync(&paths.all(), environment(&crm)).await;
    let changed = crm.rows("contact")[0]["contactid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.upsert(
        "contact",
        json!({"contactid": changed, "emailaddress1": "x@example.com"}),
    );
    let second = run_sync(&paths.all(), environment(&crm)).await;

    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let lines = captured.all();
    let has = |start: &str, fields: &[&str]| {
        lines
            .iter()
            .any(|l| l.starts_with(start) && fields.iter().all(|f| l.contains(f)))
    };
    assert!(
        has("span job", &["job=Contacts to Person", "entity=contact"]),
        "{lines:#?}"
    );
    assert!(has("span page", &["number=1", "records=2"]), "{lines:#?}");
    assert!(
        has(
            "span request",
            &["method=\"GET\"", "entity_set=\"contacts\""]
        ),
        "{lines:#?}"
    );
    assert!(
        has(
            "event",
            &[
                "attempt=1",
                "status=200",
                "wait_ms=",
                "duration_ms=",
                "bytes="
            ]
        ),
        "{lines:#?}"
    );
    assert!(has("event", &["attempt=1", "status=503"]), "{lines:#?}");
    assert!(
        has("event", &["retrying after a wait", "wait_ms="]),
        "{lines:#?}"
    );
    assert!(
        has("event", &["job ended", "status=Success", "written="]),
        "{lines:#?}"
    );
    let tokens: Vec<String> = crm
        .requests()
        .iter()
        .filter_map(|r| {
            r.header("authorization")
                .map(|h| h.trim_start_matches("Bearer ").to_owned())
        })
        .collect();
    assert!(!tokens.is_empty());
    let text = lines.join("\n");
    for secret in tokens.iter().map(String::as_str).chain([
        StandIn::CLIENT_SECRET,
        "skiptoken",
        "deltatoken",
        "Bearer",
    ]) {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}
