//! [`AuthorizationCodeAuthorizer`]: a user signs in (authorization code flow with PKCE); the
//! tokens are then refreshed with the refresh token and kept in the host's [`TokenStore`].

use super::Authorizer;
use super::cache::{DEFAULT_REFRESH_MARGIN, Persistence, TokenCache, TokenSource, WallClock};
use super::code_flow::{AuthorizationRequest, AuthorizeOptions, DEFAULT_SIGN_IN_LIFETIME};
use super::config::{EntraApp, ResourceScope};
use super::entra::{Grant, TokenEndpoint, TokenForm, endpoint_url};
use super::store::{MemoryTokenStore, TokenStore};
use super::token::TokenSet;
use crate::connection::{Connection, InstanceUrl};
use crate::error::{Error, Result};
use crate::secret::{AccessToken, AuthorizationCode};
use crate::transport::{ClientOptions, Transport};
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// An [`Authorizer`] for a connection a user signed in to: the authorization code flow with
/// PKCE against Microsoft Entra ID.
///
/// Start a sign-in with [`authorization_request`](Self::authorization_request) and finish it
/// with [`complete_authorization`](Self::complete_authorization), on this instance or any
/// other built the same way (another replica, or after a restart: the pending
/// [`AuthorizationRequest`] is a serde value). Later runs load the tokens from the
/// [`TokenStore`] or take them from [`AuthorizationCodeAuthorizerBuilder::with_token_set`].
///
/// The access token is cached and refreshed [`DEFAULT_REFRESH_MARGIN`] before it expires; however
/// many tasks ask at once, one token request is made. Every new token set (a rotated refresh
/// token included) is saved to the store. [`revoke`](Self::revoke) forgets the tokens. Cloning
/// is cheap and clones share the cache.
///
/// Only sign-in calls exist on this type; an app signing in as itself uses
/// [`ClientCredentialsAuthorizer`](crate::ClientCredentialsAuthorizer):
///
/// ```compile_fail,E0599
/// # async fn run(authorizer: d365_connector::AuthorizationCodeAuthorizer) {
/// authorizer.authorize().await; // no such method: a user signs in instead
/// # }
/// ```
#[derive(Clone)]
pub struct AuthorizationCodeAuthorizer {
    inner: Arc<Inner>,
}

struct Inner {
    cache: TokenCache,
    tokens: UserTokens,
    authorize_endpoint: Url,
    sign_in_lifetime: Duration,
}

impl AuthorizationCodeAuthorizer {
    /// Starts building an authorizer for `connection`: an admin or user with API access to the
    /// instance signs in through `app`, which needs a redirect URI.
    pub fn builder(connection: &Connection, app: EntraApp) -> AuthorizationCodeAuthorizerBuilder {
        AuthorizationCodeAuthorizerBuilder {
            connection: connection.clone(),
            app,
            store: None,
            tokens: None,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            sign_in_lifetime: DEFAULT_SIGN_IN_LIFETIME,
            options: ClientOptions::default(),
        }
    }

    /// The instance this authorizer's tokens are for.
    pub fn instance(&self) -> &InstanceUrl {
        self.inner.cache.instance()
    }

    /// The app registration in use.
    pub fn app(&self) -> &EntraApp {
        &self.inner.tokens.app
    }

    /// Starts a sign-in: a URL for the admin's browser with a fresh `state` and PKCE challenge.
    /// Keep the returned request (it is a serde value) until the redirect arrives.
    pub fn authorization_request(
        &self,
        options: &AuthorizeOptions,
    ) -> Result<AuthorizationRequest> {
        let app = &self.inner.tokens.app;
        let redirect_uri = app.redirect_uri().ok_or_else(missing_redirect_uri)?;
        AuthorizationRequest::build(
            &self.inner.authorize_endpoint,
            app.client_id(),
            redirect_uri,
            self.instance(),
            app.is_confidential(),
            options,
            self.inner.cache.now(),
        )
    }

