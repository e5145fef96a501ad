#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

mod auth;
mod client;
mod connection;
mod error;
mod filter;
mod metadata;
mod retry;
mod secret;
mod source;
mod value;

pub use auth::{Authorizer, StaticTokenAuthorizer};
pub use client::DataverseClient;
pub use connection::{
    Cloud, Connection, ConnectionBuilder, DEFAULT_API_VERSION, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_USER_AGENT, InstanceUrl,
};
pub use error::{Error, ErrorKind, Result};
pub use filter::{Filter, Literal};
pub use metadata::{AttributeMetadata, AttributeType, EntityMetadata};
pub use retry::{Clock, RetryPolicy, SystemClock, VirtualClock};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret, RefreshToken};
pub use source::{
    Checkpoint, DEFAULT_PAGE_SIZE, EntitySource, Page, ReadMode, RecordChange, RecordDecoder,
};
pub use url::Url;
pub use value::{Field, Number, Record, Value};
