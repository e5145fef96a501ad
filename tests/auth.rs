//! The authorizers against a wiremock token endpoint (Entra ID, and the managed identity
//! endpoints of IMDS and App Service) and Dataverse for WhoAmI. The real instance metadata
//! address is never contacted: every managed identity test points the endpoint at wiremock.
//!
//! Every server mounts a catch-all that fails the test on any request nobody expected.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use d365_connector::testkit::VirtualClock;
use d365_connector::{
    AccessToken, AuthorizationCodeAuthorizer, AuthorizationRequest, AuthorizeOptions, Authorizer,
    ClientCredential, ClientCredentialsAuthorizer, ClientOptions, ClientSecret, Clock, Cloud,
    Connection, DEFAULT_IMDS_ENDPOINT, DataverseClient, EntraApp, ErrorKind, IdentityHeader,
    InstanceUrl, ManagedIdentityAuthorizer, ManagedIdentityEndpoint, ManagedIdentityId,
    MemoryTokenStore, Prompt, RefreshToken, RetryPolicy, TokenSet, TokenStore, WorkloadIdentity,
    who_am_i,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const INSTANCE: &str = "https://contoso.crm4.dynamics.com";
const OTHER_INSTANCE: &str = "https://fabrikam.crm.dynamics.com";
const SECRET: &str = "s3cr3t-CLIENT-value~xyz";
const REDIRECT: &str = "http://localhost:8400/callback";

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

/// A stand-in whose catch-all fails the test (on drop) if anything unexpected arrives.
async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(418).set_body_string("unexpected request"))
        .with_priority(u8::MAX)
        .expect(0)
        .named("catch-all: no other request is expected")
        .mount(&server)
        .await;
    server
}

fn connection(server: &MockServer, instance: &str) -> Connection {
    Connection::builder("test", instance)
        .with_authority(server.uri())
        .build()
        .unwrap()
}

fn public_app() -> EntraApp {
    EntraApp::builder(TENANT, CLIENT_ID)
        .with_redirect_uri(REDIRECT)
        .build()
        .unwrap()
}

fn confidential_app() -> EntraApp {
    EntraApp::builder(TENANT, CLIENT_ID)
        .with_client_secret(ClientSecret::new(SECRET))
        .with_redirect_uri(REDIRECT)
        .build()
        .unwrap()
}

/// Client options whose waits are virtual, and their clock.
fn virtual_options() -> (ClientOptions, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new());
    (ClientOptions::default().with_clock(clock.clone()), clock)
}

fn tokens_body(access: &str, refresh: Option<&str>, expires_in: Value) -> Value {
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": 3599,
        "access_token": access,
        "scope": format!("{INSTANCE}/user_impersonation"),
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    body
}

fn entra_error(error: &str, aadsts: u64, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": error,
        "error_description": format!("AADSTS{aadsts}: {description}\r\nTrace ID: trace-123\r\nCorrelation ID: corr-456\r\nTimestamp: 2025-01-01 00:00:00Z"),
        "error_codes": [aadsts],
        "timestamp": "2025-01-01 00:00:00Z",
        "trace_id": "trace-123",
        "correlation_id": "corr-456",
    }))
}

async fn mount_token(server: &MockServer, response: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(response)
        .expect(times)
        .named("token endpoint")
        .mount(server)
        .await;
}

fn form(request: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

/// The forms the token endpoint received, in order.
async fn token_forms(server: &MockServer) -> Vec<BTreeMap<String, String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == token_path())
        .inspect(|r| {
            assert_eq!(
                r.headers.get("content-type").unwrap(),
                "application/x-www-form-urlencoded"
            )
        })
        .map(form)
        .collect()
}

fn keys(form: &BTreeMap<String, String>) -> Vec<&str> {
    form.keys().map(String::as_str).collect()
}

fn instance() -> InstanceUrl {
    InstanceUrl::parse(INSTANCE).unwrap()
}

fn stored_tokens(expires_in_minutes: i64, refresh: &str) -> TokenSet {
    TokenSet::new(
        instance(),
        AccessToken::new("old-access"),
        Utc::now() + chrono::Duration::minutes(expires_in_minutes),
    )
    .with_refresh_token(RefreshToken::new(refresh))
    .with_scopes([format!("{INSTANCE}/user_impersonation")])
}

fn query(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn assert_no_secret(text: &str) {
    for secret in [
        SECRET,
        "the-code",
        "rt-1",
        "rt-2",
        "old-access",
        "new-access",
        "cc-access",
    ] {
        assert!(!text.contains(secret), "`{text}` leaks `{secret}`");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Authorization code flow with PKCE

#[tokio::test]
async fn code_flow_builds_the_authorize_url_and_redeems_the_code_with_the_verifier() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(tokens_body(
            "new-access",
            Some("rt-1"),
            json!("3599"), // a string, as some proxies send it
        )),
        1,
    )
    .await;
    let store = Arc::new(MemoryTokenStore::new());
    let (options, _) = virtual_options();
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), public_app())
            .with_token_store(store.clone())
            .with_client_options(options)
            .build()
            .unwrap();

    let request = authorizer
        .authorization_request(
            &AuthorizeOptions::new()
                .with_prompt(Prompt::SelectAccount)
                .with_login_hint("admin@contoso.com"),
        )
        .unwrap();
    let url = request.url().clone();
    assert_eq!(url.path(), format!("/{TENANT}/oauth2/v2.0/authorize"));
    assert_eq!(
        url.origin(),
        url::Url::parse(&server.uri()).unwrap().origin()
    );
    let params = query(&url);
    assert_eq!(
        params.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "client_id",
            "code_challenge",
            "code_challenge_method",
            "login_hint",
            "prompt",
            "redirect_uri",
            "response_mode",
            "response_type",
            "scope",
            "state"
        ]
    );
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["response_mode"], "query");
    assert_eq!(params["redirect_uri"], REDIRECT);
    assert_eq!(
        params["scope"],
        format!("{INSTANCE}/user_impersonation offline_access")
    );
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["prompt"], "select_account");
    assert_eq!(params["login_hint"], "admin@contoso.com");
    assert_eq!(params["state"], request.state());
    assert!(request.state().len() >= 22, "state is 128 random bits");
    let challenge = params["code_challenge"].clone();

    // A second sign-in gets a different state and challenge.
    let other = authorizer
        .authorization_request(&AuthorizeOptions::new())
        .unwrap();
    assert_ne!(other.state(), request.state());
    assert_ne!(query(other.url())["code_challenge"], challenge);

    let redirect = format!(
        "{REDIRECT}?code=the-code&state={}&session_state=x",
        request.state()
    );
    let tokens = authorizer
        .complete_authorization(request, &redirect)
        .await
        .unwrap();

    let forms = token_forms(&server).await;
    assert_eq!(forms.len(), 1);
    let sent = &forms[0];
    assert_eq!(
        keys(sent),
        [
            "client_id",
            "code",
            "code_verifier",
            "grant_type",
            "redirect_uri",
            "scope"
        ],
        "a public client sends no client_secret"
    );
    assert_eq!(sent["grant_type"], "authorization_code");
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(sent["code"], "the-code");
    assert_eq!(sent["redirect_uri"], REDIRECT);
    assert_eq!(
        sent["scope"],
        format!("{INSTANCE}/user_impersonation offline_access")
    );
    let verifier = &sent["code_verifier"];
    assert_eq!(verifier.len(), 43);
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        challenge,
        "the S256 challenge is BASE64URL(SHA256(verifier))"
    );

    assert_eq!(tokens.instance(), &instance());
    assert_eq!(tokens.access_token().secret(), "new-access");
    assert_eq!(tokens.refresh_token().unwrap().secret(), "rt-1");
    assert_eq!(tokens.scopes(), [format!("{INSTANCE}/user_impersonation")]);
    let lifetime = tokens.expires_at() - Utc::now();
    assert!(
        lifetime > chrono::Duration::seconds(3590) && lifetime <= chrono::Duration::seconds(3599),
        "{lifetime}"
    );
    assert_eq!(store.tokens().as_ref(), Some(&tokens), "saved to the store");

    // From now on the token is served from the cache: no further token request (expect(1)).
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "new-access"
    );

    // The token set is a serde type the host can persist and read back.
    let json = serde_json::to_string(&tokens).unwrap();
    let back: TokenSet = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tokens);
}

