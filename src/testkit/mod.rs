//! A stand-in Dynamics 365 instance for tests: Entra ID's token endpoint and the Dataverse Web
//! API, served in-process on a loopback port (feature `testkit`).
//!
//! [`StandIn`] answers the requests this crate (and any Dataverse client) sends, shaped like the
//! real service: OAuth 2.0 tokens (client credentials, authorization code with PKCE, rotating
//! refresh tokens), `WhoAmI`, `EntityDefinitions` metadata with typed attribute casts, record
//! queries with `$select`, `$filter`, `$orderby`, `$top`, server-driven paging
//! (`@odata.nextLink`), annotations on request, change tracking (`@odata.deltaLink`, deleted
//! rows), and Dataverse's error bodies. It keeps state: rows you [`upsert`](StandIn::upsert)
//! and [`delete`](StandIn::delete) between two syncs show up in the next delta, and
//! [faults](Fault) you [`inject`](StandIn::inject) make it throttle, fail, or expire tokens.
//!
//! # Using it in a host application's tests
//!
//! Enable the feature for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! d365-connector = { version = "0.1", features = ["testkit"] }
//! ```
//!
//! Point the connection at [`StandIn::url`] and the authority at [`StandIn::authority`], and
//! authenticate with [`StandIn::TENANT_ID`], [`StandIn::CLIENT_ID`] and
//! [`StandIn::CLIENT_SECRET`] ([`StandIn::client`] builds such a client; [`client_at`] does for
//! a process that knows only the stand-in's address). Then change data between syncs and
//! assert what arrived:
//!
//! ```no_run
//! use d365_connector::testkit::{Fault, StandIn};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let crm = StandIn::with_sample_data().await;
//! let connection = d365_connector::Connection::builder("test", crm.url())
//!     .with_authority(crm.authority())
//!     .build()?;
//! // ... run a first sync of `contacts` through `connection` ...
//!
//! // Between two syncs: one change, one delete, and a throttled first request.
//! let id = crm.upsert("contact", json!({"firstname": "Ada", "lastname": "Lovelace"}));
//! crm.delete("contact", &id);
//! crm.inject(Fault::Throttle { retry_after_secs: 1 });
//! // ... run the second sync and assert what the host stored ...
//!
//! assert!(crm.api_requests().iter().all(|r| r.header("authorization").is_some()));
//! # let _ = connection; Ok(()) }
//! ```
//!
//! # The sample data
//!
//! [`StandIn::with_sample_data`] seeds three tables:
//!
//! - `systemuser` (`systemusers`): 4 users; change tracking is **off** (a track-changes request
//!   answers `0x80072491`), so it exercises the `modifiedon` watermark.
//! - `account` (`accounts`): 12 rows with Money `revenue` (`5000000.0000`,
//!   `922337203685477.5807`, ...), Integer, Picklist `industrycode` with labels, State/Status,
//!   `primarycontactid` (Lookup to contact) and `ownerid` (Owner); change tracking on.
//! - `contact` (`contacts`): 25 rows, among them `Siobhan O'Brien`; `parentcustomerid`
//!   (Customer) points at accounts and, for some rows, at contacts; `birthdate` is DateOnly;
//!   change tracking on.
//!
//! Several rows share the same `modifiedon` second, as they do in real environments.
//!
//! # Fidelity
//!
//! Only `GET` is served below `/api/data/v9.2/`; other methods answer 405. Filters support
//! `eq ne gt ge lt le`, `and or not`, parentheses, `contains`/`startswith`/`endswith`, and
//! string, GUID, number, `null`, boolean, date-time and date literals; text compares
//! case-insensitively and a comparison with a null column is false (except `eq null`). GUID
//! columns (primary ids and lookups) compare and sort in SQL Server's `uniqueidentifier`
//! order, as Dataverse does: the last group first, then the fourth, then the third, second and
//! first groups with their byte pairs read right to left; never in text order. An
//! unsupported query option is refused with a 400, never ignored. Formatted values are en-US
//! and in UTC.
//!
//! # Big tables, server time and service protection
//!
//! For tests and benchmarks of parallel reads: [`StandIn::add_accounts`] adds many accounts
//! quickly, with ids in a few sequential clusters and a `createdon` spike ([`AccountShape`]);
//! [`StandIn::set_server_time`] makes pages take time in proportion to their rows and columns;
//! [`StandIn::set_dop_hint`] sends `x-ms-dop-hint`; and [`StandIn::set_limits`] refuses
//! requests beyond an execution-time or concurrency limit with `429`, `Retry-After` and the
//! codes `0x80072321` / `0x80072326`, counted by [`StandIn::throttled_requests`]. By default
//! none of this is on: no server time, no hint, no limits.
//!
//! ```no_run
//! use d365_connector::testkit::{AccountShape, ServiceLimits, StandIn};
//! use std::time::Duration;
//!
//! # async fn demo() {
//! let crm = StandIn::with_sample_data().await;
//! crm.add_accounts(100_000, AccountShape { clusters: 3, createdon_spike: 0.4 });
//! crm.set_server_time(Duration::from_secs(1));
//! crm.set_dop_hint(Some(4));
//! crm.set_limits(ServiceLimits {
//!     execution_time: Some(Duration::from_secs(4 * 300)),
//!     ..ServiceLimits::default()
//! });
//! // ... run a read, then:
//! println!("refused: {}", crm.throttled_requests().total());
//! # }
//! ```
//!
//! The rows are kept as JSON maps: about 3.5 KB each, so a million rows need about 3.5 GB.
//!
//! # Test helpers
//!
//! - [`VirtualClock`]: give it to
//!   [`ClientOptions::with_clock`](crate::ClientOptions::with_clock) and retries, throttling
//!   pauses and token expiry never really wait; it records every wait.
//! - [`entity_metadata_from_dataverse_json`] and [`attributes_from_dataverse_json`]: metadata
//!   from `EntityDefinitions` documents recorded from a real environment.

