//! Newtypes for credentials: they never print their value.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a secret string newtype whose `Debug` prints `[redacted]` and that has no `Display`.
macro_rules! secret_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret value itself. Keep it out of logs.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_string!(
    /// The client secret of an Entra ID app registration.
    ClientSecret
);
secret_string!(
    /// An OAuth 2.0 bearer access token for one Dataverse instance.
    AccessToken
);
secret_string!(
    /// An OAuth 2.0 refresh token. Entra may rotate it; always keep the newest one.
    RefreshToken
);
secret_string!(
    /// A one-time authorization code from the authorize redirect.
    AuthorizationCode
);
secret_string!(
    /// The `IDENTITY_HEADER` App Service and Azure Functions give a process to prove its
    /// managed identity requests come from inside the app.
    IdentityHeader
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_value() {
        let printed = format!(
            "{:?} {:?} {:?} {:?}",
            ClientSecret::new("s3cr3t-client"),
            AccessToken::new("eyJ0eXAi-access"),
            RefreshToken::new("0.AAAA-refresh"),
            AuthorizationCode::new("OAQABAAIAAA-code"),
        ) + &format!("{:?}", IdentityHeader::new("6a1b-identity-header"));
        for secret in [
            "s3cr3t-client",
            "eyJ0eXAi-access",
            "0.AAAA-refresh",
            "OAQABAAIAAA-code",
            "6a1b-identity-header",
        ] {
            assert!(!printed.contains(secret), "{printed} leaks {secret}");
        }
        assert!(printed.contains("AccessToken([redacted])"));
    }

    #[test]
    fn secret_gives_the_value_back() {
        assert_eq!(AccessToken::new("abc").secret(), "abc");
    }
}
