//! Sync jobs: a serde job definition, its run, the out-of-the-box user job and job chains.

mod chain;
mod report;
mod run;

pub use chain::{ChainOptions, ChainOutcome, ChainReport, JobChain};
pub use report::{SyncCounts, SyncReport, SyncStatus};
pub use run::{CancelToken, ProgressFn, RunOptions, SyncProgress};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::mapping::{MappingSet, TargetFieldType};
use crate::metadata::EntityMetadata;
use crate::source::{MAX_PAGE_SIZE, Parallelism, ReadMode};
use serde::{Deserialize, Serialize};

/// The Dynamics table the out-of-the-box job reads.
pub const USER_SYNC_SOURCE: &str = "systemuser";
/// The target object the out-of-the-box job writes.
pub const USER_SYNC_TARGET: &str = "User";

/// A data sync job: read one Dynamics entity, map every record, write it to a target object.
///
/// This is the public JSON format of a job file (see the README); what a host stores is what
/// the crate reads. Deserializing it with serde (a JSON column, a job file) refuses a key the
/// format does not know, naming it, so a misspelt key (`"delete"` for `"deletes"`) is never
/// silently ignored; [`SyncJob::from_json`] reads the same way and also checks the values.
/// In code, [`SyncJob::builder`] makes the same checked value.
///
/// ```
/// use d365_connector::{ErrorKind, SyncJob};
/// let misspelt = r#"{ "name": "Companies", "source": { "entity": "account" },
///   "target": { "object": "Company", "fields": { "Name": "string" } },
///   "mode": "insert", "mappings": [{ "source": "name", "target": "Name" }],
///   "delete": "propagate" }"#;
/// let error = serde_json::from_str::<SyncJob>(misspelt).unwrap_err();
/// assert!(error.to_string().contains("unknown field `delete`"), "{error}");
/// assert_eq!(SyncJob::from_json(misspelt).unwrap_err().kind(), ErrorKind::Config);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncJob {
    /// The job's name, unique within a chain.
    pub name: String,
    /// What to read.
    pub source: SourceSpec,
    /// The target object, write mode, identifiers and field mappings.
    #[serde(flatten)]
    pub mapping: MappingSet,
    /// What to do with records deleted in Dynamics. Default: `ignore`.
    #[serde(default)]
    pub deletes: DeletePolicy,
    /// With `deletes: reconcile`: reconcile every this many finished runs. Default: 1 (every
    /// run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_every: Option<u32>,
    /// The name of an earlier job of a chain that must succeed first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<String>,
    /// Set on the out-of-the-box job: its source and target are fixed, its mappings are not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub built_in: bool,
}

/// The Dynamics side of a job: the `source` object of a job file.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The entity's logical name (`contact`).
    pub entity: String,
    /// How later runs read only what changed. Default: `auto`.
    #[serde(default)]
    pub incremental: ReadMode,
    /// An OData filter passed through as given (`statecode eq 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Records per page (`Prefer: odata.maxpagesize`). Default: 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// How many partitions a first read (a full read, the first read of an incremental job)
    /// runs at once: `"auto"` (follow the server's `x-ms-dop-hint`, at most 16) or a number
    /// (`1`: one sequential read). Default: `auto`.
    #[serde(default)]
    pub parallelism: Parallelism,
}

/// What a job does with records deleted in Dynamics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletePolicy {
    /// Delete the target record (by its identifiers).
    Propagate,
    /// Propagate the deletions Dynamics reports, and every `reconcile_every` finished runs
    /// also read the table's primary ids alone and remove the target records missing from
    /// them ([`RecordSink::delete_missing`](crate::RecordSink::delete_missing)): for tables
    /// without change tracking, whose `modified_on` reads never see a deletion.
    Reconcile,
    /// Leave the target record; the deletion counts as skipped.
    #[default]
    Ignore,
}

impl SourceSpec {
    /// Reads the entity `entity` (its logical name, `contact`) with every default.
    pub fn new(entity: impl Into<String>) -> Self {
        Self {
            entity: entity.into(),
            incremental: ReadMode::default(),
            filter: None,
            page_size: None,
            parallelism: Parallelism::default(),
        }
    }
}

