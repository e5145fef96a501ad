//! [`OAuthAuthorizer`]: tokens from Entra ID, cached, refreshed ahead of expiry by one task at a
//! time, persisted through a [`TokenStore`], bound to one instance, revocable.

use super::Authorizer;
use super::code_flow::{AuthorizationRequest, AuthorizeOptions};
use super::config::{EntraApp, ResourceScope};
use super::entra::{Grant, TokenEndpoint, TokenForm, TokenResponse, endpoint_url};
use super::store::{MemoryTokenStore, StoreError, TokenStore};
use super::token::TokenSet;
use crate::connection::{Connection, InstanceUrl};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::{AccessToken, RefreshToken};
use crate::transport::{ClientOptions, Clock, Transport};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use url::Url;

/// How long before expiry an access token is refreshed, unless configured otherwise.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The message of every request made while the connection holds no tokens.
const NOT_AUTHORIZED: &str = "the connection is not authorized; authorize it (sign in as a user with access to the instance, or use client credentials) before sending requests";

/// How the authorizer gets its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// A signed-in user: authorization code with PKCE, then refresh tokens.
    AuthorizationCode,
    /// The app itself (an application user in Dataverse).
    ClientCredentials,
}

/// An [`Authorizer`] backed by Microsoft Entra ID for one connection.
///
/// - Authorization code flow with PKCE ([`OAuthAuthorizer::authorization_code`]): start with
///   [`authorization_request`](Self::authorization_request), finish with
///   [`complete_authorization`](Self::complete_authorization); later runs load the tokens from
///   the [`TokenStore`] or take them from [`OAuthAuthorizerBuilder::with_token_set`].
/// - Client credentials ([`OAuthAuthorizer::client_credentials`]) for an application user.
///
/// The access token is cached and refreshed [`DEFAULT_REFRESH_MARGIN`] before it expires. However
/// many tasks ask at once, one token request is made. Every new token set (a rotated refresh
/// token included) is saved to the store. [`revoke`](Self::revoke) forgets the tokens; requests
/// then fail with a "connection is not authorized" error until the connection is authorized
/// again. Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct OAuthAuthorizer {
    inner: Arc<Inner>,
}

struct Inner {
    flow: Flow,
    app: EntraApp,
    instance: InstanceUrl,
    authorize_endpoint: Url,
    endpoint: TokenEndpoint,
    store: Arc<dyn TokenStore>,
    refresh_margin: Duration,
    clock: WallClock,
    state: Mutex<State>,
}

/// What the cache holds. Guarded by an async mutex that is held across a token request, which
/// makes the refresh single-flight: waiters find the fresh token when they get the lock.
#[derive(Default)]
struct State {
    tokens: Option<TokenSet>,
    /// Whether the store was read (or its content overruled).
    loaded: bool,
    /// Whether the connection was revoked and not authorized since.
    revoked: bool,
    /// A token set that could not be saved yet; saving is tried again on the next request.
    unsaved: bool,
}

impl OAuthAuthorizer {
    /// Starts building an authorizer for the authorization code flow with PKCE: an admin or user
    /// with API access to the instance signs in. `app` needs a redirect URI.
    pub fn authorization_code(connection: &Connection, app: EntraApp) -> OAuthAuthorizerBuilder {
        OAuthAuthorizerBuilder::new(Flow::AuthorizationCode, connection, app)
    }

    /// Starts building an authorizer for client credentials: the app signs in as itself, as an
    /// application user of the instance. `app` needs a client secret and a specific tenant.
    pub fn client_credentials(connection: &Connection, app: EntraApp) -> OAuthAuthorizerBuilder {
        OAuthAuthorizerBuilder::new(Flow::ClientCredentials, connection, app)
    }

    /// The instance this authorizer's tokens are for.
    pub fn instance(&self) -> &InstanceUrl {
        &self.inner.instance
    }

    /// The app registration in use.
    pub fn app(&self) -> &EntraApp {
        &self.inner.app
    }