#[tokio::test]
async fn confidential_code_flow_sends_the_client_secret_and_asks_for_dot_default() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(tokens_body(
            "new-access",
            Some("rt-1"),
            json!(3599),
        )),
        1,
    )
    .await;
    let (options, _) = virtual_options();
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .with_client_options(options)
            .build()
            .unwrap();
    let request = authorizer
        .authorization_request(&AuthorizeOptions::new())
        .unwrap();
    let params = query(request.url());
    assert_eq!(
        params["scope"],
        format!("{INSTANCE}/.default offline_access")
    );
    assert!(!params.contains_key("prompt") && !params.contains_key("login_hint"));
    assert!(!request.url().as_str().contains(SECRET));
    // The host may hand over just the query string.
    let redirect = format!("code=the-code&state={}", request.state());
    authorizer
        .complete_authorization(request, &redirect)
        .await
        .unwrap();
    let sent = &token_forms(&server).await[0];
    assert_eq!(
        keys(sent),
        [
            "client_id",
            "client_secret",
            "code",
            "code_verifier",
            "grant_type",
            "redirect_uri",
            "scope"
        ]
    );
    assert_eq!(sent["client_secret"], SECRET);
    assert_eq!(sent["scope"], format!("{INSTANCE}/.default offline_access"));
}

#[tokio::test]
async fn a_redirect_with_another_state_is_refused_before_any_token_request() {
    let server = server().await; // the catch-all fails the test on any token request
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), public_app())
            .build()
            .unwrap();
    for redirect in [
        format!("{REDIRECT}?code=the-code&state=forged"),
        format!("{REDIRECT}?code=the-code"),
    ] {
        let request = authorizer
            .authorization_request(&AuthorizeOptions::new())
            .unwrap();
        let error = authorizer
            .complete_authorization(request, &redirect)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Auth);
        assert!(error.to_string().contains("CSRF"), "{error}");
        assert_no_secret(&format!("{error} {error:?}"));
    }
    assert!(authorizer.token_set().await.unwrap().is_none());
}

#[tokio::test]
async fn an_error_redirect_becomes_guidance() {
    let server = server().await;
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), public_app())
            .build()
            .unwrap();
    let cases = [
        (
            "consent_required",
            "AADSTS65001: The user or administrator has not consented to use the application.",
            "admin consent",
        ),
        (
            "invalid_client",
            "AADSTS65001: The user or administrator has not consented.",
            "application user",
        ),
        (
            "access_denied",
            "AADSTS65004: User declined to consent to access the app.",
            "cancelled or consent was declined",
        ),
        (
            "interaction_required",
            "AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication.",
            "sign in interactively",
        ),
    ];
    for (error, description, expected) in cases {
        let request = authorizer
            .authorization_request(&AuthorizeOptions::new())
            .unwrap();
        let mut redirect = url::Url::parse(REDIRECT).unwrap();
        redirect
            .query_pairs_mut()
            .append_pair("error", error)
            .append_pair("error_description", description)
            .append_pair("state", request.state());
        let failure = authorizer
            .complete_authorization(request, redirect.as_str())
            .await
            .unwrap_err();
        assert_eq!(failure.kind(), ErrorKind::Auth, "{error}");
        assert!(failure.to_string().contains(expected), "{error}: {failure}");
        assert_eq!(failure.service_code(), Some(error));
        assert_eq!(failure.service_message(), Some(description));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Client credentials

#[tokio::test]
async fn client_credentials_sends_the_exact_form_and_caches_the_token() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
            "access_token": "cc-access"
        })),
        1,
    )
    .await;
    let authorizer =
        ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .build()
            .unwrap();
    for _ in 0..3 {
        assert_eq!(
            authorizer.access_token().await.unwrap().secret(),
            "cc-access"
        );
    }
    let forms = token_forms(&server).await;
    assert_eq!(forms.len(), 1, "the token is cached");
    assert_eq!(
        keys(&forms[0]),
        ["client_id", "client_secret", "grant_type", "scope"]
    );
    assert_eq!(forms[0]["grant_type"], "client_credentials");
    assert_eq!(forms[0]["client_id"], CLIENT_ID);
    assert_eq!(forms[0]["client_secret"], SECRET);
    assert_eq!(forms[0]["scope"], format!("{INSTANCE}/.default"));
    let tokens = authorizer.token_set().await.unwrap().unwrap();
    assert!(tokens.refresh_token().is_none());
    assert_eq!(tokens.scopes(), [format!("{INSTANCE}/.default")]);
}

#[tokio::test]
async fn client_credentials_need_a_secret_and_one_tenant() {
    let server = server().await;
    let connection = connection(&server, INSTANCE);
    let error = ClientCredentialsAuthorizer::builder(&connection, public_app())
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("client secret"), "{error}");
    let multi = EntraApp::builder("organizations", CLIENT_ID)
        .with_client_secret(ClientSecret::new(SECRET))
        .build()
        .unwrap();
    let error = ClientCredentialsAuthorizer::builder(&connection, multi)
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("tenant"), "{error}");
    let error = AuthorizationCodeAuthorizer::builder(
        &connection,
        EntraApp::builder(TENANT, CLIENT_ID).build().unwrap(),
    )
    .build()
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("redirect URI"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// 3. Token lifecycle

#[tokio::test]
async fn refreshes_ahead_of_expiry_within_the_margin_only() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(tokens_body("new-access", None, json!(3599))),
        1,
    )
    .await;
    let connection = connection(&server, INSTANCE);

    // 4 minutes left, 1 minute margin: the cached token is used.
    let relaxed = AuthorizationCodeAuthorizer::builder(&connection, public_app())
        .with_token_set(stored_tokens(4, "rt-1"))
        .with_refresh_margin(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(relaxed.access_token().await.unwrap().secret(), "old-access");

    // 4 minutes left, default 5 minute margin: refreshed first.
    let store = Arc::new(MemoryTokenStore::new());
    let eager = AuthorizationCodeAuthorizer::builder(&connection, public_app())
        .with_token_set(stored_tokens(4, "rt-1"))
        .with_token_store(store.clone())
        .build()
        .unwrap();
    assert_eq!(eager.access_token().await.unwrap().secret(), "new-access");
    let forms = token_forms(&server).await;
    assert_eq!(forms.len(), 1);
    assert_eq!(
        keys(&forms[0]),
        ["client_id", "grant_type", "refresh_token", "scope"]
    );
    assert_eq!(forms[0]["grant_type"], "refresh_token");
    assert_eq!(forms[0]["refresh_token"], "rt-1");
    assert_eq!(
        forms[0]["scope"],
        format!("{INSTANCE}/user_impersonation offline_access")
    );
    // Entra did not rotate the refresh token: the old one is kept.
    let saved = store.tokens().unwrap();
    assert_eq!(saved.refresh_token().unwrap().secret(), "rt-1");
    assert_eq!(saved.access_token().secret(), "new-access");
}

