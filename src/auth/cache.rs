//! The token cache every authorizer of the crate shares: the access token, refreshed ahead of
//! expiry by one task at a time, persisted through a [`TokenStore`], bound to one instance,
//! revocable.

use super::store::TokenStore;
use super::token::TokenSet;
use crate::connection::InstanceUrl;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::AccessToken;
use crate::transport::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long before expiry an access token is refreshed, unless configured otherwise.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The message of every request made while the connection holds no tokens.
pub(crate) const NOT_AUTHORIZED: &str = "the connection is not authorized; authorize it (sign in as a user with access to the instance, or use client credentials) before sending requests";

/// Where new token sets come from: a refresh token, a client credential, a managed identity.
#[async_trait]
pub(crate) trait TokenSource: Send + Sync {
    /// A new token set. `current` is what the cache holds (a refresh uses its refresh token).
    async fn fetch(&self, current: Option<&TokenSet>) -> Result<TokenSet>;
}

/// Whether the cache's tokens come from a sign-in the host must keep, or can be requested at
/// any time from a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// A user's sign-in: token sets are saved to the store after every change, an empty store
    /// is read again until it holds tokens, and no tokens means "not authorized".
    SignIn,
    /// A credential (client credentials, managed identity): tokens are requested when needed
    /// and never saved.
    Credential,
}

/// One connection's tokens, shared by an authorizer's clones.
pub(crate) struct TokenCache {
    instance: InstanceUrl,
    store: Arc<dyn TokenStore>,
    persistence: Persistence,
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

impl TokenCache {
    /// A cache for `instance`, starting with `tokens` (instead of what the store holds) when
    /// given.
    pub(crate) fn new(
        instance: InstanceUrl,
        store: Arc<dyn TokenStore>,
        persistence: Persistence,
        refresh_margin: Duration,
        clock: WallClock,
        tokens: Option<TokenSet>,
    ) -> Self {
        let state = State {
            loaded: tokens.is_some(),
            tokens,
            ..State::default()
        };
        Self {
            instance,
            store,
            persistence,
            refresh_margin,
            clock,
            state: Mutex::new(state),
        }
    }

    /// The instance the tokens are for.
    pub(crate) fn instance(&self) -> &InstanceUrl {
        &self.instance
    }