impl SyncJob {
    /// Starts a job in code: `name`, reading the entity `entity` (its logical name) and
    /// writing through `mapping`. Every other setting has the default of the job file;
    /// [`SyncJobBuilder::build`] checks the result as [`SyncJob::from_json`] does.
    ///
    /// ```
    /// use d365_connector::{DeletePolicy, FieldMapping, MappingSet, SyncJob, TargetField,
    ///     TargetFieldType, TargetSchema, WriteMode};
    /// let target = TargetSchema::new("Company")
    ///     .with_field("DynamicsId", TargetField::new(TargetFieldType::Id))
    ///     .with_field("Name", TargetField::new(TargetFieldType::String));
    /// let mapping = MappingSet::new(target, WriteMode::Upsert)
    ///     .with_identifier("DynamicsId")
    ///     .with_mapping(FieldMapping::source("accountid", "DynamicsId"))
    ///     .with_mapping(FieldMapping::source("name", "Name"));
    /// let job = SyncJob::builder("Accounts to Company", "account", mapping)
    ///     .with_filter("statecode eq 0")
    ///     .with_deletes(DeletePolicy::Propagate)
    ///     .build()?;
    /// # Ok::<(), d365_connector::Error>(())
    /// ```
    pub fn builder(
        name: impl Into<String>,
        entity: impl Into<String>,
        mapping: MappingSet,
    ) -> SyncJobBuilder {
        SyncJobBuilder {
            job: SyncJob {
                name: name.into(),
                source: SourceSpec::new(entity),
                mapping,
                deletes: DeletePolicy::default(),
                reconcile_every: None,
                depends_on: None,
                built_in: false,
            },
        }
    }

    /// Reads a job from its JSON form (serde, which refuses unknown keys), then checks its
    /// values, with a message that names the problem on bad input.
    pub fn from_json(json: &str) -> Result<Self> {
        let job: Self = serde_json::from_str(json).map_err(|e| {
            Error::config(format!(
                "the job definition is not valid ({e}); see the job file format in the README"
            ))
        })?;
        job.check()?;
        Ok(job)
    }

    /// The out-of-the-box job of an authorized connection, `User Sync_<connection name>`:
    /// Dynamics `systemuser` into the `User` object, upserting by the Dynamics user id, with
    /// first name, last name, primary email and username (`domainname`) mapped. Its source
    /// and target cannot be changed; its mappings can.
    pub fn user_sync(connection: &Connection) -> Self {
        let definition = serde_json::json!({
            "name": format!("User Sync_{}", connection.name()),
            "source": { "entity": USER_SYNC_SOURCE, "incremental": "auto" },
            "target": {
                "object": USER_SYNC_TARGET,
                "fields": {
                    "DynamicsUserId": "id", "FirstName": "string", "LastName": "string",
                    "Email": "string", "Username": "string"
                },
                "required": ["DynamicsUserId"]
            },
            "mode": "upsert",
            "identifiers": ["DynamicsUserId"],
            "mappings": [
                { "source": "systemuserid", "target": "DynamicsUserId" },
                { "source": "firstname", "target": "FirstName" },
                { "source": "lastname", "target": "LastName" },
                { "source": "internalemailaddress", "target": "Email" },
                { "source": "domainname", "target": "Username" }
            ],
            "deletes": "ignore",
            "built_in": true
        });
        serde_json::from_value(definition).expect("the out-of-the-box job definition is valid")
    }

