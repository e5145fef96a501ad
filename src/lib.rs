#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

mod auth;
mod connection;
mod error;
mod metadata;
mod secret;
mod value;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use auth::{Authorizer, StaticTokenAuthorizer};
pub use connection::{
    Cloud, Connection, ConnectionBuilder, DEFAULT_API_VERSION, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_USER_AGENT, InstanceUrl,
};
pub use error::{Error, ErrorKind, Result};
pub use metadata::{AttributeMetadata, AttributeType, EntityMetadata};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret, RefreshToken};
pub use url::Url;
pub use value::{Field, Number, Record, Value};
