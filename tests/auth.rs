//! The Entra ID authorizer against a wiremock token endpoint (and Dataverse for WhoAmI).
//!
//! Every server mounts a catch-all that fails the test on any request nobody expected.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use d365_connector::{
    AccessToken, AuthorizeOptions, Authorizer, ClientOptions, ClientSecret, Clock, Cloud,
    Connection, DataverseClient, EntraApp, ErrorKind, InstanceUrl, MemoryTokenStore,
    OAuthAuthorizer, Prompt, RefreshToken, RetryPolicy, TokenSet, TokenStore, VirtualClock,
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), public_app())
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), confidential_app())
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), public_app())
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), public_app())
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
    let store = Arc::new(MemoryTokenStore::new());
    let authorizer =
        OAuthAuthorizer::client_credentials(&connection(&server, INSTANCE), confidential_app())
            .with_token_store(store.clone())
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
    assert!(
        store.tokens().is_none(),
        "client credentials need no stored tokens"
    );
}

#[tokio::test]
async fn client_credentials_need_a_secret_and_one_tenant() {
    let server = server().await;
    let connection = connection(&server, INSTANCE);
    let error = OAuthAuthorizer::client_credentials(&connection, public_app())
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("client secret"), "{error}");
    let multi = EntraApp::builder("organizations", CLIENT_ID)
        .with_client_secret(ClientSecret::new(SECRET))
        .build()
        .unwrap();
    let error = OAuthAuthorizer::client_credentials(&connection, multi)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("tenant"), "{error}");
    let error = OAuthAuthorizer::authorization_code(
        &connection,
        EntraApp::builder(TENANT, CLIENT_ID).build().unwrap(),
    )
    .build()
    .unwrap_err();
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
    let relaxed = OAuthAuthorizer::authorization_code(&connection, public_app())
        .with_token_set(stored_tokens(4, "rt-1"))
        .with_refresh_margin(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(relaxed.access_token().await.unwrap().secret(), "old-access");

    // 4 minutes left, default 5 minute margin: refreshed first.
    let store = Arc::new(MemoryTokenStore::new());
    let eager = OAuthAuthorizer::authorization_code(&connection, public_app())
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), confidential_app())
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
    async fn load(&self) -> Result<Option<TokenSet>, d365_connector::StoreError> {
        self.inner.load().await
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), d365_connector::StoreError> {
        if !self
            .failed_once
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err("the token database is unavailable".into());
        }
        self.inner.save(tokens).await
    }

    async fn clear(&self) -> Result<(), d365_connector::StoreError> {
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), confidential_app())
            .with_token_store(store.clone())
            .build()
            .unwrap();

    let error = authorizer.access_token().await.unwrap_err();
    assert!(error.to_string().contains("save"), "{error}");

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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), public_app())
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
    let authorizer = OAuthAuthorizer::authorization_code(&connection, public_app())
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), public_app())
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
    let error = OAuthAuthorizer::authorization_code(&other, public_app())
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
    let authorizer = OAuthAuthorizer::authorization_code(&other, public_app())
        .with_token_store(store)
        .build()
        .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert!(
        error.to_string().contains("bound to one instance"),
        "{error}"
    );
    let error = authorizer
        .set_token_set(stored_tokens(60, "rt-1"))
        .await
        .unwrap_err();
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), public_app())
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), public_app())
            .build()
            .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
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
        OAuthAuthorizer::client_credentials(&connection(&server, INSTANCE), confidential_app())
            .build()
            .unwrap();
    authorizer.access_token().await.unwrap();
    authorizer.revoke().await.unwrap();
    let error = authorizer.access_token().await.unwrap_err();
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
        let authorizer = if client_credentials {
            OAuthAuthorizer::client_credentials(&connection, confidential_app())
        } else {
            OAuthAuthorizer::authorization_code(&connection, confidential_app())
                .with_token_set(stored_tokens(-1, "rt-1"))
        }
        .with_client_options(options)
        .build()
        .unwrap();
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
        OAuthAuthorizer::authorization_code(&connection(&server, INSTANCE), confidential_app())
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
        OAuthAuthorizer::client_credentials(&connection(&server, INSTANCE), confidential_app())
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
        OAuthAuthorizer::client_credentials(&connection(&server, INSTANCE), confidential_app())
            .with_client_options(
                options.with_retry_policy(RetryPolicy::default().with_max_attempts(3)),
            )
            .build()
            .unwrap();
    let error = authorizer.access_token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Service);
    assert!(error.is_retryable());
    assert_eq!(error.status(), Some(502));
    assert!(
        error.to_string().contains("temporarily unavailable"),
        "{error}"
    );
    assert!(
        error.to_string().contains("gave up after 3 attempts"),
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
        let authorizer = OAuthAuthorizer::authorization_code(&connection, public_app())
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
    let request = OAuthAuthorizer::authorization_code(&local, public_app())
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
    let authorizer = OAuthAuthorizer::authorization_code(&connection, public_app())
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
    let builder = OAuthAuthorizer::authorization_code(&connection, app.clone())
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
    let cc = OAuthAuthorizer::client_credentials(&connection, app.clone())
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
        OAuthAuthorizer::client_credentials(&connection(&server, INSTANCE), confidential_app())
            .with_refresh_margin(Duration::MAX)
            .build()
            .unwrap();

    assert_eq!(
        authorizer.access_token().await.unwrap().secret(),
        "long-lived"
    );
}
