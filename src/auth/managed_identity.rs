//! [`ManagedIdentityAuthorizer`]: tokens from an Azure managed identity, through the Instance
//! Metadata Service (VMs, scale sets, AKS nodes) or the App Service / Functions identity
//! endpoint. No secret is configured anywhere.

use super::Authorizer;
use super::cache::{
    DEFAULT_REFRESH_MARGIN, Persistence, TokenCache, TokenSource, WallClock, later,
};
use super::entra::seconds;
use super::scrub::Scrubber;
use super::store::MemoryTokenStore;
use super::token::TokenSet;
use crate::connection::{Connection, InstanceUrl, is_loopback};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::{AccessToken, IdentityHeader};
use crate::transport::{ClientOptions, HttpResponse, Transport, classify, retry_after};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header;
use serde_json::Value;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use url::{Host, Url};

/// The Azure Instance Metadata Service's token endpoint.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const IMDS_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
/// Statuses IMDS answers while it is updating (404, 410) or failing for a moment (5xx), which
/// Microsoft's guidance says to retry; the shared status table retries only 502 to 504.
const IMDS_PASSING: [u16; 2] = [404, 410];

/// Which managed identity of the resource to use.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ManagedIdentityId {
    /// The resource's system-assigned identity.
    #[default]
    SystemAssigned,
    /// A user-assigned identity by its client (application) id.
    ClientId(String),
    /// A user-assigned identity by its object (principal) id.
    ObjectId(String),
    /// A user-assigned identity by its Azure resource id.
    ResourceId(String),
}

impl ManagedIdentityId {
    /// The query parameter naming the identity, which differs between IMDS and App Service for
    /// a resource id.
    fn query(&self, app_service: bool) -> Option<(&'static str, &str)> {
        match self {
            ManagedIdentityId::SystemAssigned => None,
            ManagedIdentityId::ClientId(id) => Some(("client_id", id)),
            ManagedIdentityId::ObjectId(id) => Some(("object_id", id)),
            ManagedIdentityId::ResourceId(id) if app_service => Some(("mi_res_id", id)),
            ManagedIdentityId::ResourceId(id) => Some(("msi_res_id", id)),
        }
    }
}

/// Where a managed identity's tokens are requested.
///
/// - The Instance Metadata Service (IMDS) of Azure VMs, scale sets and AKS nodes:
///   `GET <endpoint>?api-version=2018-02-01&resource=<instance>` with `Metadata: true`. Its
///   address is fixed ([`DEFAULT_IMDS_ENDPOINT`]); [`imds_at`](Self::imds_at) points elsewhere
///   (a test stand-in, a local proxy).
/// - App Service and Azure Functions: `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...`
///   with `X-IDENTITY-HEADER: $IDENTITY_HEADER`.
///
/// `http://` is accepted on loopback hosts and the IMDS address only.
#[derive(Clone)]
pub struct ManagedIdentityEndpoint {
    url: Url,
    /// `Some` for App Service: the secret header value.
    identity_header: Option<IdentityHeader>,
}

impl ManagedIdentityEndpoint {
    /// The Instance Metadata Service at its fixed address.
    pub fn imds() -> Self {
        Self {
            url: Url::parse(DEFAULT_IMDS_ENDPOINT).expect("the IMDS endpoint is a valid URL"),
            identity_header: None,
        }
    }

    /// The Instance Metadata Service protocol at `url`.
    pub fn imds_at(url: &str) -> Result<Self> {
        Ok(Self {
            url: endpoint_url(url, "IMDS endpoint")?,
            identity_header: None,
        })
    }

    /// The App Service / Functions identity endpoint at `url` (`IDENTITY_ENDPOINT`), proven
    /// with `header` (`IDENTITY_HEADER`).
    pub fn app_service(url: &str, header: IdentityHeader) -> Result<Self> {
        if header.secret().trim().is_empty() {
            return Err(Error::config(
                "the App Service identity header is empty; give the value of IDENTITY_HEADER",
            ));
        }
        Ok(Self {
            url: endpoint_url(url, "IDENTITY_ENDPOINT")?,
            identity_header: Some(header),
        })
    }

    /// The App Service endpoint when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set in the
    /// process environment, else IMDS; see [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The App Service endpoint when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are given by
    /// `lookup`, else IMDS. Only one of the two is an error.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let value = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        match (value("IDENTITY_ENDPOINT"), value("IDENTITY_HEADER")) {
            (Some(url), Some(header)) => Self::app_service(url.trim(), IdentityHeader::new(header)),
            (None, None) => Ok(Self::imds()),
            _ => Err(Error::config(
                "only one of IDENTITY_ENDPOINT and IDENTITY_HEADER is set; App Service sets both when the app has a managed identity, so check the app's Identity settings",
            )),
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Whether this is the App Service / Functions endpoint.
    pub fn is_app_service(&self) -> bool {
        self.identity_header.is_some()
    }

