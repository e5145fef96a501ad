//! Entity and attribute metadata, as `EntityDefinitions` describes it.

use serde::{Deserialize, Serialize};

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

impl AttributeType {
    /// Whether the column references another record (Lookup, Customer or Owner).
    pub fn is_lookup(&self) -> bool {
        matches!(
            self,
            AttributeType::Lookup | AttributeType::Customer | AttributeType::Owner
        )
    }
}

/// What the connector knows of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityMetadata {
    logical_name: String,
    entity_set_name: String,
    primary_id_attribute: String,
    primary_name_attribute: Option<String>,
    change_tracking_enabled: bool,
    attributes: Vec<AttributeMetadata>,
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
}
