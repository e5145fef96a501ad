//! Where the host keeps a connection's tokens across restarts.

use super::token::TokenSet;
use crate::error::Result;
use async_trait::async_trait;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// The host's storage for the tokens of ONE connection signed in by a user.
///
/// An [`AuthorizationCodeAuthorizer`](crate::AuthorizationCodeAuthorizer) (the only authorizer
/// that takes one) loads the tokens on first use, saves every new token set (after sign-in and
/// after each refresh, so a refresh token rotated by Entra is never lost), and clears them when
/// the connection is revoked. Client credentials and managed identities keep no tokens: their
/// builders take no store, as a new token is requested from the credential at any time. The
/// tokens are secrets: keep them encrypted at rest.
///
/// An async trait: implement it with [`#[async_trait]`](crate::async_trait) (re-exported by
/// this crate), writing `async fn load(&self) -> Result<Option<TokenSet>>`,
/// `async fn save(&self, tokens: &TokenSet) -> Result<()>` and
/// `async fn clear(&self) -> Result<()>`. Fail with an [`ErrorKind::Store`](crate::ErrorKind)
/// error carrying the storage's own error as its source; the authorizer hands it back as is.
///
/// ```
/// use d365_connector::{async_trait, Error, ErrorKind, Result, TokenSet, TokenStore};
///
/// /// Tokens in one row of the host's database (a stand-in here).
/// #[derive(Debug, Default)]
/// struct RowStore(std::sync::Mutex<Option<String>>);
///
/// #[async_trait]
/// impl TokenStore for RowStore {
///     async fn load(&self) -> Result<Option<TokenSet>> {
///         let row = self.0.lock().unwrap().clone();
///         row.map(|json| serde_json::from_str(&json)).transpose().map_err(|e| {
///             Error::new(ErrorKind::Store, "the saved tokens are unreadable; sign in again")
///                 .with_source(e)
///         })
///     }
///
///     async fn save(&self, tokens: &TokenSet) -> Result<()> {
///         let json = serde_json::to_string(tokens)
///             .map_err(|e| Error::new(ErrorKind::Store, "the tokens cannot be saved").with_source(e))?;
///         *self.0.lock().unwrap() = Some(json);
///         Ok(())
///     }
///
///     async fn clear(&self) -> Result<()> {
///         *self.0.lock().unwrap() = None;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The saved tokens, if any.
    async fn load(&self) -> Result<Option<TokenSet>>;

    /// Saves `tokens`, replacing what was saved before.
    async fn save(&self, tokens: &TokenSet) -> Result<()>;

    /// Forgets the saved tokens.
    async fn clear(&self) -> Result<()>;
}

/// A [`TokenStore`] in memory: the default, which forgets everything when the process ends.
#[derive(Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<Option<TokenSet>>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `tokens`.
    pub fn with_tokens(tokens: TokenSet) -> Self {
        Self {
            tokens: Mutex::new(Some(tokens)),
        }
    }

    /// What the store holds now.
    pub fn tokens(&self) -> Option<TokenSet> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holds_tokens = self.tokens.lock().map(|t| t.is_some()).unwrap_or(false);
        f.debug_struct("MemoryTokenStore")
            .field("holds_tokens", &holds_tokens)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self) -> Result<Option<TokenSet>> {
        Ok(self.tokens())
    }

    async fn save(&self, tokens: &TokenSet) -> Result<()> {
        *self.tokens.lock().unwrap_or_else(PoisonError::into_inner) = Some(tokens.clone());
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        *self.tokens.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }
}
