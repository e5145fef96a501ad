//! Certificate credentials: the app's RSA key and certificate, and the client assertion (a JWT
//! signed RS256 by `ring`) sent in place of a client secret.

use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How long a client assertion is valid: `exp` is this long after `nbf`.
pub(crate) const ASSERTION_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// An app registration's certificate credential: an RSA private key and the X.509 certificate
/// uploaded to the app registration (Certificates & secrets).
///
/// Each token request sends a fresh client assertion signed with the key (RS256), naming the
/// certificate by its SHA-256 thumbprint (`x5t#S256`). The key never leaves the process. Its
/// `Debug` shows the thumbprint only. Cloning is cheap.
#[derive(Clone)]
pub struct ClientCertificate {
    key: Arc<RsaKeyPair>,
    thumbprint: String,
}

impl ClientCertificate {
    /// Reads a PEM text holding the private key (`BEGIN PRIVATE KEY`, PKCS#8, or `BEGIN RSA
    /// PRIVATE KEY`, PKCS#1, unencrypted) and the certificate (`BEGIN CERTIFICATE`; with a chain,
    /// the first certificate is the app's), in any order.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self> {
        let blocks = pem::parse_many(pem.as_ref()).map_err(|e| {
            Error::config(format!(
                "the client certificate is not PEM text ({e}); give the PEM file with the private key and the certificate"
            ))
        })?;
        let key = private_key(&blocks)?;
        let certificate = blocks
            .iter()
            .find(|block| block.tag() == "CERTIFICATE")
            .ok_or_else(|| {
                Error::config(
                    "the client certificate PEM holds no certificate; append the certificate (-----BEGIN CERTIFICATE-----) uploaded to the app registration to the key",
                )
            })?
            .contents();
        if !contains(certificate, key.public().as_ref()) {
            return Err(Error::config(
                "the certificate in the client certificate PEM does not belong to its private key; put the key and the certificate made from it in the file",
            ));
        }
        Ok(Self {
            key: Arc::new(key),
            thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(certificate)),
        })
    }

    /// Reads [`from_pem`](Self::from_pem) from the file at `path`.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "cannot read the client certificate file {} ({e}); check the path and its permissions",
                path.display()
            ))
        })?;
        Self::from_pem(text).map_err(|e| e.with_context(format!("in {}", path.display())))
    }

    /// The certificate's SHA-256 thumbprint, base64url-encoded (the `x5t#S256` header). The
    /// app registration shows the SHA-1 thumbprint in hex; `openssl x509 -fingerprint -sha256`
    /// prints this one in hex.
    pub fn thumbprint_sha256(&self) -> &str {
        &self.thumbprint
    }

    /// A client assertion for `client_id` at the token endpoint `audience`, valid from `now`
    /// for [`ASSERTION_LIFETIME`].
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        audience: &Url,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let header = json!({ "alg": "RS256", "typ": "JWT", "x5t#S256": self.thumbprint });
        let issued = now.timestamp();
        let claims = json!({
            "aud": audience.as_str(),
            "iss": client_id,
            "sub": client_id,
            "jti": super::pkce::random_urlsafe(16)?,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ASSERTION_LIFETIME.as_secs() as i64,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| {
                Error::config("the client assertion could not be signed with the certificate's key")
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The one RSA private key among `blocks`.
fn private_key(blocks: &[pem::Pem]) -> Result<RsaKeyPair> {
    let keys: Vec<&pem::Pem> = blocks
        .iter()
        .filter(|block| block.tag().ends_with("PRIVATE KEY"))
        .collect();
    let key = match keys.as_slice() {
        [key] => key,
        [] => {
            return Err(Error::config(
                "the client certificate PEM holds no private key; give the file with the key (-----BEGIN PRIVATE KEY-----) and the certificate",
            ));
        }
        _ => {
            return Err(Error::config(
                "the client certificate PEM holds more than one private key; keep only the key of the certificate uploaded to the app registration",
            ));
        }
    };
    let parsed = match key.tag() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(key.contents()),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(key.contents()),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(Error::config(
                "the client certificate's private key is encrypted with a password; export it unencrypted (openssl pkcs8 -topk8 -nocrypt) and protect the file instead",
            ));
        }
        other => {
            return Err(Error::config(format!(
                "the client certificate's key is a `{other}`, not an RSA key; Entra ID certificate credentials here need an RSA key (2048 bits or more)"
            )));
        }
    };
    parsed.map_err(|rejected| {
        Error::config(format!(
            "the client certificate's private key cannot be used ({rejected}); give an unencrypted RSA key of 2048 to 8192 bits"
        ))
    })
}

/// Whether `needle` occurs in `haystack`: the certificate's DER carries its public key.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint_sha256", &self.thumbprint)
            .finish_non_exhaustive()
    }
}