mod bulk;
mod connect;
mod filter;
mod guid;
mod limits;
mod metadata;
mod odata;
mod prefer;
mod render;
mod reply;
mod sample;
mod state;
mod token;

pub use bulk::AccountShape;
pub use connect::client_at;
pub use limits::{ServiceLimits, ThrottleCounts};
pub use state::{AttributeDef, EntityDef};

pub use crate::metadata::{attributes_from_dataverse_json, entity_metadata_from_dataverse_json};
pub use crate::transport::VirtualClock;

use reply::{ApiError, Reply};
use state::State;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

/// A fault the stand-in plays, see [`StandIn::inject`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next Web API request answers `429` with `Retry-After: <secs>` and code `0x80072322`
    /// (service protection: number of requests).
    Throttle {
        /// The `Retry-After` header value, in seconds.
        retry_after_secs: u64,
    },
    /// The next Web API request answers `503` with a gateway's HTML page.
    Unavailable,
    /// The next Web API request answers `403` with `0x80072560` ("The user is not a member of the
    /// organization.").
    Forbidden,
    /// The next Web API request answers `status` with `body` (sent as JSON).
    Status {
        /// The HTTP status.
        status: u16,
        /// The body, sent as `application/json`.
        body: String,
    },
    /// At once: every delta token issued so far is expired; a request with one answers `400`
    /// `0x80044352` ("Version stamp associated with the client has expired. Please perform a
    /// full sync."). Tokens issued afterwards work.
    ExpireDeltaTokens,
    /// At once: every access token issued so far is revoked; Web API requests with one answer
    /// `401`. Tokens issued afterwards work.
    ExpireAccessTokens,
    /// At once: every refresh token issued so far is revoked; redeeming one answers
    /// `invalid_grant` `AADSTS70008`.
    ExpireRefreshTokens,
}