    /// Starts a sign-in: a URL for the admin's browser with a fresh `state` and PKCE challenge.
    pub fn authorization_request(
        &self,
        options: &AuthorizeOptions,
    ) -> Result<AuthorizationRequest> {
        let inner = &self.inner;
        if inner.flow != Flow::AuthorizationCode {
            return Err(Error::config(
                "this authorizer uses client credentials; build it with `OAuthAuthorizer::authorization_code` to sign a user in",
            ));
        }
        let redirect_uri = inner.app.redirect_uri().ok_or_else(missing_redirect_uri)?;
        AuthorizationRequest::build(
            &inner.authorize_endpoint,
            inner.app.client_id(),
            redirect_uri,
            &inner.instance,
            inner.app.is_confidential(),
            options,
        )
    }

    /// Finishes a sign-in from the redirect the host received (the full URL or its query):
    /// checks the `state`, redeems the code with the PKCE verifier (and the client secret of a
    /// confidential client), keeps the tokens and saves them to the store.
    ///
    /// The returned token set is what was saved; the connection is authorized from now on.
    pub async fn complete_authorization(
        &self,
        request: AuthorizationRequest,
        redirect: &str,
    ) -> Result<TokenSet> {
        let inner = &self.inner;
        if inner.flow != Flow::AuthorizationCode {
            return Err(Error::config(
                "this authorizer uses client credentials; build it with `OAuthAuthorizer::authorization_code` to sign a user in",
            ));
        }
        if request.instance() != &inner.instance {
            return Err(Error::config(format!(
                "this sign-in was started for the instance {}, not {}; start it from this connection",
                request.instance(),
                inner.instance
            )));
        }
        let code = request.code_from_redirect(redirect)?;
        let mut form = TokenForm::new(Grant::AuthorizationCode, inner.app.client_id())
            .field("scope", request.scopes().join(" "))
            .secret("code", code.secret())
            .field("redirect_uri", request.redirect_uri().as_str())
            .secret("code_verifier", request.verifier().secret());
        if let Some(secret) = inner.app.client_secret() {
            form = form.secret("client_secret", secret.secret());
        }
        let response = inner
            .endpoint
            .request(Grant::AuthorizationCode, form)
            .await?;
        let tokens = self.tokens_from(response, request.scopes());
        let mut state = inner.state.lock().await;
        self.install(&mut state, tokens.clone()).await?;
        Ok(tokens)
    }

    /// Client credentials: requests a token now, proving the credentials work, and marks the
    /// connection authorized again after a [`revoke`](Self::revoke).
    pub async fn authorize(&self) -> Result<()> {
        if self.inner.flow != Flow::ClientCredentials {
            return Err(Error::config(
                "a user-signed-in connection is authorized through `authorization_request` and `complete_authorization`",
            ));
        }
        let mut state = self.inner.state.lock().await;
        let tokens = self.fetch(&state).await?;
        state.tokens = Some(tokens);
        state.loaded = true;
        state.revoked = false;
        Ok(())
    }

    /// Replaces the tokens with `tokens` (for instance imported from an earlier run), saves
    /// them to the store and marks the connection authorized. Refused if they belong to
    /// another instance.
    pub async fn set_token_set(&self, tokens: TokenSet) -> Result<()> {
        tokens.ensure_instance(&self.inner.instance)?;
        let mut state = self.inner.state.lock().await;
        self.install(&mut state, tokens).await
    }

    /// The current token set, if the connection is authorized (loading it from the store on
    /// first use). Nothing is requested from Entra ID.
    pub async fn token_set(&self) -> Result<Option<TokenSet>> {
        let mut state = self.inner.state.lock().await;
        self.load(&mut state).await?;
        Ok(state.tokens.clone())
    }

