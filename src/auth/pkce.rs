//! PKCE (RFC 7636, S256) and the random `state` of the authorization code flow.

use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A PKCE code verifier: 32 random bytes, base64url encoded (43 characters).
///
/// Used once, so it is deliberately not `Clone`; its `Debug` never prints the value. It is
/// serde (a pending sign-in is stored by the host) and checked when read back.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct PkceVerifier(String);

impl Serialize for PkceVerifier {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl PkceVerifier {
    /// A fresh random verifier.
    pub(crate) fn generate() -> Result<Self> {
        Ok(Self(random_urlsafe(32)?))
    }

    /// The verifier itself, sent only to the token endpoint.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }

    /// The S256 challenge: `BASE64URL(SHA256(verifier))`.
    pub(crate) fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl TryFrom<String> for PkceVerifier {
    type Error = Error;

    /// Accepts a verifier of RFC 7636's form: 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`.
    fn try_from(value: String) -> Result<Self> {
        let valid = (43..=128).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if valid {
            Ok(Self(value))
        } else {
            Err(Error::config(
                "the stored sign-in's PKCE verifier is malformed; start the sign-in again",
            ))
        }
    }
}

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

/// `bytes` random bytes from the operating system, base64url encoded without padding.
pub(crate) fn random_urlsafe(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| {
        Error::config("the operating system did not provide random bytes for the sign-in")
            .with_source(std::io::Error::other(e.to_string()))
    })?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

/// Compares two strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_matches_rfc_7636_appendix_b() {
        let verifier = PkceVerifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned());
        assert_eq!(
            verifier.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_random_43_chars_and_redacted() {
        let a = PkceVerifier::generate().unwrap();
        let b = PkceVerifier::generate().unwrap();
        assert_eq!(a.secret().len(), 43);
        assert_ne!(a.secret(), b.secret());
        assert_eq!(format!("{a:?}"), "PkceVerifier([redacted])");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