impl Fault {
    fn is_queued(&self) -> bool {
        matches!(
            self,
            Fault::Throttle { .. } | Fault::Unavailable | Fault::Forbidden | Fault::Status { .. }
        )
    }
}

/// One request the stand-in received.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The HTTP method (`GET`).
    pub method: String,
    /// Path and query exactly as sent (`/api/data/v9.2/accounts?$select=name`).
    pub path_and_query: String,
    /// Every header, names in lowercase, in the order received. The `Authorization` value is
    /// kept so tests can assert on it: this is test infrastructure.
    pub headers: Vec<(String, String)>,
    /// The body (the form of a token request, empty for `GET`).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query (`/api/data/v9.2/accounts`).
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The decoded query parameters, in order (`("$select", "name")`).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let query = self.path_and_query.split_once('?').map_or("", |(_, q)| q);
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    /// Whether it went to the Entra token endpoint.
    pub fn is_token_request(&self) -> bool {
        self.path().ends_with("/oauth2/v2.0/token")
    }

    /// Whether it went to the Dataverse Web API.
    pub fn is_api_request(&self) -> bool {
        self.path().starts_with(API_PREFIX)
    }
}

const API_PREFIX: &str = "/api/data/v9.2/";

/// An in-process Dynamics 365 instance and its Entra ID tenant. See the [module docs](self).
///
/// It stops when dropped. Every method takes `&self`; the instance is shared state behind a
/// mutex, so a test can change data while a sync runs.
pub struct StandIn {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for StandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let tables: Vec<&str> = state
            .tables
            .iter()
            .map(|t| t.def.logical_name.as_str())
            .collect();
        f.debug_struct("StandIn")
            .field("url", &state.base_url)
            .field("tables", &tables)
            .finish_non_exhaustive()
    }
}

impl StandIn {
    /// The tenant (directory) id the token endpoint accepts (`organizations` and `common` work
    /// too for the authorization code flow).
    pub const TENANT_ID: &'static str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    /// The application (client) id of the registered app.
    pub const CLIENT_ID: &'static str = "51f81489-12ee-4a9e-aaae-a2591f45987d";
    /// The app's valid client secret.
    pub const CLIENT_SECRET: &'static str = "Jq38Q~stand-in.client.secret~kL2mN";
    /// `UserId` that `WhoAmI` reports for client-credentials tokens (the application user).
    pub const APPLICATION_USER_ID: &'static str = "c76fee97-961f-ef11-840b-000d3abf969a";
    /// `UserId` that `WhoAmI` reports for tokens from the authorization code flow.
    pub const USER_ID: &'static str = "d1b0e7a2-4c3f-ef11-840b-000d3abf969a";
    /// `BusinessUnitId` that `WhoAmI` reports.
    pub const BUSINESS_UNIT_ID: &'static str = "d568ee97-961f-ef11-840b-000d3abf969a";
    /// `OrganizationId` that `WhoAmI` reports.
    pub const ORGANIZATION_ID: &'static str = "3a6e2f10-961f-ef11-a81c-000d3a4bd6c1";