#[tokio::test]
async fn a_rotated_refresh_token_reaches_the_store_and_is_used_next() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(|request: &Request| {
            let sent = form(request);
            let next = if sent["refresh_token"] == "rt-1" {
                "rt-2"
            } else {
                "rt-3"
            };
            ResponseTemplate::new(200).set_body_json(tokens_body(
                "new-access",
                Some(next),
                json!(600),
            ))
        })
        .expect(2)
        .mount(&server)
        .await;
    let store = Arc::new(MemoryTokenStore::with_tokens(stored_tokens(-1, "rt-1")));
    let clock = Arc::new(VirtualClock::new());
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .with_token_store(store.clone())
            .with_client_options(ClientOptions::default().with_clock(clock.clone()))
            .build()
            .unwrap();
    // Loaded from the store (a restart), expired, so refreshed with rt-1.
    authorizer.access_token().await.unwrap();
    assert_eq!(
        store.tokens().unwrap().refresh_token().unwrap().secret(),
        "rt-2",
        "the rotated refresh token was saved"
    );
    // 10 minutes later the next refresh uses the rotated token.
    clock.sleep(Duration::from_secs(600)).await;
    authorizer.access_token().await.unwrap();
    let forms = token_forms(&server).await;
    assert_eq!(forms[0]["refresh_token"], "rt-1");
    assert_eq!(forms[1]["refresh_token"], "rt-2");
    assert_eq!(forms[1]["client_secret"], SECRET);
    assert_eq!(
        store.tokens().unwrap().refresh_token().unwrap().secret(),
        "rt-3"
    );
}

/// A store whose first save fails (the host's database is briefly down).
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemoryTokenStore,
    failed_once: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl d365_connector::TokenStore for FlakyStore {
    async fn load(&self) -> d365_connector::Result<Option<TokenSet>> {
        self.inner.load().await
    }

    async fn save(&self, tokens: &TokenSet) -> d365_connector::Result<()> {
        if !self
            .failed_once
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(d365_connector::Error::new(
                ErrorKind::Store,
                "the token database is unavailable",
            )
            .with_retryable(true));
        }
        self.inner.save(tokens).await
    }

    async fn clear(&self) -> d365_connector::Result<()> {
        self.inner.clear().await
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_failed_save_and_is_saved_next_time() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(tokens_body(
            "new-access",
            Some("rt-2"),
            json!(3599),
        )),
        1,
    )
    .await;
    let store = Arc::new(FlakyStore {
        inner: MemoryTokenStore::with_tokens(stored_tokens(-1, "rt-1")),
        ..FlakyStore::default()
    });
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .with_token_store(store.clone())
            .build()
            .unwrap();

    let error = authorizer.access_token().await.unwrap_err();
    assert!(error.to_string().contains("save"), "{error}");
    assert_eq!(
        error.kind(),
        ErrorKind::Store,
        "the host's store failed, not Entra"
    );
    assert!(error.is_retryable(), "the host marked its outage retryable");
    assert_eq!(
        std::error::Error::source(&error).map(|s| s.to_string()),
        Some("the token database is unavailable".to_owned())
    );

    // The next call saves the rotated set; it does not refresh again with the spent rt-1.
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "new-access"
    );
    assert_eq!(
        store
            .inner
            .tokens()
            .unwrap()
            .refresh_token()
            .unwrap()
            .secret(),
        "rt-2"
    );
    assert_eq!(token_forms(&server).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_tasks_after_expiry_make_exactly_one_token_request() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(tokens_body("new-access", Some("rt-2"), json!(3599)))
            .set_delay(Duration::from_millis(200)),
        1,
    )
    .await;
    let clock = Arc::new(VirtualClock::new());
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), public_app())
            .with_token_set(stored_tokens(60, "rt-1"))
            .with_client_options(ClientOptions::default().with_clock(clock.clone()))
            .build()
            .unwrap();
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "old-access"
    );
    clock.sleep(Duration::from_secs(3600)).await; // the token has expired now

    let authorizer: Arc<dyn Authorizer> = Arc::new(authorizer);
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let authorizer = authorizer.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                authorizer.access_token().await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().secret(), "new-access");
    }
    assert_eq!(token_forms(&server).await.len(), 1);
}

#[tokio::test]
async fn the_clients_401_path_refreshes_once_and_retries() {
    let server = server().await;
    let instance = server.uri();
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(tokens_body("new-access", None, json!(3599))),
        1,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .and(header("authorization", "Bearer old-access"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.context": format!("{instance}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"),
            "BusinessUnitId": "4AB3F5C8-1D2E-4F60-9A7B-8C9D0E1F2A3B",
            "UserId": "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7",
            "OrganizationId": "a1b2c3d4-e5f6-4789-abcd-ef0123456789"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let connection = connection(&server, &instance);
    let tokens = TokenSet::new(
        connection.instance().clone(),
        AccessToken::new("old-access"),
        Utc::now() + chrono::Duration::hours(1),
    )
    .with_refresh_token(RefreshToken::new("rt-1"));
    let authorizer = AuthorizationCodeAuthorizer::builder(&connection, public_app())
        .with_token_set(tokens)
        .build()
        .unwrap();
    let client = DataverseClient::new(connection, Arc::new(authorizer.clone())).unwrap();
    let me = who_am_i(&client).await.unwrap();
    assert_eq!(me.user_id, "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7");
    assert_eq!(me.business_unit_id, "4ab3f5c8-1d2e-4f60-9a7b-8c9d0e1f2a3b");
    assert_eq!(me.organization_id, "a1b2c3d4-e5f6-4789-abcd-ef0123456789");
    // No scopes were recorded, so the refresh asks for .default on the instance.
    assert_eq!(
        token_forms(&server).await[0]["scope"],
        format!("{instance}/.default offline_access")
    );
    // A task that still holds the refused token gets the new one without another request.
    let again = authorizer
        .refresh_rejected(&AccessToken::new("old-access"))
        .await
        .unwrap();
    assert_eq!(again.secret(), "new-access");
}

#[tokio::test]
async fn an_expired_set_without_refresh_token_asks_to_reauthorize() {
    let server = server().await;
    let tokens = TokenSet::new(
        instance(),
        AccessToken::new("old-access"),
        Utc::now() - chrono::Duration::minutes(1),
    );
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), public_app())
            .with_token_set(tokens)
            .build()
            .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(error.to_string().contains("offline_access"), "{error}");
    assert!(error.to_string().contains("re-authorize"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// 4. Connection binding and revocation

#[tokio::test]
async fn a_token_set_of_another_instance_is_refused() {
    let server = server().await;
    let other = connection(&server, OTHER_INSTANCE);
    let error = AuthorizationCodeAuthorizer::builder(&other, public_app())
        .with_token_set(stored_tokens(60, "rt-1"))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error.to_string().contains("bound to one instance"),
        "{error}"
    );
    assert!(
        error.to_string().contains("contoso.crm4.dynamics.com"),
        "{error}"
    );

    // The same through a store (a restart with the wrong store) and through set_token_set.
    let store = Arc::new(MemoryTokenStore::with_tokens(stored_tokens(60, "rt-1")));
    let authorizer = AuthorizationCodeAuthorizer::builder(&other, public_app())
        .with_token_store(store)
        .build()
        .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error.to_string().contains("bound to one instance"),
        "{error}"
    );
    let error = authorizer
        .set_token_set(stored_tokens(60, "rt-1"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error.to_string().contains("bound to one instance"),
        "{error}"
    );
}

#[tokio::test]
async fn revoke_forgets_the_tokens_until_authorized_again() {
    let server = server().await;
    let store = Arc::new(MemoryTokenStore::with_tokens(stored_tokens(60, "rt-1")));
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), public_app())
            .with_token_store(store.clone())
            .build()
            .unwrap();
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "old-access"
    );

    authorizer.revoke().await.unwrap();
    assert!(store.tokens().is_none(), "the store was told");
    for _ in 0..2 {
        let error = authorizer.access_token().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Auth);
        assert!(
            error.to_string().contains("connection is not authorized"),
            "{error}"
        );
        let error = authorizer
            .refresh_rejected(&AccessToken::new("old-access"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Auth);
        assert!(
            error.to_string().contains("connection is not authorized"),
            "{error}"
        );
    }
    // Even if the host's store still held tokens, a revoked connection does not use them.
    store.save(&stored_tokens(60, "rt-1")).await.unwrap();
    assert!(authorizer.access_token().await.is_err());

    // Authorized again.
    authorizer
        .set_token_set(stored_tokens(60, "rt-2"))
        .await
        .unwrap();
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "old-access"
    );
    assert_eq!(
        store.tokens().unwrap().refresh_token().unwrap().secret(),
        "rt-2"
    );
}