    /// Revokes the connection: forgets the tokens here and in the store. Every request fails
    /// with a "connection is not authorized" error until the connection is authorized again.
    ///
    /// Entra ID has no endpoint to revoke a single refresh token; to cut access at the source,
    /// remove the user's consent or the application user in the environment.
    pub async fn revoke(&self) -> Result<()> {
        let mut state = self.inner.state.lock().await;
        state.tokens = None;
        state.loaded = true;
        state.revoked = true;
        state.unsaved = false;
        self.inner
            .store
            .clear()
            .await
            .map_err(|e| store_error("forget", e))
    }

    /// A valid access token; refreshes when `force` or when the cached one is within the
    /// margin of expiry. Single-flight through the state lock.
    async fn token(&self, rejected: Option<&AccessToken>) -> Result<AccessToken> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        self.load(&mut state).await?;
        if state.revoked {
            return Err(Error::auth(NOT_AUTHORIZED));
        }
        if state.unsaved {
            if let Some(tokens) = state.tokens.clone() {
                self.save(&mut state, &tokens).await?;
            }
        }
        let now = inner.clock.now();
        if let Some(tokens) = &state.tokens {
            let fresh_enough = match rejected {
                // Another task already replaced the refused token.
                Some(rejected) => tokens.access_token() != rejected && now < tokens.expires_at(),
                None => later(now, inner.refresh_margin) < tokens.expires_at(),
            };
            if fresh_enough {
                return Ok(tokens.access_token().clone());
            }
        } else if inner.flow == Flow::AuthorizationCode {
            return Err(Error::auth(NOT_AUTHORIZED));
        }
        match self.fetch(&state).await {
            Ok(tokens) => {
                let token = tokens.access_token().clone();
                // Keep the new set before saving: Entra may have rotated the refresh token,
                // and a failed save is retried with this set, never the old one.
                state.tokens = Some(tokens.clone());
                if inner.flow == Flow::AuthorizationCode {
                    self.save(&mut state, &tokens).await?;
                }
                Ok(token)
            }
            // A refresh ahead of expiry that failed for a passing reason keeps the current,
            // still valid token; the next request tries again.
            Err(error)
                if rejected.is_none()
                    && !matches!(error.kind(), ErrorKind::Auth | ErrorKind::Config) =>
            {
                match &state.tokens {
                    Some(tokens) if now < tokens.expires_at() => Ok(tokens.access_token().clone()),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// One token request: a refresh (code flow) or a client credentials grant.
    async fn fetch(&self, state: &State) -> Result<TokenSet> {
        let inner = &self.inner;
        match inner.flow {
            Flow::ClientCredentials => {
                let secret = inner.app.client_secret().ok_or_else(missing_secret)?;
                let scope = ResourceScope::Default.scope_for(&inner.instance.resource());
                let form = TokenForm::new(Grant::ClientCredentials, inner.app.client_id())
                    .field("scope", scope.clone())
                    .secret("client_secret", secret.secret());
                let mut response = inner
                    .endpoint
                    .request(Grant::ClientCredentials, form)
                    .await?;
                // Client credentials never carry a refresh token; ignore one a stand-in sends.
                response.refresh_token = None;
                Ok(self.tokens_from(response, &[scope]))
            }
            Flow::AuthorizationCode => {
                let current = state
                    .tokens
                    .as_ref()
                    .ok_or_else(|| Error::auth(NOT_AUTHORIZED))?;
                let refresh = current.refresh_token().ok_or_else(|| {
                    Error::auth(
                        "the access token expired and there is no refresh token (the sign-in did not grant `offline_access`); re-authorize the connection",
                    )
                })?;
                let scopes = self.refresh_scopes(current);
                let mut form = TokenForm::new(Grant::RefreshToken, inner.app.client_id())
                    .field("scope", scopes.join(" "))
                    .secret("refresh_token", refresh.secret());
                if let Some(secret) = inner.app.client_secret() {
                    form = form.secret("client_secret", secret.secret());
                }
                let response = inner.endpoint.request(Grant::RefreshToken, form).await?;
                Ok(current.refreshed(self.tokens_from(response, &scopes)))
            }
        }
    }

    /// The scopes of a refresh: the instance scopes granted before, plus `offline_access`.
    fn refresh_scopes(&self, tokens: &TokenSet) -> Vec<String> {
        let resource = self.inner.instance.resource();
        let mut scopes: Vec<String> = tokens
            .scopes()
            .iter()
            .filter(|s| s.starts_with(&format!("{resource}/")))
            .cloned()
            .collect();
        if scopes.is_empty() {
            scopes.push(ResourceScope::Default.scope_for(&resource));
        }
        scopes.push("offline_access".to_owned());
        scopes
    }

    /// A token set from a token response; granted scopes as reported, else as requested.
    fn tokens_from(&self, response: TokenResponse, requested: &[String]) -> TokenSet {
        let expires_at = later(self.inner.clock.now(), response.expires_in);
        let scopes = if response.scopes.is_empty() {
            requested.to_vec()
        } else {
            response.scopes
        };
        let mut tokens = TokenSet::new(
            self.inner.instance.clone(),
            AccessToken::new(response.access_token),
            expires_at,
        )
        .with_scopes(scopes);
        if let Some(refresh) = response.refresh_token {
            tokens = tokens.with_refresh_token(RefreshToken::new(refresh));
        }
        tokens
    }

    /// Reads the store, refusing tokens of another instance. Read once when it has tokens (or
    /// for client credentials, which never store any); an empty store is read again on later
    /// calls of the code flow, so tokens another process saves there are picked up.
    async fn load(&self, state: &mut State) -> Result<()> {
        if state.loaded {
            return Ok(());
        }
        let stored = self
            .inner
            .store
            .load()
            .await
            .map_err(|e| store_error("load", e))?;
        if let Some(tokens) = stored {
            tokens.ensure_instance(&self.inner.instance)?;
            state.tokens = Some(tokens);
            state.loaded = true;
        }
        if self.inner.flow == Flow::ClientCredentials {
            state.loaded = true;
        }
        Ok(())
    }

    /// Keeps `tokens` as the authorized state and saves them.
    async fn install(&self, state: &mut State, tokens: TokenSet) -> Result<()> {
        state.tokens = Some(tokens.clone());
        state.loaded = true;
        state.revoked = false;
        self.save(state, &tokens).await
    }

    async fn save(&self, state: &mut State, tokens: &TokenSet) -> Result<()> {
        match self.inner.store.save(tokens).await {
            Ok(()) => {
                state.unsaved = false;
                Ok(())
            }
            Err(e) => {
                state.unsaved = true;
                Err(store_error("save", e))
            }
        }
    }
}

#[async_trait]
impl Authorizer for OAuthAuthorizer {
    async fn access_token(&self) -> Result<AccessToken> {
        self.token(None).await
    }

    async fn refresh_rejected(&self, rejected: &AccessToken) -> Result<AccessToken> {
        self.token(Some(rejected)).await
    }
}

impl fmt::Debug for OAuthAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("OAuthAuthorizer")
            .field("flow", &inner.flow)
            .field("instance", &inner.instance)
            .field("app", &inner.app)
            .field("store", &inner.store)
            .field("refresh_margin", &inner.refresh_margin)
            .finish_non_exhaustive()
    }
}

/// Builds an [`OAuthAuthorizer`]; every setting has a documented default.
#[must_use]
pub struct OAuthAuthorizerBuilder {
    flow: Flow,
    connection: Connection,
    app: EntraApp,
    store: Option<Arc<dyn TokenStore>>,
    tokens: Option<TokenSet>,
    refresh_margin: Duration,
    options: ClientOptions,
}

impl fmt::Debug for OAuthAuthorizerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthAuthorizerBuilder")
            .field("flow", &self.flow)
            .field("instance", self.connection.instance())
            .field("app", &self.app)
            .field("tokens", &self.tokens)
            .field("refresh_margin", &self.refresh_margin)
            .finish_non_exhaustive()
    }
}