    fn name(&self) -> &'static str {
        if self.is_app_service() {
            "the App Service managed identity endpoint"
        } else {
            "the instance metadata (IMDS) managed identity endpoint"
        }
    }
}

impl fmt::Debug for ManagedIdentityEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityEndpoint")
            .field("url", &self.url.as_str())
            .field("identity_header", &self.identity_header)
            .finish()
    }
}

/// `input` as an endpoint URL: `https://`, or `http://` on loopback or the IMDS address.
fn endpoint_url(input: &str, what: &str) -> Result<Url> {
    let url = Url::parse(input.trim()).map_err(|e| {
        Error::config(format!(
            "the managed identity {what} `{input}` is not a URL ({e})"
        ))
    })?;
    let local = match url.host() {
        Some(Host::Ipv4(address)) if address == IMDS_ADDRESS => true,
        Some(host) => is_loopback(&host),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if local => Ok(url),
        _ => Err(Error::config(format!(
            "the managed identity {what} `{input}` must be https://, or http:// on a loopback host or the instance metadata address"
        ))),
    }
}

/// An [`Authorizer`] backed by an Azure managed identity: no secret, certificate or token file
/// to keep. The identity must be an application user of the Dataverse instance.
///
/// Tokens are requested for the instance as the resource, cached, and requested again
/// [`DEFAULT_REFRESH_MARGIN`] before they expire; however many tasks ask at once, one request is
/// made. Requests go through the [`ClientOptions`]' retries; IMDS's "updating" answers (404,
/// 410) and its 5xx answers are retried as Microsoft advises. Cloning is cheap and clones
/// share the cache. It keeps no tokens across restarts, so its builder takes no
/// [`TokenStore`](crate::TokenStore):
///
/// ```compile_fail,E0599
/// # use d365_connector::{Connection, ManagedIdentityAuthorizer, MemoryTokenStore};
/// # use std::sync::Arc;
/// # fn build(connection: &Connection) {
/// let builder = ManagedIdentityAuthorizer::builder(connection)
///     .with_token_store(Arc::new(MemoryTokenStore::new())); // no such method
/// # }
/// ```
///
/// ```no_run
/// # use d365_connector::{Connection, ManagedIdentityAuthorizer, ManagedIdentityEndpoint};
/// # async fn run(connection: Connection) -> d365_connector::Result<()> {
/// let authorizer = ManagedIdentityAuthorizer::builder(&connection)
///     .with_endpoint(ManagedIdentityEndpoint::from_env()?) // App Service, else IMDS
///     .build()?;
/// authorizer.authorize().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ManagedIdentityAuthorizer {
    inner: Arc<Inner>,
}

struct Inner {
    cache: TokenCache,
    tokens: IdentityTokens,
}

impl ManagedIdentityAuthorizer {
    /// Starts building an authorizer for `connection` with the resource's system-assigned
    /// identity through IMDS.
    pub fn builder(connection: &Connection) -> ManagedIdentityAuthorizerBuilder {
        ManagedIdentityAuthorizerBuilder {
            connection: connection.clone(),
            identity: ManagedIdentityId::SystemAssigned,
            endpoint: ManagedIdentityEndpoint::imds(),
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            options: ClientOptions::default(),
        }
    }

    /// The instance this authorizer's tokens are for.
    pub fn instance(&self) -> &InstanceUrl {
        self.inner.cache.instance()
    }

    /// The identity in use.
    pub fn identity(&self) -> &ManagedIdentityId {
        &self.inner.tokens.identity
    }

    /// Requests a token now, proving the identity works, and marks the connection authorized
    /// again after a [`revoke`](Self::revoke).
    pub async fn authorize(&self) -> Result<()> {
        self.inner.cache.authorize(&self.inner.tokens).await?;
        Ok(())
    }

    /// The current token set, if a token was requested. Nothing is requested.
    pub async fn token_set(&self) -> Result<Option<TokenSet>> {
        self.inner.cache.token_set().await
    }

    /// Forgets the token; every request fails with a "connection is not authorized" error until
    /// [`authorize`](Self::authorize) is called again.
    pub async fn revoke(&self) -> Result<()> {
        self.inner.cache.revoke().await
    }
}

#[async_trait]
impl Authorizer for ManagedIdentityAuthorizer {
    async fn access_token(&self) -> Result<AccessToken> {
        self.inner.cache.token(&self.inner.tokens, None).await
    }