#[tokio::test]
async fn a_new_code_flow_connection_is_not_authorized() {
    let server = server().await;
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), public_app())
            .build()
            .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        error.to_string().contains("connection is not authorized"),
        "{error}"
    );
}

#[tokio::test]
async fn client_credentials_revoke_and_authorize_again() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "access_token": "cc-access"
        })),
        2,
    )
    .await;
    let authorizer =
        ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .build()
            .unwrap();
    authorizer.access_token().await.unwrap();
    authorizer.revoke().await.unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        error.to_string().contains("connection is not authorized"),
        "{error}"
    );
    authorizer.authorize().await.unwrap();
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "cc-access"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Entra errors turned into guidance

#[tokio::test]
async fn entra_errors_become_guidance_and_are_not_retried() {
    let cases: [(&str, u64, &str, bool, ErrorKind, &str); 7] = [
        (
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
            true,
            ErrorKind::Auth,
            "check the app registration's client id and secret",
        ),
        (
            "invalid_client",
            7000222,
            "The provided client secret keys for app are expired.",
            true,
            ErrorKind::Auth,
            "client secret has expired",
        ),
        (
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity.",
            false,
            ErrorKind::Auth,
            "expired or was revoked; re-authorize the connection",
        ),
        (
            "invalid_grant",
            65001,
            "The user or administrator has not consented to use the application.",
            false,
            ErrorKind::Auth,
            "admin consent",
        ),
        (
            "consent_required",
            65001,
            "The user or administrator has not consented to use the application.",
            false,
            ErrorKind::Auth,
            "or connect with client credentials through an application user",
        ),
        (
            "interaction_required",
            50076,
            "Due to a configuration change made by your administrator, you must use multi-factor authentication.",
            false,
            ErrorKind::Auth,
            "sign in interactively again",
        ),
        (
            "unauthorized_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
            false,
            ErrorKind::Auth,
            "not allowed to use this flow",
        ),
    ];
    for (error, aadsts, description, client_credentials, kind, expected) in cases {
        let server = server().await;
        mount_token(&server, entra_error(error, aadsts, description), 1).await;
        let (options, _) = virtual_options();
        let connection = connection(&server, INSTANCE);
        let authorizer: Arc<dyn Authorizer> = if client_credentials {
            Arc::new(
                ClientCredentialsAuthorizer::builder(&connection, confidential_app())
                    .with_client_options(options)
                    .build()
                    .unwrap(),
            )
        } else {
            Arc::new(
                AuthorizationCodeAuthorizer::builder(&connection, confidential_app())
                    .with_token_set(stored_tokens(-1, "rt-1"))
                    .with_client_options(options)
                    .build()
                    .unwrap(),
            )
        };
        let failure = authorizer.access_token().await.unwrap_err();
        let message = failure.to_string();
        assert_eq!(failure.kind(), kind, "{error}: {message}");
        assert!(message.contains(expected), "{error}: {message}");
        assert!(
            message.contains(&format!("{error}, AADSTS{aadsts}")),
            "{message}"
        );
        assert_eq!(failure.status(), Some(400));
        assert_eq!(failure.service_code(), Some(error));
        assert!(failure.service_message().unwrap().contains(description));
        assert_eq!(failure.request_id(), Some("trace-123"), "trace_id kept");
        assert!(!failure.is_retryable());
        assert_no_secret(&format!("{failure} {failure:?}"));
        drop(server); // verifies exactly one request: not retried
    }
}

#[tokio::test]
async fn a_secret_echoed_in_an_error_description_is_redacted() {
    let server = server().await;
    mount_token(
        &server,
        entra_error(
            "invalid_grant",
            9002313,
            "Invalid request. Malformed refresh token rt-1 for client.",
        ),
        1,
    )
    .await;
    let authorizer =
        AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .with_token_set(stored_tokens(-1, "rt-1"))
            .build()
            .unwrap();
    let failure = authorizer.access_token().await.unwrap_err();
    assert!(failure.service_message().unwrap().contains("[redacted]"));
    assert_no_secret(&format!("{failure} {failure:?}"));
}

#[tokio::test]
async fn temporarily_unavailable_and_5xx_are_retried_by_the_policy() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(entra_error(
            "temporarily_unavailable",
            50196,
            "The server is temporarily too busy to handle the request.",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("retry-after", "7")
                .set_body_string("<html><title>Service Unavailable</title></html>"),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "access_token": "cc-access"
        })),
        1,
    )
    .await;
    let (options, clock) = virtual_options();
    let authorizer =
        ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .with_client_options(options)
            .build()
            .unwrap();
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "cc-access"
    );
    assert_eq!(token_forms(&server).await.len(), 3);
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps[1] >= Duration::from_secs(7),
        "Retry-After honoured: {sleeps:?}"
    );
}