    /// Finishes a sign-in from the redirect the host received (the full URL or its query):
    /// checks that `request` was made for this instance and app and has not expired, checks
    /// the `state` (a CSRF guard), redeems the code with the PKCE verifier (and the app's
    /// credential, for a confidential client), keeps the tokens and saves them to the store.
    ///
    /// The returned token set is what was saved; the connection is authorized from now on.
    pub async fn complete_authorization(
        &self,
        request: AuthorizationRequest,
        redirect: &str,
    ) -> Result<TokenSet> {
        let inner = &self.inner;
        self.ensure_own(&request)?;
        request.ensure_current(inner.cache.now(), inner.sign_in_lifetime)?;
        let code = request.code_from_redirect(redirect)?;
        let tokens = inner.tokens.redeem(&request, &code).await?;
        inner.cache.install(tokens.clone()).await?;
        Ok(tokens)
    }

    /// Replaces the tokens with `tokens` (for instance imported from an earlier run), saves
    /// them to the store and marks the connection authorized. Refused if they belong to
    /// another instance.
    pub async fn set_token_set(&self, tokens: TokenSet) -> Result<()> {
        self.inner.cache.install(tokens).await
    }

    /// The current token set, if the connection is authorized (loading it from the store on
    /// first use). Nothing is requested from Entra ID.
    pub async fn token_set(&self) -> Result<Option<TokenSet>> {
        self.inner.cache.token_set().await
    }

    /// Revokes the connection: forgets the tokens here and in the store. Every request fails
    /// with a "connection is not authorized" error until a user signs in again (or tokens are
    /// set).
    ///
    /// Entra ID has no endpoint to revoke a single refresh token; to cut access at the source,
    /// remove the user's consent in the tenant.
    pub async fn revoke(&self) -> Result<()> {
        self.inner.cache.revoke().await
    }

