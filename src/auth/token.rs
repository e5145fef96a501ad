//! The token set a host persists: what one authorization of one instance produced.

use crate::connection::InstanceUrl;
use crate::error::{Error, Result};
use crate::secret::{AccessToken, RefreshToken};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The tokens of one authorized connection, bound to the instance they were issued for.
///
/// A serde type: store it as JSON (it holds secrets, so store it like a password) and give it
/// back with [`crate::AuthorizationCodeAuthorizerBuilder::with_token_set`] or through a
/// [`crate::TokenStore`]. A token set is refused by a connection to any other instance.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    instance: InstanceUrl,
    access_token: AccessToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<RefreshToken>,
    expires_at: DateTime<Utc>,
    #[serde(default)]
    scopes: Vec<String>,
}

impl TokenSet {
    /// A token set for `instance` whose access token expires at `expires_at`.
    pub fn new(
        instance: InstanceUrl,
        access_token: AccessToken,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            instance,
            access_token,
            refresh_token: None,
            expires_at,
            scopes: Vec::new(),
        }
    }

    /// Adds the refresh token.
    #[must_use]
    pub fn with_refresh_token(mut self, refresh_token: RefreshToken) -> Self {
        self.refresh_token = Some(refresh_token);
        self
    }

    /// Sets the scopes the tokens were granted for.
    #[must_use]
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The instance these tokens belong to.
    pub fn instance(&self) -> &InstanceUrl {
        &self.instance
    }

    /// The bearer access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The refresh token, if Entra issued one (it does when `offline_access` was granted;
    /// never for client credentials).
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// When the access token expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The scopes granted, as Entra reported them (or as requested when it did not).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Refuses the set unless it was issued for `instance`.
    pub(crate) fn ensure_instance(&self, instance: &InstanceUrl) -> Result<()> {
        if &self.instance == instance {
            return Ok(());
        }
        Err(Error::config(format!(
            "the token set belongs to the instance {} and cannot be used for {}; a connection is bound to one instance, so authorize this connection on its own",
            self.instance, instance
        )))
    }

    /// Replaces the tokens after a refresh, keeping the old refresh token when Entra did not
    /// rotate it.
    pub(crate) fn refreshed(&self, mut fresh: TokenSet) -> TokenSet {
        if fresh.refresh_token.is_none() {
            fresh.refresh_token = self.refresh_token.clone();
        }
        if fresh.scopes.is_empty() {
            fresh.scopes = self.scopes.clone();
        }
        fresh
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("instance", &self.instance)
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}