    async fn refresh_rejected(&self, rejected: &AccessToken) -> Result<AccessToken> {
        self.inner
            .cache
            .token(&self.inner.tokens, Some(rejected))
            .await
    }
}

impl fmt::Debug for ManagedIdentityAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityAuthorizer")
            .field("identity", &self.inner.tokens.identity)
            .field("endpoint", &self.inner.tokens.endpoint)
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

/// The token requests of one managed identity for one instance.
struct IdentityTokens {
    identity: ManagedIdentityId,
    endpoint: ManagedIdentityEndpoint,
    instance: InstanceUrl,
    transport: Transport,
    clock: WallClock,
}

#[async_trait]
impl TokenSource for IdentityTokens {
    async fn fetch(&self, _current: Option<&TokenSet>) -> Result<TokenSet> {
        self.transport.retrying(|| self.request_once()).await
    }
}

impl IdentityTokens {
    /// `<endpoint>?api-version=..&resource=<instance>[&<identity>=..]`.
    fn request_url(&self) -> Url {
        let app_service = self.endpoint.is_app_service();
        let mut url = self.endpoint.url.clone();
        {
            let mut query = url.query_pairs_mut();
            let version = if app_service {
                APP_SERVICE_API_VERSION
            } else {
                IMDS_API_VERSION
            };
            query
                .append_pair("api-version", version)
                .append_pair("resource", &self.instance.resource());
            if let Some((name, value)) = self.identity.query(app_service) {
                query.append_pair(name, value);
            }
        }
        url
    }

    async fn request_once(&self) -> Result<TokenSet> {
        let mut request = self
            .transport
            .http()
            .get(self.request_url())
            .header(header::ACCEPT, "application/json");
        request = match &self.endpoint.identity_header {
            Some(secret) => request.header("X-IDENTITY-HEADER", secret.secret()),
            None => request.header("Metadata", "true"),
        };
        let response = self.transport.send(request).await.map_err(|e| {
            e.with_context(format!(
                "{}; is this running on Azure with a managed identity?",
                self.endpoint.name()
            ))
        })?;
        if response.status.is_success() {
            return self.parse_success(&response.body);
        }
        Err(self.error_from(&response))
    }

    /// The token of a successful answer: `access_token`, and `expires_on` (epoch seconds,
    /// often a string) or else `expires_in`.
    fn parse_success(&self, body: &[u8]) -> Result<TokenSet> {
        let malformed = || {
            Error::decode(format!(
                "{}'s answer is not the token JSON expected (no `access_token`, or no `expires_on`/`expires_in`); check the endpoint",
                self.endpoint.name()
            ))
        };
        // serde's messages can quote the token, so they are never passed on.
        let value: Value = serde_json::from_slice(body).map_err(|_| malformed())?;
        let token = value["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(malformed)?;
        if let Some(kind) = value["token_type"].as_str() {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(Error::decode(format!(
                    "{} issued a `{kind}` token, not a Bearer token",
                    self.endpoint.name()
                )));
            }
        }
        let now = self.clock.now();
        let expires_at = expires_on(&value["expires_on"])
            .or_else(|| seconds(&value["expires_in"]).map(|d| later(now, d)))
            .ok_or_else(malformed)?;
        Ok(
            TokenSet::new(self.instance.clone(), AccessToken::new(token), expires_at)
                .with_scopes([self.instance.resource()]),
        )
    }

    /// The error of a failed answer, judged by the shared status table (IMDS's passing
    /// statuses retried too), with the service's error and description (free of the identity
    /// header) kept.
    fn error_from(&self, response: &HttpResponse) -> Error {
        let status = response.status.as_u16();
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let code = text(&body["error"]).or_else(|| text(&body["error"]["code"]));
        let mut verdict = classify(status, code.as_deref());
        if !self.endpoint.is_app_service() && (IMDS_PASSING.contains(&status) || status >= 500) {
            verdict.retryable = true;
        }
        let mut scrubber = Scrubber::default();
        if let Some(header) = &self.endpoint.identity_header {
            scrubber.add(header.secret());
        }
        let description = text(&body["error_description"])
            .or_else(|| text(&body["message"]))
            .or_else(|| text(&body["error"]["message"]))
            .map(|d| scrubber.scrub(&d));
        let correlation = text(&body["correlation_id"]).or_else(|| text(&body["correlationId"]));
        let message = self.message(
            status,
            verdict.kind,
            verdict.retryable,
            code.as_deref(),
            description.as_deref(),
        );
        let error = Error::new(verdict.kind, message)
            .with_status(status)
            .with_service_error(code, description)
            .with_request_id(correlation)
            .with_retryable(verdict.retryable);
        if verdict.retryable {
            error.with_retry_after(retry_after(&response.headers))
        } else {
            error
        }
    }

