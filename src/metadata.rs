//! Entity and attribute metadata, as `EntityDefinitions` describes it.
//!
//! [`EntityMetadata::fetch`] reads the Web API's own (PascalCase) metadata documents; the
//! types' serde form is this crate's snake_case form, for hosts that cache metadata.

use crate::client::DataverseClient;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The type of a Dataverse column (`AttributeType`), refined by `AttributeTypeName` for
/// `Virtual` columns.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttributeType {
    /// Two options (yes/no).
    Boolean,
    /// A lookup to an Account or a Contact.
    Customer,
    /// A date and time, or a date only (see [`AttributeMetadata::is_date_only`]).
    DateTime,
    /// A decimal number with up to 10 decimals.
    Decimal,
    /// A floating point number.
    Double,
    /// A 32-bit whole number.
    Integer,
    /// A lookup to one table.
    Lookup,
    /// Multi-line text.
    Memo,
    /// A currency amount with 4 decimals.
    Money,
    /// A lookup to a user or a team.
    Owner,
    /// A list of parties (activities).
    PartyList,
    /// A choice (option set).
    Picklist,
    /// The record's state (active/inactive).
    State,
    /// The record's status reason.
    Status,
    /// Single-line text.
    String,
    /// A GUID, such as the primary id.
    Uniqueidentifier,
    /// Calendar rules (not syncable).
    CalendarRules,
    /// A virtual column not refined further.
    Virtual,
    /// A 64-bit whole number.
    BigInt,
    /// A managed property (not syncable).
    ManagedProperty,
    /// The logical name of a table.
    EntityName,
    /// A multi-select choice (`Virtual` + `MultiSelectPicklistType`).
    MultiSelectPicklist,
    /// An image column (`Virtual` + `ImageType`; not syncable).
    Image,
    /// A file column (`Virtual` + `FileType`; not syncable).
    File,
    /// A type this crate does not know, kept by name.
    Other(String),
}

impl fmt::Display for AttributeType {
    /// The type's Dataverse name (`Customer`, `MultiSelectPicklist`), or the unknown name kept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeType::Other(name) => f.write_str(name),
            known => write!(f, "{known:?}"),
        }
    }
}

impl AttributeType {
    /// Whether the column references another record (Lookup, Customer or Owner).
    pub fn is_lookup(&self) -> bool {
        matches!(
            self,
            AttributeType::Lookup | AttributeType::Customer | AttributeType::Owner
        )
    }

    /// Whether the column's value has a label (a choice, state, status, two-options or
    /// multi-select choice column), delivered as its formatted value.
    pub fn has_option_labels(&self) -> bool {
        matches!(
            self,
            AttributeType::Picklist
                | AttributeType::State
                | AttributeType::Status
                | AttributeType::Boolean
                | AttributeType::MultiSelectPicklist
        )
    }

    /// The type named by Dataverse's `AttributeType` value (`"Customer"`); unknown names are
    /// kept as [`AttributeType::Other`].
    pub fn from_dataverse_name(name: &str) -> Self {
        match name {
            "Boolean" => AttributeType::Boolean,
            "Customer" => AttributeType::Customer,
            "DateTime" => AttributeType::DateTime,
            "Decimal" => AttributeType::Decimal,
            "Double" => AttributeType::Double,
            "Integer" => AttributeType::Integer,
            "Lookup" => AttributeType::Lookup,
            "Memo" => AttributeType::Memo,
            "Money" => AttributeType::Money,
            "Owner" => AttributeType::Owner,
            "PartyList" => AttributeType::PartyList,
            "Picklist" => AttributeType::Picklist,
            "State" => AttributeType::State,
            "Status" => AttributeType::Status,
            "String" => AttributeType::String,
            "Uniqueidentifier" => AttributeType::Uniqueidentifier,
            "CalendarRules" => AttributeType::CalendarRules,
            "Virtual" => AttributeType::Virtual,
            "BigInt" => AttributeType::BigInt,
            "ManagedProperty" => AttributeType::ManagedProperty,
            "EntityName" => AttributeType::EntityName,
            other => AttributeType::Other(other.to_owned()),
        }
    }