    /// The wall-clock time of the cache's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A valid access token: the cached one, or a new one from `source` when the cached one is
    /// within the margin of expiry (or is `rejected`). Single-flight through the state lock.
    pub(crate) async fn token(
        &self,
        source: &dyn TokenSource,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken> {
        let mut state = self.state.lock().await;
        self.load(&mut state).await?;
        if state.revoked {
            return Err(Error::auth(NOT_AUTHORIZED));
        }
        if state.unsaved {
            if let Some(tokens) = state.tokens.clone() {
                self.save(&mut state, &tokens).await?;
            }
        }
        let now = self.clock.now();
        match &state.tokens {
            Some(tokens) if self.fresh_enough(tokens, rejected, now) => {
                return Ok(tokens.access_token().clone());
            }
            None if self.persistence == Persistence::SignIn => {
                return Err(Error::auth(NOT_AUTHORIZED));
            }
            _ => {}
        }
        let fetched = source.fetch(state.tokens.as_ref()).await;
        self.keep_fetched(&mut state, fetched, rejected.is_none(), now)
            .await
    }

    /// Whether the cached `tokens` may be handed out.
    fn fresh_enough(
        &self,
        tokens: &TokenSet,
        rejected: Option<&AccessToken>,
        now: DateTime<Utc>,
    ) -> bool {
        match rejected {
            // Another task already replaced the refused token.
            Some(rejected) => tokens.access_token() != rejected && now < tokens.expires_at(),
            None => later(now, self.refresh_margin) < tokens.expires_at(),
        }
    }

    /// Keeps a fetched token set (saving it for a sign-in), or decides what a failed fetch
    /// means: a refresh ahead of expiry that failed for a passing reason keeps the current,
    /// still valid token; the next request tries again.
    async fn keep_fetched(
        &self,
        state: &mut State,
        fetched: Result<TokenSet>,
        ahead_of_expiry: bool,
        now: DateTime<Utc>,
    ) -> Result<AccessToken> {
        match fetched {
            Ok(tokens) => {
                let token = tokens.access_token().clone();
                // Keep the new set before saving: Entra may have rotated the refresh token,
                // and a failed save is retried with this set, never the old one.
                state.tokens = Some(tokens.clone());
                if self.persistence == Persistence::SignIn {
                    self.save(state, &tokens).await?;
                }
                Ok(token)
            }
            Err(error)
                if ahead_of_expiry
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

    /// Requests a token set from `source` now, proving the credential works, and marks the
    /// connection authorized again after a [`revoke`](Self::revoke).
    pub(crate) async fn authorize(&self, source: &dyn TokenSource) -> Result<TokenSet> {
        let mut state = self.state.lock().await;
        let tokens = source.fetch(state.tokens.as_ref()).await?;
        state.tokens = Some(tokens.clone());
        state.loaded = true;
        state.revoked = false;
        Ok(tokens)
    }

    /// Keeps `tokens` as the authorized state and saves them. Refused if they belong to
    /// another instance.
    pub(crate) async fn install(&self, tokens: TokenSet) -> Result<()> {
        tokens.ensure_instance(&self.instance)?;
        let mut state = self.state.lock().await;
        state.tokens = Some(tokens.clone());
        state.loaded = true;
        state.revoked = false;
        self.save(&mut state, &tokens).await
    }

    /// The current token set, loading it from the store on first use. Nothing is requested.
    pub(crate) async fn token_set(&self) -> Result<Option<TokenSet>> {
        let mut state = self.state.lock().await;
        self.load(&mut state).await?;
        Ok(state.tokens.clone())
    }

    /// Forgets the tokens here and in the store; requests fail with "not authorized" until the
    /// connection is authorized again.
    pub(crate) async fn revoke(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        state.tokens = None;
        state.loaded = true;
        state.revoked = true;
        state.unsaved = false;
        self.store
            .clear()
            .await
            .map_err(|e| store_error("forget", e))
    }

    /// Reads the store, refusing tokens of another instance. Read once when it has tokens (or
    /// for a credential, which never stores any); an empty store is read again on later calls
    /// of a sign-in, so tokens another process saves there are picked up.
    async fn load(&self, state: &mut State) -> Result<()> {
        if state.loaded {
            return Ok(());
        }
        let stored = self
            .store
            .load()
            .await
            .map_err(|e| store_error("load", e))?;
        if let Some(tokens) = stored {
            tokens.ensure_instance(&self.instance)?;
            state.tokens = Some(tokens);
            state.loaded = true;
        }
        if self.persistence == Persistence::Credential {
            state.loaded = true;
        }
        Ok(())
    }

    async fn save(&self, state: &mut State, tokens: &TokenSet) -> Result<()> {
        match self.store.save(tokens).await {
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

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("instance", &self.instance)
            .field("store", &self.store)
            .field("refresh_margin", &self.refresh_margin)
            .finish_non_exhaustive()
    }
}

/// Wall-clock time driven by a [`Clock`]: the UTC time at creation plus the clock's elapsed
/// time, so a virtual clock moves expiry decisions (and assertion times) in tests. Clones tell
/// the same time.
#[derive(Clone)]
pub(crate) struct WallClock {
    clock: Arc<dyn Clock>,
    base_instant: Instant,
    base_utc: DateTime<Utc>,
}

impl WallClock {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base_instant: clock.now(),
            base_utc: Utc::now(),
            clock,
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        let elapsed = self
            .clock
            .now()
            .saturating_duration_since(self.base_instant);
        later(self.base_utc, elapsed)
    }
}

/// `at` plus `duration`, saturating at the latest representable time (a token endpoint may
/// send any `expires_in`, a host any margin).
pub(crate) fn later(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| at.checked_add_signed(duration))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The host's store failed: a `Store` error saying what the connection could not do, as
/// retryable as the host's own error, with it as the source.
fn store_error(action: &str, source: Error) -> Error {
    Error::new(
        ErrorKind::Store,
        format!(
            "the token store could not {action} the connection's tokens; check the host's token storage"
        ),
    )
    .with_retryable(source.is_retryable())
    .with_source(source)
}
