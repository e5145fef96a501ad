//! [`ClientCredentialsAuthorizer`]: the app signs in as itself (an application user in
//! Dataverse) with a client secret, a certificate or a federated token.

use super::Authorizer;
use super::cache::{DEFAULT_REFRESH_MARGIN, Persistence, TokenCache, TokenSource, WallClock};
use super::config::{EntraApp, ResourceScope};
use super::entra::{Grant, TokenEndpoint, TokenForm, endpoint_url};
use super::store::MemoryTokenStore;
use super::token::TokenSet;
use crate::connection::{Connection, InstanceUrl};
use crate::error::{Error, Result};
use crate::secret::AccessToken;
use crate::transport::{ClientOptions, Transport};
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An [`Authorizer`] for an application user: the client credentials grant against Microsoft
/// Entra ID, proven with the app's client secret, certificate or federated token (see
/// [`EntraAppBuilder`](crate::EntraAppBuilder)).
///
/// A token is requested when first needed (or by [`authorize`](Self::authorize)), cached and
/// requested again [`DEFAULT_REFRESH_MARGIN`] before it expires; however many tasks ask at once,
/// one token request is made. Nothing needs storing: the credential gets a new token at any
/// time. [`revoke`](Self::revoke) forgets the token until [`authorize`](Self::authorize) is
/// called again. Cloning is cheap and clones share the cache.
///
/// It keeps no tokens across restarts, so its builder takes no [`TokenStore`](crate::TokenStore)
/// (a store given to it would never be used):
///
/// ```compile_fail,E0599
/// # use d365_connector::{ClientCredentialsAuthorizer, Connection, EntraApp, MemoryTokenStore};
/// # use std::sync::Arc;
/// # fn build(connection: &Connection, app: EntraApp) {
/// let builder = ClientCredentialsAuthorizer::builder(connection, app)
///     .with_token_store(Arc::new(MemoryTokenStore::new())); // no such method
/// # }
/// ```
///
/// The sign-in calls of a user do not exist on this type:
///
/// ```compile_fail,E0599
/// # use d365_connector::{AuthorizeOptions, ClientCredentialsAuthorizer};
/// # fn run(authorizer: ClientCredentialsAuthorizer) {
/// let request = authorizer.authorization_request(&AuthorizeOptions::new()); // no such method
/// # }
/// ```
///
/// ```compile_fail,E0599
/// # use d365_connector::{AuthorizationRequest, ClientCredentialsAuthorizer};
/// # async fn run(authorizer: ClientCredentialsAuthorizer, request: AuthorizationRequest) {
/// authorizer.complete_authorization(request, "code=x&state=y").await; // no such method
/// # }
/// ```
#[derive(Clone)]
pub struct ClientCredentialsAuthorizer {
    inner: Arc<Inner>,
}

struct Inner {
    cache: TokenCache,
    tokens: AppTokens,
}

impl ClientCredentialsAuthorizer {
    /// Starts building an authorizer for `connection`: `app` (with a credential, in one specific
    /// tenant) signs in as itself, as an application user of the instance.
    pub fn builder(connection: &Connection, app: EntraApp) -> ClientCredentialsAuthorizerBuilder {
        ClientCredentialsAuthorizerBuilder {
            connection: connection.clone(),
            app,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
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

    /// Requests a token now, proving the credentials work, and marks the connection authorized
    /// again after a [`revoke`](Self::revoke).
    pub async fn authorize(&self) -> Result<()> {
        self.inner.cache.authorize(&self.inner.tokens).await?;
        Ok(())
    }

    /// The current token set, if a token was requested. Nothing is requested from Entra ID.
    pub async fn token_set(&self) -> Result<Option<TokenSet>> {
        self.inner.cache.token_set().await
    }

    /// Forgets the token; every request fails with a "connection is not authorized" error until
    /// [`authorize`](Self::authorize) is called again. To cut access at the source, remove the
    /// application user or the app's credential.
    pub async fn revoke(&self) -> Result<()> {
        self.inner.cache.revoke().await
    }
}

#[async_trait]
impl Authorizer for ClientCredentialsAuthorizer {
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

impl fmt::Debug for ClientCredentialsAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsAuthorizer")
            .field("app", self.app())
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

/// The client credentials grant of one app for one instance.
struct AppTokens {
    app: EntraApp,
    instance: InstanceUrl,
    endpoint: TokenEndpoint,
    clock: WallClock,
}

#[async_trait]
impl TokenSource for AppTokens {
    async fn fetch(&self, _current: Option<&TokenSet>) -> Result<TokenSet> {
        let credential = self.app.credential().ok_or_else(missing_credential)?;
        let scope = ResourceScope::Default.scope_for(&self.instance.resource());
        let grant = Grant::ClientCredentials;
        let mut response = self
            .endpoint
            .request(grant, || {
                credential.add_to(
                    TokenForm::new(grant, self.app.client_id()).field("scope", scope.clone()),
                    self.app.client_id(),
                    self.endpoint.url(),
                    self.clock.now(),
                )
            })
            .await?;
        // Client credentials never carry a refresh token; ignore one a stand-in sends.
        response.refresh_token = None;
        Ok(response.into_token_set(&self.instance, &[scope], self.clock.now()))
    }
}

/// Builds a [`ClientCredentialsAuthorizer`]; every setting has a documented default.
#[must_use]
pub struct ClientCredentialsAuthorizerBuilder {
    connection: Connection,
    app: EntraApp,
    refresh_margin: Duration,
    options: ClientOptions,
}

impl fmt::Debug for ClientCredentialsAuthorizerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsAuthorizerBuilder")
            .field("instance", self.connection.instance())
            .field("app", &self.app)
            .field("refresh_margin", &self.refresh_margin)
            .finish_non_exhaustive()
    }
}

impl ClientCredentialsAuthorizerBuilder {
    /// How long before expiry the access token is requested again. Default:
    /// [`DEFAULT_REFRESH_MARGIN`] (5 minutes).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// How token requests are sent: timeouts, user agent, retries and the clock that decides
    /// when a token is due (and the times in a certificate's client assertion). Default:
    /// [`ClientOptions::default`].
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Validates the settings and builds the authorizer.
    pub fn build(self) -> Result<ClientCredentialsAuthorizer> {
        let tenant = self.app.tenant();
        if self.app.credential().is_none() {
            return Err(missing_credential());
        }
        if !tenant.is_specific() {
            return Err(Error::config(format!(
                "client credentials need the directory (tenant) id or domain, not `{tenant}`"
            )));
        }
        let token_url = endpoint_url(self.connection.authority(), tenant, "token")?;
        let clock = WallClock::new(Arc::clone(self.options.clock()));
        let endpoint = TokenEndpoint::new(Transport::new(self.options)?, token_url);
        let instance = self.connection.instance().clone();
        let cache = TokenCache::new(
            instance.clone(),
            Arc::new(MemoryTokenStore::new()),
            Persistence::Credential,
            self.refresh_margin,
            clock.clone(),
            None,
        );
        let tokens = AppTokens {
            app: self.app,
            instance,
            endpoint,
            clock,
        };
        Ok(ClientCredentialsAuthorizer {
            inner: Arc::new(Inner { cache, tokens }),
        })
    }
}

fn missing_credential() -> Error {
    Error::config(
        "client credentials need the app's credential: a client secret (`EntraApp::builder(..).with_client_secret(..)`), a certificate (`with_client_certificate`) or a federated token file (`with_federated_token_file`, such as Kubernetes workload identity)",
    )
}