    /// The type a metadata cast names (`#Microsoft.Dynamics.CRM.LookupAttributeMetadata`), for
    /// attribute lists that carry `@odata.type` but no `AttributeType`.
    ///
    /// A cast cannot tell a Customer or Owner column from a plain Lookup: all three are
    /// `LookupAttributeMetadata`, and come back as [`AttributeType::Lookup`].
    pub fn from_odata_cast(cast: &str) -> Self {
        let class = cast
            .trim_start_matches('#')
            .trim_start_matches("Microsoft.Dynamics.CRM.")
            .trim_end_matches("AttributeMetadata");
        // Cast classes are the `AttributeType` names, but for these.
        match class {
            "UniqueIdentifier" => AttributeType::Uniqueidentifier,
            "MultiSelectPicklist" => AttributeType::MultiSelectPicklist,
            "Image" => AttributeType::Image,
            "File" => AttributeType::File,
            other => Self::from_dataverse_name(other),
        }
    }

    /// Refines a `Virtual` column by its `AttributeTypeName` (`MultiSelectPicklistType`,
    /// `ImageType`, `FileType`); any other type is returned unchanged.
    fn refined_by(self, type_name: Option<&str>) -> Self {
        match (self, type_name) {
            (AttributeType::Virtual, Some("MultiSelectPicklistType")) => {
                AttributeType::MultiSelectPicklist
            }
            (AttributeType::Virtual, Some("ImageType")) => AttributeType::Image,
            (AttributeType::Virtual, Some("FileType")) => AttributeType::File,
            (other, _) => other,
        }
    }
}

/// Unknown attribute type: an attribute list entry with neither `AttributeType` nor a cast.
const UNKNOWN_TYPE: &str = "Unknown";

/// What the connector knows of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityMetadata {
    logical_name: String,
    entity_set_name: String,
    primary_id_attribute: String,
    primary_name_attribute: Option<String>,
    change_tracking_enabled: bool,
    attributes: Vec<AttributeMetadata>,
    #[serde(default)]
    relationships: Vec<Relationship>,
}

impl EntityMetadata {
    /// The table's logical name (`account`).
    pub fn logical_name(&self) -> &str {
        &self.logical_name
    }

    /// The name the Web API addresses the table by (`accounts`).
    pub fn entity_set_name(&self) -> &str {
        &self.entity_set_name
    }

    /// The primary id column (`accountid`).
    pub fn primary_id_attribute(&self) -> &str {
        &self.primary_id_attribute
    }

    /// The primary name column (`name`), if the table has one.
    pub fn primary_name_attribute(&self) -> Option<&str> {
        self.primary_name_attribute.as_deref()
    }

    /// Whether change tracking (delta links) is enabled for the table.
    pub fn change_tracking_enabled(&self) -> bool {
        self.change_tracking_enabled
    }

    /// Every column.
    pub fn attributes(&self) -> &[AttributeMetadata] {
        &self.attributes
    }

    /// The column with logical name `name`.
    pub fn attribute(&self, name: &str) -> Option<&AttributeMetadata> {
        self.attributes.iter().find(|a| a.logical_name == name)
    }

    /// The one-to-many and many-to-one relationships the definition was fetched with
    /// (`$expand=OneToManyRelationships,ManyToOneRelationships`), each once.
    pub fn relationships(&self) -> &[Relationship] {
        &self.relationships
    }

    /// The relationship with schema name `schema_name` (`contact_customer_accounts`).
    pub fn relationship(&self, schema_name: &str) -> Option<&Relationship> {
        self.relationships
            .iter()
            .find(|r| r.schema_name == schema_name)
    }

    /// A table description built by hand, for tests and hosts that keep metadata of their own.
    pub fn new(
        logical_name: impl Into<String>,
        entity_set_name: impl Into<String>,
        primary_id_attribute: impl Into<String>,
    ) -> Self {
        Self {
            logical_name: logical_name.into(),
            entity_set_name: entity_set_name.into(),
            primary_id_attribute: primary_id_attribute.into(),
            primary_name_attribute: None,
            change_tracking_enabled: false,
            attributes: Vec::new(),
            relationships: Vec::new(),
        }
    }

    /// Sets the primary name column.
    pub fn with_primary_name_attribute(mut self, name: impl Into<String>) -> Self {
        self.primary_name_attribute = Some(name.into());
        self
    }

    /// Sets whether change tracking is enabled.
    pub fn with_change_tracking(mut self, enabled: bool) -> Self {
        self.change_tracking_enabled = enabled;
        self
    }

    /// Adds (or replaces, by logical name) a column.
    pub fn with_attribute(mut self, attribute: AttributeMetadata) -> Self {
        match self
            .attributes
            .iter_mut()
            .find(|a| a.logical_name == attribute.logical_name)
        {
            Some(existing) => *existing = attribute,
            None => self.attributes.push(attribute),
        }
        self
    }

