#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

mod auth;
mod checkpoint_store;
mod client;
mod connection;
mod error;
mod filter;
mod job;
mod mapping;
mod metadata;
mod secret;
mod sink;
mod source;
mod transport;
mod value;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

/// The attribute that implements the crate's async traits ([`RecordSink`], [`TargetLookup`],
/// [`TokenStore`], [`CheckpointStore`], [`Authorizer`]), re-exported so a host needs no
/// dependency of its own.
pub use async_trait::async_trait;
pub use auth::{
    AuthorizationCodeAuthorizer, AuthorizationCodeAuthorizerBuilder, AuthorizationRequest,
    AuthorizeOptions, Authorizer, ClientCertificate, ClientCredential, ClientCredentialsAuthorizer,
    ClientCredentialsAuthorizerBuilder, DEFAULT_IMDS_ENDPOINT, DEFAULT_REFRESH_MARGIN,
    DEFAULT_SIGN_IN_LIFETIME, EntraApp, EntraAppBuilder, ManagedIdentityAuthorizer,
    ManagedIdentityAuthorizerBuilder, ManagedIdentityEndpoint, ManagedIdentityId, MemoryTokenStore,
    Prompt, ResourceScope, StaticTokenAuthorizer, TenantId, TokenSet, TokenStore, WorkloadIdentity,
};
pub use checkpoint_store::{CheckpointStore, FileCheckpointStore};
pub use client::{DataverseClient, WhoAmI, who_am_i};

pub use connection::{Cloud, Connection, ConnectionBuilder, DEFAULT_API_VERSION, InstanceUrl};
pub use error::{Error, ErrorKind, Result, ThrottleLimit};
pub use filter::{Filter, FilterValue};
pub use job::{
    CancelToken, ChainOptions, ChainOutcome, ChainReport, DeletePolicy, JobChain, ProgressFn,
    RunOptions, SourceSpec, SyncCounts, SyncJob, SyncJobBuilder, SyncProgress, SyncReport,
    SyncStatus, USER_SYNC_SOURCE, USER_SYNC_TARGET,
};
pub use mapping::{
    DerivedLookup, FieldMapping, Literal, MAX_MATCH_FIELDS, MappingErrors, MappingSet,
    MultipleMatches, RecordFailure, RecordFailureKind, TargetField, TargetFieldType, TargetLookup,
    TargetRecord, TargetSchema, TargetValue, ValidatedMapping, Violation, ViolationKind, WriteMode,
};
pub use metadata::{
    AttributeMetadata, AttributeType, EntityMetadata, EntitySummary, MetadataOptions, OptionLabel,
    Relationship,
};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret, IdentityHeader, RefreshToken};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sink::SqlSink;
pub use sink::{
    BatchCheckpoint, JsonLinesSink, KeySet, MemorySink, Operation, RecordSink, WriteFailure,
    WriteResult,
};
pub use source::{
    Checkpoint, DEFAULT_PAGE_SIZE, EntitySource, MAX_AUTO_PARALLELISM, MAX_PAGE_SIZE, Page,
    PageCounts, Parallelism, Partition, ReadMode, ReadPlan, RecordChange,
};
// Web API JSON to records as a read decodes it, reachable for the crate's own tests and
// benchmarks only: not part of the API, and free to change in any release.
#[doc(hidden)]
pub use source::RecordDecoder;
#[cfg(feature = "postgres")]
pub use sqlx::PgPool;
#[cfg(feature = "sqlite")]
pub use sqlx::SqlitePool;
pub use transport::{
    ClientOptions, Clock, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_USER_AGENT, RetryPolicy, SystemClock, ThrottleStats,
};
pub use url::Url;
pub use value::{Field, Number, Record, Value};