    /// The identifier fields (with their types) that a deleted record's id fills: with
    /// `deletes: propagate`, every identifier must be mapped from the table's primary id.
    fn delete_key_fields(
        &self,
        metadata: &EntityMetadata,
    ) -> Result<Vec<(String, TargetFieldType)>> {
        if self.deletes == DeletePolicy::Ignore {
            return Ok(Vec::new());
        }
        let primary_id = metadata.primary_id_attribute();
        if self.mapping.identifiers.is_empty() {
            return Err(Error::config(format!(
                "job `{}` propagates deletes but has no identifiers to find the target record by; map `{primary_id}` to an identifier field or set \"deletes\": \"ignore\"",
                self.name
            )));
        }
        self.mapping
            .identifiers
            .iter()
            .map(|identifier| {
                let from_primary_id = self.mapping.mappings.iter().any(|m| {
                    m.target == *identifier && m.source.as_deref() == Some(primary_id)
                });
                let field_type = self.mapping.target.field(identifier).map(|f| f.field_type);
                match (from_primary_id, field_type) {
                    (true, Some(field_type)) => Ok((identifier.clone(), field_type)),
                    _ => Err(Error::config(format!(
                        "job `{}` propagates deletes, but identifier `{identifier}` is not mapped from the primary id `{primary_id}`; Dynamics reports a deleted record by that id only, so map `{primary_id}` to `{identifier}` or set \"deletes\": \"ignore\"",
                        self.name
                    ))),
                }
            })
            .collect()
    }

    /// Refuses a job whose definition is unusable before anything is sent.
    fn check(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::config(
                "the job has no name; give it one admins recognise",
            ));
        }
        if let Some(size) = self.source.page_size {
            if !(1..=MAX_PAGE_SIZE).contains(&size) {
                return Err(Error::config(format!(
                    "job `{}` asks for pages of {size} records; Dataverse serves 1 to {MAX_PAGE_SIZE}",
                    self.name
                )));
            }
        }
        if self.reconcile_every == Some(0) {
            return Err(Error::config(format!(
                "job `{}` has \"reconcile_every\": 0; reconcile every 1 or more runs",
                self.name
            )));
        }
        if self.reconcile_every.is_some() && self.deletes != DeletePolicy::Reconcile {
            return Err(Error::config(format!(
                "job `{}` sets \"reconcile_every\" without \"deletes\": \"reconcile\"; set both or neither",
                self.name
            )));
        }
        let target = self.mapping.target.object.as_str();
        if self.built_in && (self.source.entity != USER_SYNC_SOURCE || target != USER_SYNC_TARGET) {
            return Err(Error::config(format!(
                "`{}` is the out-of-the-box job: its source must stay `{USER_SYNC_SOURCE}` and its target `{USER_SYNC_TARGET}` (only its mappings can change); create a new job for other entities",
                self.name
            )));
        }
        Ok(())
    }
}

/// Builds a [`SyncJob`] in code (see [`SyncJob::builder`]); every setting not given has the
/// default of the job file.
#[must_use]
#[derive(Debug, Clone)]
pub struct SyncJobBuilder {
    job: SyncJob,
}

impl SyncJobBuilder {
    /// How later runs read only what changed (`source.incremental`). Default: `auto`.
    pub fn with_incremental(mut self, mode: ReadMode) -> Self {
        self.job.source.incremental = mode;
        self
    }

    /// An OData filter passed through as given (`source.filter`, `statecode eq 0`).
    pub fn with_filter(mut self, filter: impl Into<String>) -> Self {
        self.job.source.filter = Some(filter.into());
        self
    }

    /// Records per page (`source.page_size`), 1 to 5000. Default: 5000.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.job.source.page_size = Some(page_size);
        self
    }

    /// How many partitions a first read runs at once (`source.parallelism`). Default: `auto`.
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.job.source.parallelism = parallelism;
        self
    }

    /// What to do with records deleted in Dynamics (`deletes`). Default: `ignore`.
    pub fn with_deletes(mut self, deletes: DeletePolicy) -> Self {
        self.job.deletes = deletes;
        self
    }

    /// With [`DeletePolicy::Reconcile`]: reconcile every `runs` finished runs
    /// (`reconcile_every`). Default: every run.
    pub fn with_reconcile_every(mut self, runs: u32) -> Self {
        self.job.reconcile_every = Some(runs);
        self
    }

    /// In a chain, the name of an earlier job that must succeed first (`depends_on`).
    pub fn with_depends_on(mut self, job: impl Into<String>) -> Self {
        self.job.depends_on = Some(job.into());
        self
    }

    /// Checks the job as [`SyncJob::from_json`] does (a name, a page size Dataverse serves,
    /// `reconcile_every` only with `deletes: reconcile`) and returns it.
    pub fn build(self) -> Result<SyncJob> {
        self.job.check()?;
        Ok(self.job)
    }
}