    /// Fetches the table `logical_name`: its properties and every column's type, readability,
    /// companion link (`AttributeOf`), lookup targets and date behaviour, plus option labels
    /// when `options` asks for them.
    ///
    /// Sends, relative to the Web API base:
    /// 1. `EntityDefinitions(LogicalName='<name>')?$select=LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled&$expand=Attributes($select=LogicalName,AttributeType,AttributeTypeName,IsValidForRead,AttributeOf)`
    /// 2. `EntityDefinitions(LogicalName='<name>')/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets`
    /// 3. `EntityDefinitions(LogicalName='<name>')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,DateTimeBehavior`
    /// 4. with [`MetadataOptions::with_option_labels`], the same cast with `$select=LogicalName&$expand=OptionSet($select=Options)`
    ///    for `PicklistAttributeMetadata`, `StateAttributeMetadata` and `StatusAttributeMetadata`.
    ///
    /// A `logical_name` that is not lowercase letters, digits and underscores is refused with a
    /// [`Config`](crate::ErrorKind::Config) error before anything is sent.
    pub async fn fetch(
        client: &DataverseClient,
        logical_name: &str,
        options: &MetadataOptions,
    ) -> Result<Self> {
        validate_logical_name(logical_name)?;
        let entity = format!("EntityDefinitions(LogicalName='{logical_name}')");
        let raw: dataverse::Entity = client
            .get_json(&format!(
                "{entity}?$select=LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled&$expand=Attributes($select=LogicalName,AttributeType,AttributeTypeName,IsValidForRead,AttributeOf)"
            ))
            .await?;
        let mut metadata = raw.into_metadata()?;
        let mut casts = vec![
            "Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets",
            "Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,DateTimeBehavior",
        ];
        if options.option_labels {
            casts.extend([
                "Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)",
                "Microsoft.Dynamics.CRM.StateAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)",
                "Microsoft.Dynamics.CRM.StatusAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)",
            ]);
        }
        for cast in casts {
            let details: dataverse::Collection<dataverse::Attribute> = client
                .get_json(&format!("{entity}/Attributes/{cast}"))
                .await?;
            for detail in details.value {
                if let Some(attribute) = metadata
                    .attributes
                    .iter_mut()
                    .find(|a| a.logical_name == detail.logical_name())
                {
                    detail.merge_into(attribute);
                }
            }
        }
        Ok(metadata)
    }

    /// Lists the tables a sync can read: every table that is neither private (`IsPrivate`)
    /// nor virtual (`TableType` `Virtual`), from one request to
    /// `EntityDefinitions?$select=LogicalName,EntitySetName,IsPrivate,TableType,ChangeTrackingEnabled`.
    pub async fn list_syncable(client: &DataverseClient) -> Result<Vec<EntitySummary>> {
        let raw: dataverse::Collection<dataverse::EntityListEntry> = client
            .get_json(
                "EntityDefinitions?$select=LogicalName,EntitySetName,IsPrivate,TableType,ChangeTrackingEnabled",
            )
            .await?;
        Ok(dataverse::syncable(raw.value))
    }
}

/// What the connector knows of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeMetadata {
    logical_name: String,
    attribute_type: AttributeType,
    is_valid_for_read: bool,
    attribute_of: Option<String>,
    targets: Vec<String>,
    date_only: bool,
    #[serde(default)]
    options: Vec<OptionLabel>,
}

impl AttributeMetadata {
    /// The column's logical name (`parentcustomerid`).
    pub fn logical_name(&self) -> &str {
        &self.logical_name
    }

    /// The column's type.
    pub fn attribute_type(&self) -> &AttributeType {
        &self.attribute_type
    }

    /// Whether the column can be read.
    pub fn is_valid_for_read(&self) -> bool {
        self.is_valid_for_read
    }

    /// For a generated companion column (`parentcustomeridname`), the column it belongs to.
    pub fn attribute_of(&self) -> Option<&str> {
        self.attribute_of.as_deref()
    }

    /// For lookups, the tables the column may point at (`account`, `contact`).
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// Whether a DateTime column holds a date only (`DateTimeBehavior` `DateOnly`).
    pub fn is_date_only(&self) -> bool {
        self.date_only
    }

    /// For choice, state and status columns fetched with option labels, every option's value
    /// and label; empty otherwise.
    pub fn options(&self) -> &[OptionLabel] {
        &self.options
    }

    /// The label of the option with value `value`, if known.
    pub fn option_label(&self, value: i64) -> Option<&str> {
        self.options
            .iter()
            .find(|o| o.value == value)
            .and_then(|o| o.label.as_deref())
    }