    /// Starts an empty instance (no tables) on a free loopback port.
    pub async fn start() -> StandIn {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::new(server.uri())));
        Mock::given(any())
            .respond_with(Handler {
                state: Arc::clone(&state),
            })
            .named("d365 stand-in")
            .mount(&server)
            .await;
        StandIn { server, state }
    }

    /// Starts an instance seeded with `systemuser`, `account` and `contact` (see the
    /// [module docs](self#the-sample-data)).
    pub async fn with_sample_data() -> StandIn {
        let stand_in = Self::start().await;
        sample::load(&mut stand_in.lock());
        stand_in
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance URL (`http://127.0.0.1:PORT`), as a host would configure it.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// The Web API root (`http://127.0.0.1:PORT/api/data/v9.2/`).
    pub fn web_api_url(&self) -> String {
        format!("{}{API_PREFIX}", self.server.uri())
    }

    /// The authority base (`http://127.0.0.1:PORT`); the token endpoint is
    /// `<authority>/<tenant>/oauth2/v2.0/token`.
    pub fn authority(&self) -> String {
        self.server.uri()
    }

    /// `<authority>/<TENANT_ID>/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.server.uri(),
            Self::TENANT_ID
        )
    }

    /// `<authority>/<TENANT_ID>/oauth2/v2.0/authorize`. A `GET` with `response_type=code`,
    /// `client_id`, `redirect_uri`, `scope`, `state`, `code_challenge` and
    /// `code_challenge_method=S256` signs the user in at once and answers `302` to
    /// `redirect_uri?code=...&state=...`.
    pub fn authorize_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/authorize",
            self.server.uri(),
            Self::TENANT_ID
        )
    }

    /// The scope a confidential client asks for (`<url>/.default`).
    pub fn default_scope(&self) -> String {
        format!("{}/.default", self.server.uri())
    }

    /// Adds a table, or replaces the definition of one with the same logical name (its rows
    /// stay).
    ///
    /// # Panics
    /// If a lookup column has no target table.
    pub fn add_entity(&self, def: EntityDef) {
        self.lock().add_entity(def);
    }

    /// Inserts a row, or merges the given properties into the row with the same primary id, as
    /// a `PATCH` upsert does; returns the row's id (generated when the row has none).
    ///
    /// `row` is in Web API shape: lookups as `_x_value`, optionally with
    /// `_x_value@Microsoft.Dynamics.CRM.lookuplogicalname` (needed only when the lookup has
    /// several targets and the id is in none of them yet); formatted values may be given as
    /// `x@OData.Community.Display.V1.FormattedValue`, otherwise they are derived (option labels,
    /// `$1,234.50`, `6/12/2024 2:13 PM`, the looked-up row's primary name). Give Money, Decimal
    /// and BigInt values that an `f64` cannot hold as strings (`"922337203685477.5807"`): they
    /// are served as JSON numbers digit for digit. Columns left out of a new row are `null`.
    ///
    /// Each call is one change: it bumps the change version and the etag, and sets
    /// `modifiedon` to now (to the second) unless the row gives it.
    ///
    /// # Panics
    /// On an unknown table or column, or a value that does not fit its column.
    pub fn upsert(&self, entity: &str, row: serde_json::Value) -> String {
        self.lock().upsert(entity, row)
    }

    /// Deletes a row; the next delta reports it as `deleted`. Returns whether it existed.
    ///
    /// # Panics
    /// On an unknown table.
    pub fn delete(&self, entity: &str, id: &str) -> bool {
        self.lock().delete(entity, id)
    }

    /// The current rows of a table, as the Web API would return them without `$select` or
    /// annotations (etag, every column, Money kept as its literal string).
    ///
    /// # Panics
    /// On an unknown table.
    pub fn rows(&self, entity: &str) -> Vec<serde_json::Value> {
        let state = self.lock();
        let Some(table) = state.table(entity) else {
            panic!("stand-in: no table `{entity}`");
        };
        table
            .rows
            .iter()
            .map(|r| {
                let mut fields = r.fields.clone();
                fields.insert(
                    "@odata.etag".to_owned(),
                    serde_json::Value::String(format!("W/\"{}\"", r.version)),
                );
                serde_json::Value::Object(fields)
            })
            .collect()
    }

    /// Queues a one-shot fault for the next Web API request (`Throttle`, `Unavailable`,
    /// `Forbidden`, `Status`; several play in order), or applies an expiry at once
    /// (`ExpireDeltaTokens`, `ExpireAccessTokens`, `ExpireRefreshTokens`).
    pub fn inject(&self, fault: Fault) {
        let mut state = self.lock();
        match fault {
            f if f.is_queued() => state.faults.push_back(f),
            Fault::ExpireDeltaTokens => {
                state.version += 1;
                state.delta_floor = state.version;
            }
            Fault::ExpireAccessTokens => {
                for s in state.access_tokens.values_mut() {
                    *s = state::TokenState::Revoked;
                }
            }
            Fault::ExpireRefreshTokens => {
                for (s, _) in state.refresh_tokens.values_mut() {
                    *s = state::TokenState::Revoked;
                }
            }
            _ => {}
        }
    }

    /// Issues an access token directly (as the client credentials grant would), for tests that
    /// do not exercise authentication.
    pub fn issue_access_token(&self) -> String {
        self.lock().new_access_token(Self::APPLICATION_USER_ID)
    }

    /// Issues an authorization code as if a user signed in and consented, bound to
    /// `redirect_uri`, the PKCE `code_challenge` (S256) and `scope` (add `offline_access` to get
    /// a refresh token when redeeming it).
    pub fn issue_authorization_code(
        &self,
        redirect_uri: &str,
        code_challenge: &str,
        scope: &str,
    ) -> String {
        token::issue_code(&mut self.lock(), redirect_uri, code_challenge, scope)
    }

    /// Every request received so far (token endpoint and Web API), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The Web API requests received so far, oldest first.
    pub fn api_requests(&self) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.is_api_request())
            .cloned()
            .collect()
    }

    /// How many token requests the token endpoint received.
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// Forgets the recorded requests, the token request count and the
    /// [throttle counts](StandIn::throttled_requests).
    pub fn clear_requests(&self) {
        let mut state = self.lock();
        state.requests.clear();
        state.token_requests = 0;
        state.load.throttled = ThrottleCounts::default();
    }

    /// Adds `n` generated accounts shaped like a real table (see [`AccountShape`]), fast
    /// enough for 100,000s of rows; the `account` table of the
    /// [sample data](self#the-sample-data) is added first if there is no `account` table.
    ///
    /// Every row has the sample account columns (13 besides `accountid`) with varied values:
    /// names, numbers `AC-1000000` on, Money `revenue` as exact four-decimal literals (some
    /// with more digits than an `f64` holds), employees, industry, city, website, state and
    /// status, a primary contact and an owner picked from the `contact` and `systemuser`
    /// rows (`null` when there are none), `createdon` and `modifiedon`. Ids are sequential
    /// within each cluster in SQL Server order, as Dataverse hands them out
    /// (`1800bd86-ad1f-ef11-840b-000d3abf969a`, `1900bd86-ad1f-...`), and later calls continue
    /// the sequences. Each row is one change for change tracking. Generation is
    /// deterministic: the same calls give the same rows.
    ///
    /// # Panics
    /// If `shape.clusters` is 0, `shape.createdon_spike` is outside `0.0..=1.0`, or an
    /// `account` table exists without the sample account columns.
    pub fn add_accounts(&self, n: usize, shape: AccountShape) {
        bulk::add_accounts(&mut self.lock(), n, shape);
    }

    /// Sets the `x-ms-dop-hint` header (Dataverse's recommended degree of parallelism) that
    /// every Web API response carries; `None` (the default) sends none.
    pub fn set_dop_hint(&self, hint: Option<u32>) {
        self.lock().load.dop_hint = hint;
    }

    /// Sets the server time of a full page: 5000 rows with 13 or more columns (the primary
    /// id included). A page of records costs that in proportion to the rows it returns, and
    /// by its columns from the whole of it (13 columns and more) down to a quarter (the
    /// primary id alone), linearly in between; other requests cost nothing. The cost is
    /// served as a delay before the response (the instance keeps answering other requests
    /// meanwhile) and is what the [execution-time limit](ServiceLimits::execution_time)
    /// counts. Default: zero.
    pub fn set_server_time(&self, full_page: Duration) {
        self.lock().load.full_page = full_page;
    }

    /// Sets the service protection limits that Web API requests with a valid token are held
    /// to (see [`ServiceLimits`]); a refused request answers `429` with `Retry-After` (whole
    /// seconds, at least 1) and Dataverse's error body. Default:
    /// [`ServiceLimits::default`], no limits.
    pub fn set_limits(&self, limits: ServiceLimits) {
        self.lock().load.limits = limits;
    }

    /// How many Web API requests were answered `429`, by code, since the start or the last
    /// [`clear_requests`](StandIn::clear_requests): the limits' refusals and played
    /// [`Fault::Throttle`]s.
    pub fn throttled_requests(&self) -> ThrottleCounts {
        self.lock().load.throttled
    }

    /// How many queued faults have not played yet.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }
}