#[tokio::test]
async fn a_lasting_outage_gives_up_with_a_retryable_error() {
    let server = server().await;
    mount_token(&server, ResponseTemplate::new(502), 3).await;
    let (options, _) = virtual_options();
    let authorizer =
        ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .with_client_options(
                options.with_retry_policy(RetryPolicy::default().with_max_attempts(3)),
            )
            .build()
            .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Service);
    assert!(error.is_retryable());
    assert_eq!(error.status(), Some(502));
    assert!(error.is_exhausted(), "{error}");
    assert!(
        error.to_string().contains("temporarily unavailable"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Clouds

#[test]
fn the_authority_follows_the_cloud_and_can_be_overridden() {
    let cases = [
        (
            "https://contoso.crm4.dynamics.com",
            Cloud::Commercial,
            "https://login.microsoftonline.com/",
        ),
        (
            "https://contoso.crm9.dynamics.com",
            Cloud::Commercial,
            "https://login.microsoftonline.com/",
        ),
        (
            "https://contoso.crm.microsoftdynamics.us",
            Cloud::UsGovHigh,
            "https://login.microsoftonline.us/",
        ),
        (
            "https://contoso.crm.appsplatform.us",
            Cloud::UsGovDod,
            "https://login.microsoftonline.us/",
        ),
        (
            "https://contoso.crm.dynamics.cn",
            Cloud::China,
            "https://login.partner.microsoftonline.cn/",
        ),
    ];
    for (instance, cloud, authority) in cases {
        let connection = Connection::builder("c", instance).build().unwrap();
        assert_eq!(connection.cloud(), cloud);
        let authorizer = AuthorizationCodeAuthorizer::builder(&connection, public_app())
            .build()
            .unwrap();
        let request = authorizer
            .authorization_request(&AuthorizeOptions::new())
            .unwrap();
        assert_eq!(
            request.url().as_str().split('?').next().unwrap(),
            format!("{authority}{TENANT}/oauth2/v2.0/authorize"),
            "{instance}"
        );
        assert_eq!(
            query(request.url())["scope"],
            format!("{instance}/user_impersonation offline_access")
        );
    }
    // Overridden with a loopback http stand-in (as every other test here does), or refused.
    let local = Connection::builder("c", INSTANCE)
        .with_authority("http://127.0.0.1:9/entra")
        .build()
        .unwrap();
    let request = AuthorizationCodeAuthorizer::builder(&local, public_app())
        .build()
        .unwrap()
        .authorization_request(&AuthorizeOptions::new())
        .unwrap();
    assert!(request.url().as_str().starts_with(&format!(
        "http://127.0.0.1:9/entra/{TENANT}/oauth2/v2.0/authorize?"
    )));
    assert!(
        Connection::builder("c", INSTANCE)
            .with_authority("http://login.example.com")
            .build()
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Test the connection

#[tokio::test]
async fn who_am_i_explains_a_missing_membership() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": {"code": "0x80072560", "message": "The user is not a member of the organization."}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let connection = connection(&server, &server.uri());
    let tokens = TokenSet::new(
        connection.instance().clone(),
        AccessToken::new("old-access"),
        Utc::now() + chrono::Duration::hours(1),
    );
    let authorizer = AuthorizationCodeAuthorizer::builder(&connection, public_app())
        .with_token_set(tokens)
        .build()
        .unwrap();
    let options = ClientOptions::default().with_retry_policy(RetryPolicy::disabled());
    let client =
        DataverseClient::with_options(connection, Arc::new(authorizer.clone()), options).unwrap();
    let error = who_am_i(&client).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert_eq!(error.service_code(), Some("0x80072560"));
    assert!(
        error
            .to_string()
            .contains("not a member of the organization"),
        "{error}"
    );
    assert!(error.to_string().contains("security role"), "{error}");

    // After a revoke, the test says the connection is not authorized, and sends nothing.
    authorizer.revoke().await.unwrap();
    let error = who_am_i(&client).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        error.to_string().contains("connection is not authorized"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets never leak through Debug

#[tokio::test]
async fn debug_of_every_auth_type_leaks_no_secret() {
    let server = server().await;
    let connection = connection(&server, INSTANCE);
    let app = confidential_app();
    let tokens = stored_tokens(60, "rt-1");
    let builder = AuthorizationCodeAuthorizer::builder(&connection, app.clone())
        .with_token_set(tokens.clone());
    let builder_debug = format!("{builder:?}");
    let authorizer = builder.build().unwrap();
    authorizer.access_token().await.unwrap();
    let request = authorizer
        .authorization_request(&AuthorizeOptions::new())
        .unwrap();
    let store = MemoryTokenStore::with_tokens(tokens.clone());
    let app_builder =
        EntraApp::builder(TENANT, CLIENT_ID).with_client_secret(ClientSecret::new(SECRET));
    let cc = ClientCredentialsAuthorizer::builder(&connection, app.clone())
        .build()
        .unwrap();
    let printed = [
        format!("{app:?}"),
        format!("{app_builder:?}"),
        format!("{tokens:?}"),
        format!("{tokens:#?}"),
        format!("{authorizer:?}"),
        format!("{cc:?}"),
        builder_debug,
        format!("{request:?}"),
        format!("{store:?}"),
    ];
    for text in &printed {
        assert_no_secret(text);
        assert!(!text.contains(request.state()), "{text} shows the state");
    }
    assert!(printed[0].contains("[redacted]"), "{}", printed[0]);
    assert!(
        printed[2].contains("contoso.crm4.dynamics.com"),
        "{}",
        printed[2]
    );
    assert!(
        printed[7].contains("PkceVerifier([redacted])"),
        "{}",
        printed[7]
    );
}

#[tokio::test]
async fn an_absurd_expires_in_or_margin_does_not_panic() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": "18446744073709551615",
            "access_token": "long-lived"
        })),
        1,
    )
    .await;
    let authorizer =
        ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), confidential_app())
            .with_refresh_margin(Duration::MAX)
            .build()
            .unwrap();

    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "long-lived"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Certificate credentials

/// The private key (PKCS#8) and its self-signed certificate: a test-only credential.
const TEST_CERTIFICATE: &str = include_str!("fixtures/auth/test-only-client-certificate.pem");
/// The same key in PKCS#1 form.
const TEST_KEY_PKCS1: &str = include_str!("fixtures/auth/test-only-client-key-pkcs1.pem");
/// Its public key (PKCS#1), to verify signatures.
const TEST_PUBLIC_KEY: &str = include_str!("fixtures/auth/test-only-client-public-key.pem");
/// A certificate of another key.
const OTHER_CERTIFICATE: &str = include_str!("fixtures/auth/test-only-other-certificate.pem");
/// `openssl x509 -outform DER | openssl dgst -sha256 -binary | base64url` of the test certificate.
const TEST_THUMBPRINT: &str = "nMoN5QH9ZWHvbPzTvdp5ceL9qCRuphURdpH47_ZCSNs";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The certificate block of the test PEM alone.
fn certificate_block() -> &'static str {
    let start = TEST_CERTIFICATE
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap();
    &TEST_CERTIFICATE[start..]
}

fn certificate_app() -> EntraApp {
    EntraApp::builder(TENANT, CLIENT_ID)
        .with_client_certificate(
            d365_connector::ClientCertificate::from_pem(TEST_CERTIFICATE).unwrap(),
        )
        .build()
        .unwrap()
}

/// The header and claims of a JWT, after checking its RS256 signature with the test public key.
fn verified_jwt(jwt: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {jwt}");
    let public_key = pem_contents(TEST_PUBLIC_KEY);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
    .expect("the assertion is signed RS256 with the certificate's key");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

/// The DER inside a one-block PEM text.
fn pem_contents(text: &str) -> Vec<u8> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn token_url(server: &MockServer) -> String {
    format!("{}{}", server.uri(), token_path())
}

#[tokio::test]
async fn a_certificate_sends_a_signed_assertion_with_thumbprint_audience_and_times() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 600, "access_token": "cc-access"
        })),
        2,
    )
    .await;
    let (options, clock) = virtual_options();
    let authorizer =
        ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), certificate_app())
            .with_client_options(options)
            .build()
            .unwrap();
    let before = Utc::now().timestamp();
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "cc-access"
    );
    let after = Utc::now().timestamp();
    clock.sleep(Duration::from_secs(600)).await; // expired: a second request
    authorizer.access_token().await.unwrap();

    let forms = token_forms(&server).await;
    assert_eq!(forms.len(), 2);
    let sent = &forms[0];
    assert_eq!(
        keys(sent),
        [
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "grant_type",
            "scope"
        ],
        "no client_secret"
    );
    assert_eq!(sent["grant_type"], "client_credentials");
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(sent["scope"], format!("{INSTANCE}/.default"));
    assert_eq!(sent["client_assertion_type"], JWT_BEARER);

    let (header, claims) = verified_jwt(&sent["client_assertion"]);
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "x5t#S256": TEST_THUMBPRINT})
    );
    assert_eq!(claims["aud"], token_url(&server));
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["sub"], CLIENT_ID);
    let nbf = claims["nbf"].as_i64().unwrap();
    assert!(before <= nbf && nbf <= after, "nbf {nbf} is now");
    assert_eq!(claims["iat"], claims["nbf"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - nbf,
        300,
        "valid 5 minutes"
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 16);

    // The second request carries a new assertion: a new jti, times moved with the clock.
    let (_, second) = verified_jwt(&forms[1]["client_assertion"]);
    assert_ne!(second["jti"], claims["jti"]);
    assert!(second["nbf"].as_i64().unwrap() >= nbf + 600);
}