    /// A column built by hand: readable, not a companion, no targets, not date-only.
    pub fn new(logical_name: impl Into<String>, attribute_type: AttributeType) -> Self {
        Self {
            logical_name: logical_name.into(),
            attribute_type,
            is_valid_for_read: true,
            attribute_of: None,
            targets: Vec::new(),
            date_only: false,
            options: Vec::new(),
        }
    }

    /// Sets whether the column can be read.
    pub fn with_valid_for_read(mut self, valid: bool) -> Self {
        self.is_valid_for_read = valid;
        self
    }

    /// Marks the column as a generated companion of `parent`.
    pub fn with_attribute_of(mut self, parent: impl Into<String>) -> Self {
        self.attribute_of = Some(parent.into());
        self
    }

    /// Sets the tables a lookup may point at.
    pub fn with_targets<I, S>(mut self, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.targets = targets.into_iter().map(Into::into).collect();
        self
    }

    /// Sets whether a DateTime column holds a date only.
    pub fn with_date_only(mut self, date_only: bool) -> Self {
        self.date_only = date_only;
        self
    }

    /// Sets the option labels of a choice, state or status column.
    pub fn with_options(mut self, options: Vec<OptionLabel>) -> Self {
        self.options = options;
        self
    }
}

/// One option of a choice, state or status column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionLabel {
    /// The number Dataverse stores (`1`).
    pub value: i64,
    /// The label in the calling user's language (`UserLocalizedLabel`), or the first localized
    /// label when there is none; `None` for an option without any label.
    pub label: Option<String>,
}

/// A one-to-many relationship between two tables, seen from either side.
///
/// `contact_customer_accounts` says: `contact.parentcustomerid` (the referencing attribute)
/// holds the id of an `account` (`accountid`, the referenced attribute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    schema_name: String,
    referenced_entity: String,
    referenced_attribute: String,
    referencing_entity: String,
    referencing_attribute: String,
    #[serde(default)]
    referencing_navigation_property: Option<String>,
}

impl Relationship {
    /// The relationship's schema name (`contact_customer_accounts`).
    pub fn schema_name(&self) -> &str {
        &self.schema_name
    }

    /// The table that is pointed at (`account`).
    pub fn referenced_entity(&self) -> &str {
        &self.referenced_entity
    }

    /// The pointed-at table's key column (`accountid`).
    pub fn referenced_attribute(&self) -> &str {
        &self.referenced_attribute
    }

    /// The table holding the lookup column (`contact`).
    pub fn referencing_entity(&self) -> &str {
        &self.referencing_entity
    }

    /// The lookup column (`parentcustomerid`).
    pub fn referencing_attribute(&self) -> &str {
        &self.referencing_attribute
    }

    /// The single-valued navigation property on the referencing table
    /// (`parentcustomerid_account`), if known.
    pub fn referencing_navigation_property(&self) -> Option<&str> {
        self.referencing_navigation_property.as_deref()
    }
}

/// Which optional parts [`EntityMetadata::fetch`] asks for.
///
/// The default fetches types, lookup targets and date behaviours, but no option labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataOptions {
    option_labels: bool,
}

impl MetadataOptions {
    /// The defaults: no option labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also fetch the labels of choice, state and status columns (three more requests).
    pub fn with_option_labels(mut self, option_labels: bool) -> Self {
        self.option_labels = option_labels;
        self
    }

    /// Whether option labels are fetched.
    pub fn option_labels(&self) -> bool {
        self.option_labels
    }
}

/// One table a sync can read: public and not virtual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntitySummary {
    /// The logical name (`account`).
    pub logical_name: String,
    /// The Web API collection name (`accounts`).
    pub entity_set_name: String,
    /// Whether change tracking is enabled, so incremental syncs can see deletes.
    pub change_tracking_enabled: bool,
}

/// Parses an `EntityDefinitions(LogicalName='...')` response: the table's own properties,
/// its `Attributes` when expanded, and its `OneToManyRelationships` /
/// `ManyToOneRelationships` when expanded. For tests of metadata documents recorded from a
/// real environment; [`EntityMetadata::fetch`] reads them from a live one.
///
/// Attribute types come from `AttributeType` (refined by `AttributeTypeName`) or, when
/// absent, from the `@odata.type` cast. Missing `IsValidForRead` counts as readable; a
/// missing `ChangeTrackingEnabled` as disabled.
#[cfg(feature = "testkit")]
pub fn entity_metadata_from_dataverse_json(json: &str) -> Result<EntityMetadata> {
    let raw: dataverse::Entity = serde_json::from_str(json).map_err(|e| {
        Error::decode("the entity definition is not valid EntityDefinitions JSON").with_source(e)
    })?;
    raw.into_metadata()
}

