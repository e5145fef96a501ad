//! Next and delta links are sent byte for byte as the server wrote them, and never to another
//! origin. Checked on the raw request line: wiremock parses every request into a `url::Url`
//! (which re-encodes `'`), so these tests use a tiny HTTP server of their own.

use d365_connector::{
    AccessToken, Checkpoint, ClientOptions, Connection, DataverseClient, EntityMetadata,
    EntitySource, ErrorKind, Page, ReadMode, RetryPolicy, StaticTokenAuthorizer,
};
use futures::TryStreamExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const API: &str = "/api/data/v9.2";

/// The query of a next link as Dataverse writes it for a filtered read: a `'` quoted string, spaces
/// encoded as `%20`, and the paging cookie encoded once and, inside it, twice.
const PAGE_2_QUERY: &str = "$select=accountid,name&$filter=contains(name,'sample')%20and%20statecode%20eq%200&$skiptoken=%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie%2520page%253d%25221%2522%253e%253caccountid%2520last%253d%2522%257b00000000-0000-0000-0000-000000000001%257d%2522%2520first%253d%2522%257b00000000-0000-0000-0000-000000000001%257d%2522%2520%252f%253e%253c%252fcookie%253e%22%20istracking=%22False%22%20/%3E";

/// A tiny HTTP/1.1 server: records each request line exactly as received and answers the
/// requests, in order, with the given JSON bodies (a 404 once they run out).
struct RawServer {
    /// `http://127.0.0.1:<port>`.
    base: String,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

impl RawServer {
    /// Starts a server whose answers `bodies` builds from its base URL.
    async fn start(bodies: impl FnOnce(&str) -> Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let queue = Arc::new(Mutex::new(VecDeque::from(bodies(&base))));
        let server = Self {
            base,
            port,
            lines: Arc::default(),
            connections: Arc::default(),
        };
        let (lines, connections) = (server.lines.clone(), server.connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, lines.clone(), queue.clone()));
            }
        });
        server
    }

    /// The request lines received so far.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The connections opened to the server so far.
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Serves the requests of one connection until the client closes it.
async fn serve(
    stream: tokio::net::TcpStream,
    lines: Arc<Mutex<Vec<String>>>,
    queue: Arc<Mutex<VecDeque<String>>>,
) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        lines.lock().unwrap().push(head[0].clone());
        let next = queue.lock().unwrap().pop_front();
        let (status, body) = match next {
            Some(body) => ("200 OK", body),
            None => (
                "404 Not Found",
                r#"{"error":{"code":"0x0","message":"no more answers"}}"#.to_owned(),
            ),
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn client(server: &RawServer) -> DataverseClient {
    let connection = Connection::builder("t", &server.base)
        .with_authority(&server.base)
        .build()
        .unwrap();
    DataverseClient::with_options(
        connection,
        Arc::new(StaticTokenAuthorizer::new(AccessToken::new("t"))),
        ClientOptions::default().with_retry_policy(RetryPolicy::disabled()),
    )
    .unwrap()
}

fn account_metadata(change_tracking: bool) -> EntityMetadata {
    let attribute = |name: &str, kind: &str| {
        serde_json::json!({
            "logical_name": name, "attribute_type": kind, "is_valid_for_read": true,
            "attribute_of": null, "targets": [], "date_only": false,
        })
    };
    serde_json::from_value(serde_json::json!({
        "logical_name": "account",
        "entity_set_name": "accounts",
        "primary_id_attribute": "accountid",
        "primary_name_attribute": "name",
        "change_tracking_enabled": change_tracking,
        "attributes": [attribute("accountid", "Uniqueidentifier"), attribute("name", "String")],
    }))
    .unwrap()
}

fn source(server: &RawServer, change_tracking: bool) -> EntitySource {
    let mode = if change_tracking {
        ReadMode::ChangeTracking
    } else {
        ReadMode::Full
    };
    EntitySource::new(client(server), account_metadata(change_tracking))
        .with_columns(["name"])
        .with_mode(mode)
}

/// A page of one account, ending with `link` (`"@odata.nextLink":"…"` or the like), if any.
fn page(id: u32, link: Option<(&str, &str)>) -> String {
    let link = link
        .map(|(name, url)| format!(r#","@odata.{name}":"{url}""#))
        .unwrap_or_default();
    format!(
        r#"{{"@odata.context":"x","value":[{{"accountid":"00000000-0000-0000-0000-{id:012}","name":"A"}}]{link}}}"#
    )
}

fn get(path_and_query: &str) -> String {
    format!("GET {path_and_query} HTTP/1.1")
}

async fn collect(source: EntitySource) -> Vec<Page> {
    source.pages().try_collect().await.unwrap()
}

#[tokio::test]
async fn a_next_link_with_quotes_encoded_spaces_and_a_paging_cookie_is_sent_byte_for_byte() {
    let server = RawServer::start(|base| {
        let link = format!("{base}{API}/accounts?{PAGE_2_QUERY}");
        vec![page(1, Some(("nextLink", &link))), page(2, None)]
    })
    .await;

    let pages = collect(source(&server, false)).await;

    assert_eq!(pages.len(), 2);
    let link = format!("{}{API}/accounts?{PAGE_2_QUERY}", server.base);
    assert_eq!(pages[0].checkpoint.next_link(), Some(link.as_str()));
    assert_eq!(
        server.lines(),
        [
            get(&format!("{API}/accounts?$select=accountid,name")),
            get(&format!("{API}/accounts?{PAGE_2_QUERY}")),
        ]
    );
}

#[tokio::test]
async fn links_resumed_from_a_checkpoint_are_sent_byte_for_byte() {
    let delta_query = "$select=accountid,name&$filter=name%20ne%20'x'&$deltatoken=919042%2108%2f22%2f2017%2008%3a10%3a44";
    let server = RawServer::start(|base| {
        let next_delta = format!("{base}{API}/accounts?$deltatoken=2");
        vec![
            page(1, Some(("deltaLink", &next_delta))),
            page(2, Some(("deltaLink", &next_delta))),
        ]
    })
    .await;
    let checkpoint = |position: serde_json::Value| -> Checkpoint {
        serde_json::from_value(serde_json::json!({
            "version": 1, "entity": "account", "mode": "change_tracking", "columns": ["name"],
            "filter": null, "position": position,
        }))
        .unwrap()
    };
    let delta = checkpoint(serde_json::json!({
        "state": "delta", "delta_link": format!("{}{API}/accounts?{delta_query}", server.base),
    }));
    let reading = checkpoint(serde_json::json!({
        "state": "reading", "pages": 3,
        "next_link": format!("{}{API}/accounts?{PAGE_2_QUERY}", server.base),
    }));

    let after_delta = collect(source(&server, true).resume_from(delta)).await;
    let after_next = collect(source(&server, true).resume_from(reading)).await;

    assert_eq!(after_delta.len(), 1);
    assert_eq!(after_next[0].number, 4);
    assert_eq!(
        server.lines(),
        [
            get(&format!("{API}/accounts?{delta_query}")),
            get(&format!("{API}/accounts?{PAGE_2_QUERY}")),
        ]
    );
}

#[tokio::test]
async fn a_link_to_another_port_or_host_is_refused_with_no_request_to_it() {
    let foreign = RawServer::start(|_| Vec::new()).await;
    let other_port = format!("{}{API}/accounts?$skiptoken=stolen", foreign.base);
    let server = RawServer::start(|base| {
        let other_host =
            base.replace("127.0.0.1", "localhost") + API + "/accounts?$skiptoken=stolen";
        vec![
            page(1, Some(("nextLink", &other_port))),
            page(1, Some(("nextLink", &other_host))),
        ]
    })
    .await;
    let other_host = format!("http://localhost:{}", server.port);

    for elsewhere in [&foreign.base, &other_host] {
        let error = source(&server, false)
            .pages()
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Protocol);
        assert!(
            error
                .to_string()
                .contains(&format!("link of page 1 to `{elsewhere}`")),
            "{error}"
        );
        assert!(!error.to_string().contains("stolen"), "{error}");
    }
    assert_eq!(foreign.connections(), 0);
    assert_eq!(
        server.lines().len(),
        2,
        "only the first pages reached the instance: {:?}",
        server.lines()
    );
}

#[tokio::test]
async fn a_link_whose_text_and_parsed_form_disagree_never_reaches_another_port() {
    let foreign = RawServer::start(|_| Vec::new()).await;
    let server = RawServer::start(|_| Vec::new()).await;
    // The URL standard reads `\` as `/` (host: the instance); an HTTP request target cannot
    // hold it at all.
    let tricky = format!(
        "{}\\@127.0.0.1:{}{API}/accounts?$skiptoken=1",
        server.base, foreign.port
    );
    let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
        "version": 1, "entity": "account", "mode": "full", "columns": ["name"], "filter": null,
        "position": {"state": "reading", "next_link": tricky, "pages": 1},
    }))
    .unwrap();

    let _ = source(&server, false)
        .resume_from(checkpoint)
        .pages()
        .try_collect::<Vec<_>>()
        .await;

    assert_eq!(foreign.connections(), 0);
    assert!(
        server.lines().iter().all(|line| !line.contains('\\')),
        "{:?}",
        server.lines()
    );
}