#[tokio::test]
async fn a_certificate_redeems_a_users_code_too() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(tokens_body(
            "new-access",
            Some("rt-1"),
            json!(3599),
        )),
        1,
    )
    .await;
    let app = EntraApp::builder(TENANT, CLIENT_ID)
        .with_client_certificate(
            d365_connector::ClientCertificate::from_pem(TEST_CERTIFICATE).unwrap(),
        )
        .with_redirect_uri(REDIRECT)
        .build()
        .unwrap();
    let authorizer = AuthorizationCodeAuthorizer::builder(&connection(&server, INSTANCE), app)
        .build()
        .unwrap();
    let request = authorizer
        .authorization_request(&AuthorizeOptions::new())
        .unwrap();
    let redirect = format!("code=the-code&state={}", request.state());
    authorizer
        .complete_authorization(request, &redirect)
        .await
        .unwrap();
    let sent = &token_forms(&server).await[0];
    assert_eq!(
        keys(sent),
        [
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "code",
            "code_verifier",
            "grant_type",
            "redirect_uri",
            "scope"
        ]
    );
    let (_, claims) = verified_jwt(&sent["client_assertion"]);
    assert_eq!(claims["aud"], token_url(&server));
}

#[test]
fn a_pkcs1_key_and_its_certificate_give_the_same_thumbprint() {
    let pem = format!("{TEST_KEY_PKCS1}\n{}", certificate_block());
    let certificate = d365_connector::ClientCertificate::from_pem(pem).unwrap();
    assert_eq!(certificate.thumbprint_sha256(), TEST_THUMBPRINT);
    // Certificate first, key second, with text around the blocks (as openssl pkcs12 writes).
    let reordered = format!(
        "Bag Attributes\n{}\nKey Attributes\n{TEST_KEY_PKCS1}",
        certificate_block()
    );
    let certificate = d365_connector::ClientCertificate::from_pem(reordered).unwrap();
    assert_eq!(certificate.thumbprint_sha256(), TEST_THUMBPRINT);
}

#[test]
fn a_bad_certificate_file_is_refused_with_what_to_do() {
    let key_only = &TEST_CERTIFICATE[..TEST_CERTIFICATE
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap()];
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBAA==\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let cases = [
        (key_only.to_owned(), "holds no certificate"),
        (certificate_block().to_owned(), "holds no private key"),
        (
            format!("{encrypted}{}", certificate_block()),
            "encrypted with a password",
        ),
        (
            format!("{key_only}{OTHER_CERTIFICATE}"),
            "does not belong to its private key",
        ),
        (
            format!("{key_only}{TEST_KEY_PKCS1}{}", certificate_block()),
            "more than one private key",
        ),
        ("not a PEM file".to_owned(), "holds no private key"),
        (
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n".to_owned()
                + certificate_block(),
            "cannot be used",
        ),
    ];
    for (pem, expected) in cases {
        let error = d365_connector::ClientCertificate::from_pem(&pem).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains(expected), "{expected}: {error}");
    }
    let error =
        d365_connector::ClientCertificate::from_pem_file("/nonexistent/client.pem").unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/client.pem"),
        "{error}"
    );
}

#[tokio::test]
async fn a_rejected_certificate_says_what_to_check_and_never_shows_the_assertion() {
    let server = server().await;
    // Entra echoes what it received; the assertion must not reach the error.
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(|request: &Request| {
            let assertion = form(request)["client_assertion"].clone();
            entra_error(
                "invalid_client",
                700027,
                &format!("Client assertion contains an invalid signature: {assertion}."),
            )
        })
        .expect(1)
        .mount(&server)
        .await;
    let authorizer =
        ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), certificate_app())
            .build()
            .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        error
            .to_string()
            .contains("rejected the client certificate"),
        "{error}"
    );
    assert!(
        error.to_string().contains("invalid_client, AADSTS700027"),
        "{error}"
    );
    let assertion = &token_forms(&server).await[0]["client_assertion"];
    let printed = format!("{error} {error:?}");
    assert!(!printed.contains(assertion.as_str()), "{printed}");
    assert!(error.service_message().unwrap().contains("[redacted]"));
}

// ---------------------------------------------------------------------------------------------
// 9. Federated credentials (Kubernetes workload identity)

/// A scratch file for one test.
fn scratch_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("d365-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test]
async fn a_federated_token_file_is_read_fresh_for_every_token_request() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 600, "access_token": "cc-access"
        })),
        2,
    )
    .await;
    let file = scratch_file("federated-token");
    std::fs::write(&file, "eyJhbGciOi.first-projected-token.sig\n").unwrap();
    let app = EntraApp::builder(TENANT, CLIENT_ID)
        .with_federated_token_file(&file)
        .build()
        .unwrap();
    let (options, clock) = virtual_options();
    let authorizer = ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), app)
        .with_client_options(options)
        .build()
        .unwrap();
    authorizer.access_token().await.unwrap();
    // The kubelet rotates the token; the next token request reads the new one.
    std::fs::write(&file, "eyJhbGciOi.second-projected-token.sig").unwrap();
    clock.sleep(Duration::from_secs(600)).await;
    authorizer.access_token().await.unwrap();

    let forms = token_forms(&server).await;
    assert_eq!(
        keys(&forms[0]),
        [
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "grant_type",
            "scope"
        ]
    );
    assert_eq!(forms[0]["client_assertion_type"], JWT_BEARER);
    assert_eq!(
        forms[0]["client_assertion"],
        "eyJhbGciOi.first-projected-token.sig"
    );
    assert_eq!(
        forms[1]["client_assertion"],
        "eyJhbGciOi.second-projected-token.sig"
    );
    assert_eq!(forms[1]["scope"], format!("{INSTANCE}/.default"));

    // A file that disappeared is a clear error, and nothing is sent.
    std::fs::remove_file(&file).unwrap();
    clock.sleep(Duration::from_secs(600)).await;
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error.to_string().contains("federated token file"),
        "{error}"
    );
    assert!(
        error.to_string().contains(file.to_str().unwrap()),
        "{error}"
    );
}

#[tokio::test]
async fn a_rejected_federated_token_points_at_the_federated_credential() {
    let server = server().await;
    mount_token(
        &server,
        entra_error(
            "invalid_client",
            700211,
            "No matching federated identity record found for presented assertion issuer.",
        ),
        1,
    )
    .await;
    let file = scratch_file("federated-rejected");
    std::fs::write(&file, "eyJhbGciOi.projected.sig").unwrap();
    let app = EntraApp::builder(TENANT, CLIENT_ID)
        .with_federated_token_file(&file)
        .build()
        .unwrap();
    let authorizer = ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), app)
        .build()
        .unwrap();
    let error = authorizer.authorize().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        error.to_string().contains("federated credential"),
        "{error}"
    );
}

#[test]
fn workload_identity_reads_the_webhooks_variables() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    };
    assert_eq!(WorkloadIdentity::from_lookup(vars(&[])).unwrap(), None);
    let identity = WorkloadIdentity::from_lookup(vars(&[
        ("AZURE_CLIENT_ID", CLIENT_ID),
        ("AZURE_TENANT_ID", TENANT),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(
        identity.authority_host(),
        Some("https://login.microsoftonline.com/")
    );
    let app = identity.app().unwrap();
    assert_eq!(app.client_id(), CLIENT_ID);
    assert_eq!(app.tenant().as_str(), TENANT);
    match app.credential() {
        Some(ClientCredential::FederatedTokenFile(path)) => assert_eq!(
            path,
            std::path::Path::new("/var/run/secrets/azure/tokens/azure-identity-token")
        ),
        other => panic!("{other:?}"),
    }
    let error = WorkloadIdentity::from_lookup(vars(&[("AZURE_CLIENT_ID", CLIENT_ID)])).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE not set"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Managed identity

const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
const IDENTITY_HEADER: &str = "e1f2-identity-header~secret";

fn managed_identity_ok(expires_on: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": "mi-access",
        "client_id": CLIENT_ID,
        "expires_in": "3599",
        "expires_on": expires_on,
        "ext_expires_in": "3599",
        "not_before": "1700000000",
        "resource": INSTANCE,
        "token_type": "Bearer"
    }))
}