/// The one responder behind every request.
struct Handler {
    state: Arc<Mutex<State>>,
}

impl Respond for Handler {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let path_and_query = match request.url.query() {
            Some(q) => format!("{}?{q}", request.url.path()),
            None => request.url.path().to_owned(),
        };
        state.requests.push(RecordedRequest {
            method: request.method.to_string(),
            path_and_query,
            headers: request
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: request.body.clone(),
        });
        let (reply, delay) = route(&mut state, request);
        drop(state);
        reply.into_template().set_delay(delay)
    }
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The response to `request` and how long it takes the server (sent as a response delay).
fn route(state: &mut State, request: &Request) -> (Reply, Duration) {
    let path = request.url.path();
    if let Some(rest) = path.strip_prefix(API_PREFIX) {
        let (mut reply, delay) = api(state, request, rest);
        let id = state.guid();
        if let Some(dop) = state.load.dop_hint {
            reply = reply.header("x-ms-dop-hint", dop.to_string());
        }
        let reply = reply
            .header("OData-Version", "4.0")
            .header("x-ms-service-request-id", id.clone())
            .header("REQ_ID", id);
        return (reply, delay);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let reply = match (request.method.as_str(), segments.as_slice()) {
        ("POST", [tenant, "oauth2", "v2.0", "token"]) => token::token(
            state,
            tenant,
            header(request, "authorization"),
            &request.body,
        ),
        ("GET", [tenant, "oauth2", "v2.0", "authorize"]) => {
            token::authorize(state, tenant, &request.url)
        }
        _ => Reply {
            status: 404,
            content_type: "text/plain",
            headers: Vec::new(),
            body: format!("The stand-in serves no {} {path}", request.method),
        },
    };
    (reply, Duration::ZERO)
}

/// A Web API request: authorization, queued faults, the resource, then the service
/// protection limits on its server time.
fn api(state: &mut State, request: &Request, rest: &str) -> (Reply, Duration) {
    let bearer = header(request, "authorization").and_then(|h| h.strip_prefix("Bearer "));
    let valid = bearer
        .is_some_and(|t| state.access_tokens.get(t.trim()) == Some(&state::TokenState::Valid));
    if !valid {
        return (unauthorized(state, bearer.is_some()), Duration::ZERO);
    }
    if let Some(fault) = state.faults.pop_front() {
        if matches!(fault, Fault::Throttle { .. }) {
            state.load.throttled.number_of_requests += 1;
        }
        return (fault_reply(fault), Duration::ZERO);
    }
    let (reply, page) = resource(state, request, rest, bearer.unwrap_or_default())
        .unwrap_or_else(|e| (e.into_reply(), None));
    let cost = page.map_or(Duration::ZERO, |p| state.load.page_cost(p.rows, p.columns));
    match state.load.admit(Instant::now(), cost) {
        Ok(()) => (reply, cost),
        Err(refusal) => (refusal.into_reply(), Duration::ZERO),
    }
}

/// `401` for a request without a valid access token.
fn unauthorized(state: &State, has_bearer: bool) -> Reply {
    ApiError::new(
        401,
        "",
        if has_bearer {
            "The access token is invalid or has expired."
        } else {
            "Authorization header is missing; a Bearer token is required."
        },
    )
    .into_reply()
    .header(
        "WWW-Authenticate",
        format!(
            "Bearer authorization_uri={}/{}/oauth2/authorize, resource_id={}/",
            state.base_url,
            StandIn::TENANT_ID,
            state.base_url
        ),
    )
}

/// The resource a Web API request names, with the page of records it returned (if any).
fn resource(
    state: &mut State,
    request: &Request,
    rest: &str,
    bearer: &str,
) -> Result<(Reply, Option<odata::Page>), ApiError> {
    if request.method.as_str() != "GET" {
        return Err(ApiError::new(
            405,
            "0x8006088a",
            format!(
                "The stand-in serves only GET; {} is not supported.",
                request.method
            ),
        ));
    }
    if matches!(rest, "WhoAmI" | "WhoAmI()") {
        let who = serde_json::json!({
            "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", odata::api_base(state)),
            "BusinessUnitId": StandIn::BUSINESS_UNIT_ID,
            "UserId": who_am_i(bearer),
            "OrganizationId": StandIn::ORGANIZATION_ID,
        });
        return Ok((Reply::ok(who.to_string()), None));
    }
    if rest.starts_with("EntityDefinitions") {
        return metadata::get(state, rest, &request.url).map(|reply| (reply, None));
    }
    if rest == "RetrieveTotalRecordCount(EntityNames=@p)" {
        return record_counts(state, &request.url).map(|reply| (reply, None));
    }
    let prefer: Vec<String> = request
        .headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let (reply, page) = odata::get(state, rest, &request.url, &prefer::Prefs::parse(&prefer))?;
    Ok((reply, Some(page)))
}