    /// One sentence on what a failed answer means and what to do.
    fn message(
        &self,
        status: u16,
        kind: ErrorKind,
        retryable: bool,
        code: Option<&str>,
        description: Option<&str>,
    ) -> String {
        let endpoint = self.endpoint.name();
        let detail = match (code, description) {
            (Some(code), Some(description)) => format!("HTTP {status}, {code}: {description}"),
            (None, Some(description)) | (Some(description), None) => {
                format!("HTTP {status}: {description}")
            }
            (None, None) => format!("HTTP {status}"),
        };
        match (kind, status) {
            (ErrorKind::Protocol, _) => format!(
                "{endpoint} answered with a redirect ({detail}); redirects are never followed, check the endpoint URL"
            ),
            (ErrorKind::Throttled, _) => {
                format!("{endpoint} is throttling token requests ({detail}); retry later")
            }
            (_, 400 | 404) if !retryable => format!(
                "{endpoint} refused the token request ({detail}); check that a managed identity is assigned to this resource (a user-assigned one under the id given) and that the instance URL is right"
            ),
            (ErrorKind::Auth, _) => format!(
                "{endpoint} refused the request ({detail}); check that the request comes from inside the resource (and, for App Service, the IDENTITY_HEADER)"
            ),
            _ if retryable => {
                format!("{endpoint} is temporarily unavailable ({detail}); try again later")
            }
            _ => format!("{endpoint} refused the token request ({detail})"),
        }
    }
}

/// A JSON string, or a number written as text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `expires_on` as epoch seconds, a number or a string holding one.
fn expires_on(value: &Value) -> Option<DateTime<Utc>> {
    let seconds = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }?;
    DateTime::from_timestamp(seconds, 0)
}

/// Builds a [`ManagedIdentityAuthorizer`]; every setting has a documented default.
#[must_use]
pub struct ManagedIdentityAuthorizerBuilder {
    connection: Connection,
    identity: ManagedIdentityId,
    endpoint: ManagedIdentityEndpoint,
    refresh_margin: Duration,
    options: ClientOptions,
}

impl fmt::Debug for ManagedIdentityAuthorizerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityAuthorizerBuilder")
            .field("instance", self.connection.instance())
            .field("identity", &self.identity)
            .field("endpoint", &self.endpoint)
            .field("refresh_margin", &self.refresh_margin)
            .finish_non_exhaustive()
    }
}

impl ManagedIdentityAuthorizerBuilder {
    /// Which identity to use. Default: [`ManagedIdentityId::SystemAssigned`].
    pub fn with_identity(mut self, identity: ManagedIdentityId) -> Self {
        self.identity = identity;
        self
    }

    /// Where tokens are requested. Default: [`ManagedIdentityEndpoint::imds`]; use
    /// [`ManagedIdentityEndpoint::from_env`] on App Service and Azure Functions.
    pub fn with_endpoint(mut self, endpoint: ManagedIdentityEndpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// How long before expiry the access token is requested again. Default:
    /// [`DEFAULT_REFRESH_MARGIN`] (5 minutes).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// How token requests are sent: timeouts, user agent, retries and the clock. Default:
    /// [`ClientOptions::default`].
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Validates the settings and builds the authorizer.
    pub fn build(self) -> Result<ManagedIdentityAuthorizer> {
        let empty_id = match &self.identity {
            ManagedIdentityId::SystemAssigned => false,
            ManagedIdentityId::ClientId(id)
            | ManagedIdentityId::ObjectId(id)
            | ManagedIdentityId::ResourceId(id) => id.trim().is_empty(),
        };
        if empty_id {
            return Err(Error::config(
                "the user-assigned managed identity's id is empty; give its client id, object id or resource id, or use the system-assigned identity",
            ));
        }
        let clock = WallClock::new(Arc::clone(self.options.clock()));
        let instance = self.connection.instance().clone();
        let cache = TokenCache::new(
            instance.clone(),
            Arc::new(MemoryTokenStore::new()),
            Persistence::Credential,
            self.refresh_margin,
            clock.clone(),
            None,
        );
        let tokens = IdentityTokens {
            identity: self.identity,
            endpoint: self.endpoint,
            instance,
            transport: Transport::new(self.options)?,
            clock,
        };
        Ok(ManagedIdentityAuthorizer {
            inner: Arc::new(Inner { cache, tokens }),
        })
    }
}