fn imds(server: &MockServer) -> ManagedIdentityEndpoint {
    ManagedIdentityEndpoint::imds_at(&format!("{}{IMDS_PATH}", server.uri())).unwrap()
}

fn app_service(server: &MockServer) -> ManagedIdentityEndpoint {
    ManagedIdentityEndpoint::app_service(
        &format!("{}/msi/token", server.uri()),
        IdentityHeader::new(IDENTITY_HEADER),
    )
    .unwrap()
}

#[tokio::test]
async fn imds_is_asked_with_the_metadata_header_and_the_instance_as_resource() {
    let server = server().await;
    let expires_on = Utc::now().timestamp() + 3599;
    Mock::given(method("GET"))
        .and(path(IMDS_PATH))
        .and(header("metadata", "true"))
        .respond_with(managed_identity_ok(json!(expires_on.to_string())))
        .expect(1)
        .mount(&server)
        .await;
    let authorizer = ManagedIdentityAuthorizer::builder(&connection(&server, INSTANCE))
        .with_endpoint(imds(&server))
        .with_identity(ManagedIdentityId::ClientId(CLIENT_ID.to_owned()))
        .build()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            authorizer.access_token().await.unwrap().secret(),
            "mi-access"
        );
    }
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "the token is cached");
    assert_eq!(
        query(&requests[0].url),
        BTreeMap::from([
            ("api-version".to_owned(), "2018-02-01".to_owned()),
            ("client_id".to_owned(), CLIENT_ID.to_owned()),
            ("resource".to_owned(), INSTANCE.to_owned()),
        ])
    );
    assert!(requests[0].headers.get("x-identity-header").is_none());
    let tokens = authorizer.token_set().await.unwrap().unwrap();
    assert_eq!(
        tokens.expires_at().timestamp(),
        expires_on,
        "expires_on as a string"
    );
    assert!(tokens.refresh_token().is_none());
}

#[tokio::test]
async fn app_service_is_asked_with_the_identity_header() {
    let server = server().await;
    let expires_on = Utc::now().timestamp() + 3599;
    Mock::given(method("GET"))
        .and(path("/msi/token"))
        .and(header("x-identity-header", IDENTITY_HEADER))
        .respond_with(managed_identity_ok(json!(expires_on)))
        .expect(1)
        .mount(&server)
        .await;
    let resource_id = "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/sync";
    let authorizer = ManagedIdentityAuthorizer::builder(&connection(&server, INSTANCE))
        .with_endpoint(app_service(&server))
        .with_identity(ManagedIdentityId::ResourceId(resource_id.to_owned()))
        .build()
        .unwrap();
    authorizer.authorize().await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        query(&requests[0].url),
        BTreeMap::from([
            ("api-version".to_owned(), "2019-08-01".to_owned()),
            ("mi_res_id".to_owned(), resource_id.to_owned()),
            ("resource".to_owned(), INSTANCE.to_owned()),
        ])
    );
    assert!(requests[0].headers.get("metadata").is_none());
    let tokens = authorizer.token_set().await.unwrap().unwrap();
    assert_eq!(
        tokens.expires_at().timestamp(),
        expires_on,
        "expires_on as a number"
    );
    assert_eq!(tokens.access_token().secret(), "mi-access");
}

#[tokio::test]
async fn imds_errors_keep_the_error_and_say_what_to_check() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(IMDS_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request",
            "error_description": "Identity not found",
            "correlation_id": "corr-imds-1"
        })))
        .expect(1) // not retried
        .mount(&server)
        .await;
    let (options, _) = virtual_options();
    let authorizer = ManagedIdentityAuthorizer::builder(&connection(&server, INSTANCE))
        .with_endpoint(imds(&server))
        .with_client_options(options)
        .build()
        .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(!error.is_retryable());
    assert_eq!(error.service_code(), Some("invalid_request"));
    assert_eq!(error.service_message(), Some("Identity not found"));
    assert_eq!(error.request_id(), Some("corr-imds-1"));
    let message = error.to_string();
    assert!(message.contains("IMDS"), "{message}");
    assert!(
        message.contains("invalid_request: Identity not found"),
        "{message}"
    );
    assert!(
        message.contains("check that a managed identity is assigned"),
        "{message}"
    );
}

#[tokio::test]
async fn imds_updating_and_throttling_answers_are_retried() {
    let server = server().await;
    for (priority, status) in [(1u8, 410u16), (2, 429), (3, 500)] {
        Mock::given(method("GET"))
            .and(path(IMDS_PATH))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "error": "unknown", "error_description": "IMDS is updating"
            })))
            .up_to_n_times(1)
            .with_priority(priority)
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(IMDS_PATH))
        .respond_with(managed_identity_ok(json!(
            (Utc::now().timestamp() + 3599).to_string()
        )))
        .with_priority(4)
        .expect(1)
        .mount(&server)
        .await;
    let (options, clock) = virtual_options();
    let authorizer = ManagedIdentityAuthorizer::builder(&connection(&server, INSTANCE))
        .with_endpoint(imds(&server))
        .with_client_options(options)
        .build()
        .unwrap();
    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "mi-access"
    );
    assert_eq!(
        clock.sleeps().len(),
        3,
        "three retries under the retry policy"
    );
}

#[tokio::test]
async fn app_service_errors_keep_the_message_without_the_identity_header() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/msi/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "statusCode": 400,
            "message": format!("No Managed Identity found for specified ClientId/ResourceId/PrincipalId (header {}).", "e1f2-identity-header%7Esecret"),
            "correlationId": "corr-app-1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (options, _) = virtual_options();
    let authorizer = ManagedIdentityAuthorizer::builder(&connection(&server, INSTANCE))
        .with_endpoint(app_service(&server))
        .with_identity(ManagedIdentityId::ClientId(CLIENT_ID.to_owned()))
        .with_client_options(options)
        .build()
        .unwrap();
    let error = authorizer.authorize().await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert_eq!(error.request_id(), Some("corr-app-1"));
    let message = error.to_string();
    assert!(
        message.contains("App Service managed identity endpoint"),
        "{message}"
    );
    assert!(message.contains("No Managed Identity found"), "{message}");
    let printed = format!("{error} {error:?}");
    assert!(!printed.contains("identity-header"), "{printed}");
    assert!(printed.contains("[redacted]"), "{printed}");
}