impl OAuthAuthorizerBuilder {
    fn new(flow: Flow, connection: &Connection, app: EntraApp) -> Self {
        Self {
            flow,
            connection: connection.clone(),
            app,
            store: None,
            tokens: None,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            options: ClientOptions::default(),
        }
    }

    /// Where tokens are loaded from and saved to. Default: a new [`MemoryTokenStore`].
    pub fn with_token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Starts with `tokens` (saved by an earlier run) instead of what the store holds. Refused
    /// by [`build`](Self::build) if they belong to another instance. Default: none.
    pub fn with_token_set(mut self, tokens: TokenSet) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// How long before expiry the access token is refreshed. Default:
    /// [`DEFAULT_REFRESH_MARGIN`] (5 minutes).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// How token requests are sent: timeouts, user agent, retries (`temporarily_unavailable`,
    /// HTTP 429, 502-504, network failures) and the clock that decides when a token is due
    /// for refresh (with a [`crate::VirtualClock`], a `sleep` moves token expiry time forward
    /// in tests). Default: [`ClientOptions::default`].
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Validates the settings and builds the authorizer.
    pub fn build(self) -> Result<OAuthAuthorizer> {
        let tenant = self.app.tenant();
        match self.flow {
            Flow::ClientCredentials => {
                if self.app.client_secret().is_none() {
                    return Err(missing_secret());
                }
                if !tenant.is_specific() {
                    return Err(Error::config(format!(
                        "client credentials need the directory (tenant) id or domain, not `{tenant}`"
                    )));
                }
            }
            Flow::AuthorizationCode => {
                if self.app.redirect_uri().is_none() {
                    return Err(missing_redirect_uri());
                }
            }
        }
        let instance = self.connection.instance().clone();
        if let Some(tokens) = &self.tokens {
            tokens.ensure_instance(&instance)?;
        }
        let authority = self.connection.authority();
        let token_url = endpoint_url(authority, tenant, "token")?;
        let authorize_endpoint = endpoint_url(authority, tenant, "authorize")?;
        let clock = Arc::clone(self.options.clock());
        let transport = Transport::new(self.options)?;
        let state = State {
            loaded: self.tokens.is_some(),
            tokens: self.tokens,
            ..State::default()
        };
        Ok(OAuthAuthorizer {
            inner: Arc::new(Inner {
                flow: self.flow,
                app: self.app,
                instance,
                authorize_endpoint,
                endpoint: TokenEndpoint::new(transport, token_url),
                store: self
                    .store
                    .unwrap_or_else(|| Arc::new(MemoryTokenStore::new())),
                refresh_margin: self.refresh_margin,
                clock: WallClock::new(clock),
                state: Mutex::new(state),
            }),
        })
    }
}

/// Wall-clock time driven by a [`Clock`]: the UTC time at creation plus the clock's elapsed
/// time, so a virtual clock moves expiry decisions in tests.
struct WallClock {
    clock: Arc<dyn Clock>,
    base_instant: Instant,
    base_utc: DateTime<Utc>,
}

impl WallClock {
    fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base_instant: clock.now(),
            base_utc: Utc::now(),
            clock,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let elapsed = self
            .clock
            .now()
            .saturating_duration_since(self.base_instant);
        later(self.base_utc, elapsed)
    }
}

/// `at` plus `duration`, saturating at the latest representable time (a token endpoint may
/// send any `expires_in`, a host any margin).
fn later(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| at.checked_add_signed(duration))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn missing_secret() -> Error {
    Error::config(
        "client credentials need the app's client secret; add it with `EntraApp::builder(..).with_client_secret(..)`",
    )
}

fn missing_redirect_uri() -> Error {
    Error::config(
        "the sign-in needs the redirect URI registered on the app; add it with `EntraApp::builder(..).with_redirect_uri(..)`",
    )
}

fn store_error(action: &str, source: StoreError) -> Error {
    Error::auth(format!(
        "the token store could not {action} the connection's tokens; check the host's token storage"
    ))
    .with_source(source)
}
