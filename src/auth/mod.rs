//! Authorization: the [`Authorizer`] seam that hands out bearer tokens, and one authorizer per
//! way of getting them from Microsoft Entra ID, all sharing one token cache:
//! [`AuthorizationCodeAuthorizer`] (a user signs in), [`ClientCredentialsAuthorizer`] (the app
//! signs in with a secret, a certificate or a federated token) and
//! [`ManagedIdentityAuthorizer`] (an Azure managed identity).

mod authorization_code;
mod cache;
mod certificate;
mod client_credentials;
mod code_flow;
mod config;
mod credential;
mod entra;
mod managed_identity;
mod pkce;
mod scrub;
mod store;
mod token;

pub use authorization_code::{AuthorizationCodeAuthorizer, AuthorizationCodeAuthorizerBuilder};
pub use cache::DEFAULT_REFRESH_MARGIN;
pub use certificate::ClientCertificate;
pub use client_credentials::{ClientCredentialsAuthorizer, ClientCredentialsAuthorizerBuilder};
pub use code_flow::{AuthorizationRequest, AuthorizeOptions, DEFAULT_SIGN_IN_LIFETIME, Prompt};
pub use config::{EntraApp, EntraAppBuilder, ResourceScope, TenantId};
pub use credential::{ClientCredential, WorkloadIdentity};
pub use managed_identity::{
    DEFAULT_IMDS_ENDPOINT, ManagedIdentityAuthorizer, ManagedIdentityAuthorizerBuilder,
    ManagedIdentityEndpoint, ManagedIdentityId,
};
pub use store::{MemoryTokenStore, TokenStore};
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
///
/// An async trait: implement it with [`#[async_trait]`](crate::async_trait) (re-exported by
/// this crate), writing `async fn access_token(&self) -> Result<AccessToken>` and
/// `async fn refresh_rejected(&self, rejected: &AccessToken) -> Result<AccessToken>`.
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
