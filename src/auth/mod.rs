//! Authorization: the [`Authorizer`] seam that hands out bearer tokens, and the Entra ID
//! (OAuth 2.0) authorizer behind it.

mod code_flow;
mod config;
mod entra;
mod oauth;
mod pkce;
mod store;
mod token;

pub use code_flow::{AuthorizationRequest, AuthorizeOptions, Prompt};
pub use config::{EntraApp, EntraAppBuilder, ResourceScope, TenantId};
pub use oauth::{DEFAULT_REFRESH_MARGIN, OAuthAuthorizer, OAuthAuthorizerBuilder};
pub use store::{MemoryTokenStore, StoreError, TokenStore};
pub use token::TokenSet;

pub(crate) use config::is_guid;

use crate::error::{Error, Result};
use crate::secret::AccessToken;
use async_trait::async_trait;
use std::fmt;

/// Hands out bearer tokens for one Dataverse instance.
///
/// The HTTP client asks for a token before each request. When the instance answers 401 it calls
/// [`Authorizer::refresh_rejected`] once with the token that was refused, and retries once.
#[async_trait]
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// A currently valid access token.
    async fn access_token(&self) -> Result<AccessToken>;

    /// A new token after the instance refused `rejected` (expired or revoked).
    ///
    /// Implementations that share a cache return the cached token when it already differs from
    /// `rejected` (another task refreshed first), so many rejected requests make one refresh.
    async fn refresh_rejected(&self, rejected: &AccessToken) -> Result<AccessToken>;
}

/// An [`Authorizer`] with one fixed token, for tests and short-lived tools. It cannot refresh.
#[derive(Clone)]
pub struct StaticTokenAuthorizer {
    token: AccessToken,
}

impl StaticTokenAuthorizer {
    /// Uses `token` for every request.
    pub fn new(token: AccessToken) -> Self {
        Self { token }
    }
}

impl fmt::Debug for StaticTokenAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokenAuthorizer")
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Authorizer for StaticTokenAuthorizer {
    async fn access_token(&self) -> Result<AccessToken> {
        Ok(self.token.clone())
    }

    async fn refresh_rejected(&self, _rejected: &AccessToken) -> Result<AccessToken> {
        Err(Error::auth(
            "the instance refused the access token and a static token cannot be refreshed; re-authorize the connection",
        ))
    }
}