    /// Refuses a sign-in started for another instance or app.
    fn ensure_own(&self, request: &AuthorizationRequest) -> Result<()> {
        if request.instance() != self.instance() {
            return Err(Error::config(format!(
                "this sign-in was started for the instance {}, not {}; start it from this connection",
                request.instance(),
                self.instance()
            )));
        }
        if request.client_id() != self.app().client_id() {
            return Err(Error::config(format!(
                "this sign-in was started for the app {}, not {}; complete it with an authorizer built with the same app",
                request.client_id(),
                self.app().client_id()
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Authorizer for AuthorizationCodeAuthorizer {
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

impl fmt::Debug for AuthorizationCodeAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationCodeAuthorizer")
            .field("app", self.app())
            .field("cache", &self.inner.cache)
            .field("sign_in_lifetime", &self.inner.sign_in_lifetime)
            .finish_non_exhaustive()
    }
}

/// The token requests of a signed-in user: redeeming the code, then refreshing.
struct UserTokens {
    app: EntraApp,
    instance: InstanceUrl,
    endpoint: TokenEndpoint,
    clock: WallClock,
}

impl UserTokens {
    /// Redeems the authorization `code` of `request`.
    async fn redeem(
        &self,
        request: &AuthorizationRequest,
        code: &AuthorizationCode,
    ) -> Result<TokenSet> {
        let grant = Grant::AuthorizationCode;
        let response = self
            .endpoint
            .request(grant, || {
                self.with_credential(
                    TokenForm::new(grant, self.app.client_id())
                        .field("scope", request.scopes().join(" "))
                        .secret("code", code.secret())
                        .field("redirect_uri", request.redirect_uri().as_str())
                        .secret("code_verifier", request.verifier().secret()),
                )
            })
            .await?;
        Ok(response.into_token_set(&self.instance, request.scopes(), self.clock.now()))
    }

    /// `form` with the app's credential, for a confidential client.
    fn with_credential(&self, form: TokenForm) -> Result<TokenForm> {
        match self.app.credential() {
            Some(credential) => credential.add_to(
                form,
                self.app.client_id(),
                self.endpoint.url(),
                self.clock.now(),
            ),
            None => Ok(form),
        }
    }

    /// The scopes of a refresh: the instance scopes granted before, plus `offline_access`.
    fn refresh_scopes(&self, tokens: &TokenSet) -> Vec<String> {
        let resource = self.instance.resource();
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
}

#[async_trait]
impl TokenSource for UserTokens {
    /// A refresh with the current refresh token.
    async fn fetch(&self, current: Option<&TokenSet>) -> Result<TokenSet> {
        let current = current.ok_or_else(|| Error::auth(super::cache::NOT_AUTHORIZED))?;
        let refresh = current.refresh_token().ok_or_else(|| {
            Error::auth(
                "the access token expired and there is no refresh token (the sign-in did not grant `offline_access`); re-authorize the connection",
            )
        })?;
        let scopes = self.refresh_scopes(current);
        let grant = Grant::RefreshToken;
        let response = self
            .endpoint
            .request(grant, || {
                self.with_credential(
                    TokenForm::new(grant, self.app.client_id())
                        .field("scope", scopes.join(" "))
                        .secret("refresh_token", refresh.secret()),
                )
            })
            .await?;
        let fresh = response.into_token_set(&self.instance, &scopes, self.clock.now());
        Ok(current.refreshed(fresh))
    }
}

/// Builds an [`AuthorizationCodeAuthorizer`]; every setting has a documented default.
#[must_use]
pub struct AuthorizationCodeAuthorizerBuilder {
    connection: Connection,
    app: EntraApp,
    store: Option<Arc<dyn TokenStore>>,
    tokens: Option<TokenSet>,
    refresh_margin: Duration,
    sign_in_lifetime: Duration,
    options: ClientOptions,
}

impl fmt::Debug for AuthorizationCodeAuthorizerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationCodeAuthorizerBuilder")
            .field("instance", self.connection.instance())
            .field("app", &self.app)
            .field("tokens", &self.tokens)
            .field("refresh_margin", &self.refresh_margin)
            .field("sign_in_lifetime", &self.sign_in_lifetime)
            .finish_non_exhaustive()
    }
}

impl AuthorizationCodeAuthorizerBuilder {
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

    /// How long a started sign-in can be completed. Default: [`DEFAULT_SIGN_IN_LIFETIME`]
    /// (10 minutes, about as long as Entra ID's authorization codes live).
    pub fn with_sign_in_lifetime(mut self, lifetime: Duration) -> Self {
        self.sign_in_lifetime = lifetime;
        self
    }

    /// How token requests are sent: timeouts, user agent, retries (`temporarily_unavailable`,
    /// HTTP 429, 502-504, network failures) and the clock that decides when a token is due
    /// for refresh and when a sign-in expires (with the testkit's `VirtualClock`, a `sleep` moves
    /// that time forward in tests). Default: [`ClientOptions::default`].
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Validates the settings and builds the authorizer.
    pub fn build(self) -> Result<AuthorizationCodeAuthorizer> {
        if self.app.redirect_uri().is_none() {
            return Err(missing_redirect_uri());
        }
        if self.sign_in_lifetime.is_zero() {
            return Err(Error::config(
                "the sign-in lifetime must be longer than zero; give the minutes a user has to finish signing in",
            ));
        }
        let instance = self.connection.instance().clone();
        if let Some(tokens) = &self.tokens {
            tokens.ensure_instance(&instance)?;
        }
        let authority = self.connection.authority();
        let token_url = endpoint_url(authority, self.app.tenant(), "token")?;
        let authorize_endpoint = endpoint_url(authority, self.app.tenant(), "authorize")?;
        let clock = WallClock::new(Arc::clone(self.options.clock()));
        let endpoint = TokenEndpoint::new(Transport::new(self.options)?, token_url);
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryTokenStore::new()));
        let cache = TokenCache::new(
            instance.clone(),
            store,
            Persistence::SignIn,
            self.refresh_margin,
            clock.clone(),
            self.tokens,
        );
        let tokens = UserTokens {
            app: self.app,
            instance,
            endpoint,
            clock,
        };
        Ok(AuthorizationCodeAuthorizer {
            inner: Arc::new(Inner {
                cache,
                tokens,
                authorize_endpoint,
                sign_in_lifetime: self.sign_in_lifetime,
            }),
        })
    }
}

fn missing_redirect_uri() -> Error {
    Error::config(
        "the sign-in needs the redirect URI registered on the app; add it with `EntraApp::builder(..).with_redirect_uri(..)`",
    )
}