/// Parses an attribute collection (`{"value":[...]}`), such as
/// `EntityDefinitions(LogicalName='mailbox')/Attributes` or one of its casts
/// (`.../Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets`).
/// For tests of metadata documents recorded from a real environment.
///
/// Each entry's type comes from `AttributeType` (refined by `AttributeTypeName`) or, when
/// absent, from its `@odata.type` cast; an entry with neither has type
/// `AttributeType::Other("Unknown")`.
#[cfg(feature = "testkit")]
pub fn attributes_from_dataverse_json(json: &str) -> Result<Vec<AttributeMetadata>> {
    let raw: dataverse::Collection<dataverse::Attribute> =
        serde_json::from_str(json).map_err(|e| {
            Error::decode("the attribute list is not valid EntityDefinitions Attributes JSON")
                .with_source(e)
        })?;
    Ok(raw
        .value
        .into_iter()
        .map(dataverse::Attribute::into_metadata)
        .collect())
}

/// Checks that `name` can be put in an `EntityDefinitions(LogicalName='...')` URL.
/// The lookup column a Web API `_<name>_value` property stands for: `<name>`
/// (`_parentcustomerid_value` -> `parentcustomerid`), whether or not the table has it.
pub(crate) fn lookup_of_value_property(property: &str) -> Option<&str> {
    property
        .strip_prefix('_')?
        .strip_suffix("_value")
        .filter(|name| !name.is_empty())
}

pub(crate) fn validate_logical_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::config(
            "the table logical name is empty; give a logical name such as `account`",
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(Error::config(format!(
            "`{name}` is not a table logical name: it contains `{bad}`; logical names use only lowercase letters, digits and underscores (such as `account` or `new_project`)"
        )));
    }
    Ok(())
}

/// The Web API's own metadata shapes (PascalCase), mapped into the public types.
mod dataverse {
    use super::{AttributeMetadata, AttributeType, EntityMetadata, EntitySummary, OptionLabel};
    use super::{Relationship, UNKNOWN_TYPE};
    use crate::error::{Error, Result};
    use serde::Deserialize;

    /// `{"value": [...]}`.
    #[derive(Deserialize)]
    pub(super) struct Collection<T> {
        pub(super) value: Vec<T>,
    }