/// `RetrieveTotalRecordCount(EntityNames=@p)?@p=['account',...]`: the tables' row counts
/// (Dataverse's are a snapshot up to a day old; the stand-in's are current).
fn record_counts(state: &State, url: &url::Url) -> Result<Reply, ApiError> {
    let names = url
        .query_pairs()
        .find(|(key, _)| key == "@p")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let names: Vec<String> = names
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|name| name.trim().trim_matches('\'').to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    let mut values = Vec::new();
    for name in &names {
        let table = state.table(name).ok_or_else(|| {
            ApiError::bad_request(
                "0x80040217",
                format!("The entity with a name = '{name}' was not found in the MetadataCache."),
            )
        })?;
        values.push(table.rows.len());
    }
    let body = serde_json::json!({
        "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse", odata::api_base(state)),
        "EntityRecordCountCollection": {
            "Count": names.len(), "IsReadOnly": false, "Keys": names, "Values": values
        }
    });
    Ok(Reply::ok(body.to_string()))
}

/// The user a token was issued to, read back from its claims.
fn who_am_i(token: &str) -> String {
    use base64::Engine as _;
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|c| c["sub"].as_str().map(str::to_owned))
        .unwrap_or_else(|| StandIn::APPLICATION_USER_ID.to_owned())
}

fn fault_reply(fault: Fault) -> Reply {
    match fault {
        Fault::Throttle { retry_after_secs } => ApiError::new(
            429,
            limits::NUMBER_OF_REQUESTS,
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        )
        .into_reply()
        .header("Retry-After", retry_after_secs.to_string()),
        Fault::Unavailable => Reply {
            status: 503,
            content_type: "text/html",
            headers: Vec::new(),
            body: "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1><p>The service is temporarily unavailable. Please try again later.</p></body></html>".to_owned(),
        },
        Fault::Forbidden => ApiError::new(403, "0x80072560", "The user is not a member of the organization.").into_reply(),
        Fault::Status { status, body } => Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        },
        _ => ApiError::new(500, "", "unexpected fault").into_reply(),
    }
}
