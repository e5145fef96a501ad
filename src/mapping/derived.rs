//! Derived mappings: a target field filled with the id of another target object's record,
//! found by match fields.

use super::schema::TargetRecord;
use crate::error::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The most match fields a derived lookup may use.
pub const MAX_MATCH_FIELDS: usize = 6;

/// How to find the record whose id a derived mapping writes.
///
/// ```json
/// { "object": "Company", "match": { "DynamicsId": "parentcustomerid" }, "multiple": "fail" }
/// ```
/// reads `parentcustomerid` from the Dynamics record and asks the host for the ids of the
/// `Company` records whose `DynamicsId` equals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedLookup {
    /// The target object searched (`Company`).
    pub object: String,
    /// Up to six pairs: a field of `object` and the source column whose value it must equal.
    #[serde(rename = "match")]
    pub match_fields: BTreeMap<String, String>,
    /// What to do when several records match; failing the record is the default.
    #[serde(default)]
    pub multiple: MultipleMatches,
}

/// The policy when a derived lookup finds more than one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultipleMatches {
    /// Use the first id the host returned.
    Any,
    /// Fail the record, naming how many matched.
    #[default]
    Fail,
}

/// Finds records of the host's target objects, for derived mappings.
///
/// The host implements it over its own storage. Conversion calls it once per derived field per
/// record, so implementations that serve big jobs usually cache. Runs hold it as an
/// `Arc<dyn TargetLookup>` ([`RunOptions::lookup`](crate::RunOptions::lookup)).
///
/// An async trait: implement it with [`#[async_trait]`](crate::async_trait) (re-exported by
/// this crate), writing `async fn find_ids(&self, object: &str, criteria: &TargetRecord) ->
/// Result<Vec<String>>`:
///
/// ```
/// use d365_connector::{async_trait, Error, ErrorKind, Result, TargetLookup, TargetRecord};
///
/// #[derive(Debug)]
/// struct Companies;
///
/// #[async_trait]
/// impl TargetLookup for Companies {
///     async fn find_ids(&self, object: &str, criteria: &TargetRecord) -> Result<Vec<String>> {
///         if object != "Company" {
///             return Err(Error::new(ErrorKind::Lookup, format!("no `{object}` objects here")));
///         }
///         Ok(criteria.iter().map(|(_, value)| format!("company-{value:?}")).collect())
///     }
/// }
/// ```
#[async_trait]
pub trait TargetLookup: Send + Sync + fmt::Debug {
    /// The ids of the `object` records whose fields equal every value in `criteria` (field name
    /// to value, as converted from the Dynamics record). Returning at most two ids is enough:
    /// the caller only distinguishes none, one and several.
    ///
    /// An error (best an [`ErrorKind::Lookup`](crate::ErrorKind::Lookup) one) fails the record
    /// being converted, with the error's message in the reason.
    async fn find_ids(&self, object: &str, criteria: &TargetRecord) -> Result<Vec<String>>;
}
