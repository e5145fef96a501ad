//! Where the host keeps a connection's tokens across restarts.

use super::token::TokenSet;
use async_trait::async_trait;
use std::fmt;
use std::sync::Mutex;

/// The error a [`TokenStore`] returns: any error of the host's storage.
pub type StoreError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The host's storage for the tokens of ONE connection.
///
/// The authorizer loads the tokens on first use, saves every new token set (after sign-in and
/// after each refresh, so a refresh token rotated by Entra is never lost), and clears them when
/// the connection is revoked. The tokens are secrets: keep them encrypted at rest.
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The saved tokens, if any.
    async fn load(&self) -> Result<Option<TokenSet>, StoreError>;

    /// Saves `tokens`, replacing what was saved before.
    async fn save(&self, tokens: &TokenSet) -> Result<(), StoreError>;

    /// Forgets the saved tokens.
    async fn clear(&self) -> Result<(), StoreError>;
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
        self.tokens.lock().expect("token store lock").clone()
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
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        Ok(self.tokens())
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        *self.tokens.lock().expect("token store lock") = Some(tokens.clone());
        Ok(())
    }

    async fn clear(&self) -> Result<(), StoreError> {
        *self.tokens.lock().expect("token store lock") = None;
        Ok(())
    }
}