#[test]
fn the_managed_identity_endpoint_follows_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    };
    let default = ManagedIdentityEndpoint::from_lookup(env(&[])).unwrap();
    assert!(!default.is_app_service());
    assert_eq!(default.url().as_str(), DEFAULT_IMDS_ENDPOINT);
    let app = ManagedIdentityEndpoint::from_lookup(env(&[
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/MSI/token/"),
        ("IDENTITY_HEADER", IDENTITY_HEADER),
    ]))
    .unwrap();
    assert!(app.is_app_service());
    assert!(!format!("{app:?}").contains(IDENTITY_HEADER));
    let error = ManagedIdentityEndpoint::from_lookup(env(&[(
        "IDENTITY_ENDPOINT",
        "http://127.0.0.1:41741/MSI/token/",
    )]))
    .unwrap_err();
    assert!(error.to_string().contains("IDENTITY_HEADER"), "{error}");
    // Plain http only on loopback and the metadata address.
    assert!(ManagedIdentityEndpoint::imds_at("http://metadata.example.com/token").is_err());
    assert!(
        ManagedIdentityEndpoint::imds_at("http://169.254.169.254/metadata/identity/oauth2/token")
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// 11. A sign-in that survives a restart and another replica

#[tokio::test]
async fn a_stored_sign_in_is_completed_by_another_authorizer_instance() {
    let server = server().await;
    mount_token(
        &server,
        ResponseTemplate::new(200).set_body_json(tokens_body(
            "new-access",
            Some("rt-1"),
            json!(3599),
        )),
        1,
    )
    .await;
    let connection = connection(&server, INSTANCE);
    let replica_a = AuthorizationCodeAuthorizer::builder(&connection, public_app())
        .build()
        .unwrap();
    let request = replica_a
        .authorization_request(&AuthorizeOptions::new())
        .unwrap();
    let state = request.state().to_owned();
    let challenge = query(request.url())["code_challenge"].clone();
    let stored = serde_json::to_string(&request).unwrap();
    drop((request, replica_a)); // the replica that started the sign-in is gone

    let fields: Value = serde_json::from_str(&stored).unwrap();
    for field in [
        "state",
        "code_verifier",
        "redirect_uri",
        "created_at",
        "instance",
        "client_id",
    ] {
        assert!(fields.get(field).is_some(), "{field} in {stored}");
    }
    let verifier = fields["code_verifier"].as_str().unwrap().to_owned();

    let store = Arc::new(MemoryTokenStore::new());
    let replica_b = AuthorizationCodeAuthorizer::builder(&connection, public_app())
        .with_token_store(store.clone())
        .build()
        .unwrap();
    let restored: AuthorizationRequest = serde_json::from_str(&stored).unwrap();
    let printed = format!("{restored:?}");
    assert!(
        !printed.contains(&verifier) && !printed.contains(&state),
        "{printed}"
    );
    let redirect = format!("{REDIRECT}?code=the-code&state={state}");
    let tokens = replica_b
        .complete_authorization(restored, &redirect)
        .await
        .unwrap();
    assert_eq!(tokens.access_token().secret(), "new-access");
    assert_eq!(store.tokens().as_ref(), Some(&tokens));

    let sent = &token_forms(&server).await[0];
    assert_eq!(sent["code_verifier"], verifier);
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        challenge,
        "the verifier matches the challenge of the original URL"
    );

    // The state check survives the round trip.
    let forged: AuthorizationRequest = serde_json::from_str(&stored).unwrap();
    let error = replica_b
        .complete_authorization(forged, &format!("{REDIRECT}?code=the-code&state=forged"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("CSRF"), "{error}");
}

#[tokio::test]
async fn a_stored_sign_in_is_refused_after_it_expired() {
    let server = server().await; // any token request fails the test
    let connection = connection(&server, INSTANCE);
    for (lifetime, wait) in [(None, 11 * 60), (Some(2 * 60), 3 * 60)] {
        let (options, clock) = virtual_options();
        let mut builder = AuthorizationCodeAuthorizer::builder(&connection, public_app())
            .with_client_options(options);
        if let Some(lifetime) = lifetime {
            builder = builder.with_sign_in_lifetime(Duration::from_secs(lifetime));
        }
        let authorizer = builder.build().unwrap();
        let request = authorizer
            .authorization_request(&AuthorizeOptions::new())
            .unwrap();
        let state = request.state().to_owned();
        let stored = serde_json::to_string(&request).unwrap();
        clock.sleep(Duration::from_secs(wait)).await;
        let restored: AuthorizationRequest = serde_json::from_str(&stored).unwrap();
        let error = authorizer
            .complete_authorization(restored, &format!("code=the-code&state={state}"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Auth);
        let minutes = lifetime.unwrap_or(600) / 60;
        assert!(
            error
                .to_string()
                .contains(&format!("expired after {minutes} minutes")),
            "{error}"
        );
        assert!(
            error.to_string().contains("start the sign-in again"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_stored_sign_in_for_another_app_or_with_a_bad_verifier_is_refused() {
    let server = server().await;
    let connection = connection(&server, INSTANCE);
    let authorizer = AuthorizationCodeAuthorizer::builder(&connection, public_app())
        .build()
        .unwrap();
    let request = authorizer
        .authorization_request(&AuthorizeOptions::new())
        .unwrap();
    let mut stored: Value = serde_json::to_value(&request).unwrap();

    stored["code_verifier"] = json!("short");
    let error = serde_json::from_value::<AuthorizationRequest>(stored.clone()).unwrap_err();
    assert!(
        error.to_string().contains("PKCE verifier is malformed"),
        "{error}"
    );

    let other_app = EntraApp::builder(TENANT, "99999999-2222-3333-4444-555555555555")
        .with_redirect_uri(REDIRECT)
        .build()
        .unwrap();
    let other = AuthorizationCodeAuthorizer::builder(&connection, other_app)
        .build()
        .unwrap();
    let error = other
        .complete_authorization(request, "code=the-code&state=x")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("started for the app"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// 12. Scrubbing echoes of secrets

#[tokio::test]
async fn a_url_encoded_or_json_escaped_echo_of_the_secret_is_scrubbed() {
    // The secret contains `~` (generated Entra secrets do), sent as `%7E`.
    let json_secret = "q8+Xy~z/\"quoted\"-value";
    let cases = [
        (SECRET, "s3cr3t-CLIENT-value%7Exyz".to_owned()),
        (SECRET, "s3cr3t-CLIENT-value%7exyz".to_owned()),
        (
            json_secret,
            r#"q8\u002BXy~z/\u0022quoted\u0022-value"#.to_owned(),
        ),
        (json_secret, r#"q8+Xy~z\/\"quoted\"-value"#.to_owned()),
    ];
    for (secret, echo) in cases {
        let server = server().await;
        mount_token(
            &server,
            entra_error(
                "invalid_request",
                900144,
                &format!(
                    "The request body was: client_secret={echo}&grant_type=client_credentials"
                ),
            ),
            1,
        )
        .await;
        let app = EntraApp::builder(TENANT, CLIENT_ID)
            .with_client_secret(ClientSecret::new(secret))
            .build()
            .unwrap();
        let authorizer = ClientCredentialsAuthorizer::builder(&connection(&server, INSTANCE), app)
            .build()
            .unwrap();
        let error = authorizer.access_token().await.unwrap_err();
        let printed = format!("{error} {error:?} {}", error.service_message().unwrap());
        assert!(!printed.contains(&echo), "{echo} leaks in {printed}");
        assert!(
            error
                .service_message()
                .unwrap()
                .contains("client_secret=[redacted]&"),
            "{printed}"
        );
    }
}

#[tokio::test]
async fn debug_of_the_new_credential_types_leaks_no_secret() {
    let server = server().await;
    let connection = connection(&server, INSTANCE);
    let certificate = d365_connector::ClientCertificate::from_pem(TEST_CERTIFICATE).unwrap();
    let key_line = TEST_CERTIFICATE.lines().nth(1).unwrap();
    let cc = ClientCredentialsAuthorizer::builder(&connection, certificate_app())
        .build()
        .unwrap();
    let mi_builder =
        ManagedIdentityAuthorizer::builder(&connection).with_endpoint(app_service(&server));
    let mi_builder_debug = format!("{mi_builder:?}");
    let mi = mi_builder.build().unwrap();
    for text in [
        format!("{certificate:?}"),
        format!("{cc:?}"),
        format!("{:?}", certificate_app()),
        mi_builder_debug,
        format!("{mi:?}"),
        format!("{:?}", IdentityHeader::new(IDENTITY_HEADER)),
    ] {
        assert!(!text.contains(key_line), "{text} shows the key");
        assert!(
            !text.contains(IDENTITY_HEADER),
            "{text} shows the identity header"
        );
    }
    assert!(format!("{certificate:?}").contains(TEST_THUMBPRINT));
}