    /// `{"Value": ...}`, as in `AttributeTypeName` and `DateTimeBehavior`.
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Wrapped {
        value: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub(super) struct Entity {
        logical_name: String,
        entity_set_name: Option<String>,
        primary_id_attribute: Option<String>,
        primary_name_attribute: Option<String>,
        change_tracking_enabled: Option<bool>,
        #[serde(default)]
        attributes: Vec<Attribute>,
        #[serde(default)]
        one_to_many_relationships: Vec<RawRelationship>,
        #[serde(default)]
        many_to_one_relationships: Vec<RawRelationship>,
    }

    impl Entity {
        pub(super) fn into_metadata(self) -> Result<EntityMetadata> {
            let name = self.logical_name;
            let entity_set_name = self.entity_set_name.ok_or_else(|| {
                Error::decode(format!(
                    "the definition of `{name}` has no EntitySetName; the table cannot be read through the Web API"
                ))
            })?;
            let primary_id_attribute = self.primary_id_attribute.ok_or_else(|| {
                Error::decode(format!(
                    "the definition of `{name}` has no PrimaryIdAttribute; select it when fetching metadata"
                ))
            })?;
            let mut relationships: Vec<Relationship> = Vec::new();
            for raw in self
                .one_to_many_relationships
                .into_iter()
                .chain(self.many_to_one_relationships)
            {
                let Some(relationship) = raw.into_relationship() else {
                    continue;
                };
                if !relationships
                    .iter()
                    .any(|r| r.schema_name == relationship.schema_name)
                {
                    relationships.push(relationship);
                }
            }
            Ok(EntityMetadata {
                logical_name: name,
                entity_set_name,
                primary_id_attribute,
                primary_name_attribute: self.primary_name_attribute,
                change_tracking_enabled: self.change_tracking_enabled.unwrap_or(false),
                attributes: self
                    .attributes
                    .into_iter()
                    .map(Attribute::into_metadata)
                    .collect(),
                relationships,
            })
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub(super) struct Attribute {
        #[serde(rename = "@odata.type")]
        odata_type: Option<String>,
        logical_name: String,
        attribute_type: Option<String>,
        attribute_type_name: Option<Wrapped>,
        is_valid_for_read: Option<bool>,
        attribute_of: Option<String>,
        targets: Option<Vec<String>>,
        date_time_behavior: Option<Wrapped>,
        option_set: Option<OptionSet>,
    }

    impl Attribute {
        pub(super) fn into_metadata(self) -> AttributeMetadata {
            let type_name = self.attribute_type_name.and_then(|w| w.value);
            let base = match (&self.attribute_type, &self.odata_type) {
                (Some(name), _) => AttributeType::from_dataverse_name(name),
                (None, Some(cast)) => AttributeType::from_odata_cast(cast),
                (None, None) => AttributeType::Other(UNKNOWN_TYPE.to_owned()),
            };
            AttributeMetadata {
                logical_name: self.logical_name,
                attribute_type: base.refined_by(type_name.as_deref()),
                is_valid_for_read: self.is_valid_for_read.unwrap_or(true),
                attribute_of: self.attribute_of.filter(|a| !a.is_empty()),
                targets: self.targets.unwrap_or_default(),
                date_only: self
                    .date_time_behavior
                    .and_then(|b| b.value)
                    .is_some_and(|b| b == "DateOnly"),
                options: self
                    .option_set
                    .map(OptionSet::into_labels)
                    .unwrap_or_default(),
            }
        }

        /// Merges what a cast request added (targets, date behaviour, options) into `into`.
        pub(super) fn merge_into(self, into: &mut AttributeMetadata) {
            if let Some(targets) = self.targets {
                into.targets = targets;
            }
            if let Some(behavior) = self.date_time_behavior.and_then(|b| b.value) {
                into.date_only = behavior == "DateOnly";
            }
            if let Some(option_set) = self.option_set {
                into.options = option_set.into_labels();
            }
        }

        pub(super) fn logical_name(&self) -> &str {
            &self.logical_name
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct OptionSet {
        #[serde(default)]
        options: Vec<RawOption>,
    }

    impl OptionSet {
        fn into_labels(self) -> Vec<OptionLabel> {
            self.options
                .into_iter()
                .filter_map(|o| {
                    Some(OptionLabel {
                        value: o.value?,
                        label: o.label.and_then(Label::into_text),
                    })
                })
                .collect()
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RawOption {
        value: Option<i64>,
        label: Option<Label>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Label {
        #[serde(default)]
        localized_labels: Vec<LocalizedLabel>,
        user_localized_label: Option<LocalizedLabel>,
    }

    impl Label {
        fn into_text(self) -> Option<String> {
            self.user_localized_label
                .and_then(|l| l.label)
                .or_else(|| self.localized_labels.into_iter().find_map(|l| l.label))
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct LocalizedLabel {
        label: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RawRelationship {
        schema_name: Option<String>,
        referenced_entity: Option<String>,
        referenced_attribute: Option<String>,
        referencing_entity: Option<String>,
        referencing_attribute: Option<String>,
        referencing_entity_navigation_property_name: Option<String>,
    }

    impl RawRelationship {
        fn into_relationship(self) -> Option<Relationship> {
            Some(Relationship {
                schema_name: self.schema_name?,
                referenced_entity: self.referenced_entity?,
                referenced_attribute: self.referenced_attribute?,
                referencing_entity: self.referencing_entity?,
                referencing_attribute: self.referencing_attribute?,
                referencing_navigation_property: self
                    .referencing_entity_navigation_property_name
                    .filter(|n| !n.is_empty()),
            })
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub(super) struct EntityListEntry {
        logical_name: String,
        entity_set_name: Option<String>,
        is_private: Option<bool>,
        table_type: Option<String>,
        change_tracking_enabled: Option<bool>,
    }

    pub(super) fn syncable(entries: Vec<EntityListEntry>) -> Vec<EntitySummary> {
        entries
            .into_iter()
            .filter(|e| e.is_private != Some(true))
            .filter(|e| e.table_type.as_deref() != Some("Virtual"))
            .filter_map(|e| {
                Some(EntitySummary {
                    entity_set_name: e.entity_set_name.filter(|n| !n.is_empty())?,
                    logical_name: e.logical_name,
                    change_tracking_enabled: e.change_tracking_enabled.unwrap_or(false),
                })
            })
            .collect()
    }
}
