//! Tables, rows, versions, tokens and queued faults: everything the stand-in remembers.

use super::guid::SqlGuid;
use super::limits::Load;
use super::{Fault, RecordedRequest};
use crate::metadata::AttributeType;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

/// The first change version (and etag) a fresh instance hands out; realistic, not meaningful.
const FIRST_VERSION: u64 = 2_264_380;

/// A table definition for [`StandIn::add_entity`](super::StandIn::add_entity).
///
/// The primary id column (`Uniqueidentifier`) is added for you; add every other column with
/// [`EntityDef::with_attribute`]. Lookups get their generated companion columns
/// (`parentcustomeridname`, ...) in the metadata automatically.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityDef {
    pub(crate) logical_name: String,
    pub(crate) entity_set_name: String,
    pub(crate) primary_id: String,
    pub(crate) primary_name: Option<String>,
    pub(crate) change_tracking: bool,
    pub(crate) attributes: Vec<AttributeDef>,
}

impl EntityDef {
    /// A table addressed as `entity_set_name` (`accounts`) whose primary id column is
    /// `primary_id` (`accountid`). Change tracking is on; turn it off with
    /// [`EntityDef::with_change_tracking`].
    pub fn new(
        logical_name: impl Into<String>,
        entity_set_name: impl Into<String>,
        primary_id: impl Into<String>,
    ) -> Self {
        let primary_id = primary_id.into();
        Self {
            logical_name: logical_name.into(),
            entity_set_name: entity_set_name.into(),
            attributes: vec![AttributeDef::new(
                primary_id.clone(),
                AttributeType::Uniqueidentifier,
            )],
            primary_id,
            primary_name: None,
            change_tracking: true,
        }
    }

    /// Sets the primary name column (`name`), adding it as a `String` column if it is missing.
    pub fn with_primary_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.attributes.iter().any(|a| a.logical_name == name) {
            self.attributes
                .push(AttributeDef::new(name.clone(), AttributeType::String));
        }
        self.primary_name = Some(name);
        self
    }

    /// Turns change tracking (`ChangeTrackingEnabled`, delta links) on or off.
    pub fn with_change_tracking(mut self, enabled: bool) -> Self {
        self.change_tracking = enabled;
        self
    }

    /// Adds a column, replacing one with the same logical name.
    pub fn with_attribute(mut self, attribute: AttributeDef) -> Self {
        self.attributes
            .retain(|a| a.logical_name != attribute.logical_name);
        self.attributes.push(attribute);
        self
    }

    /// The table's logical name (`account`).
    pub fn logical_name(&self) -> &str {
        &self.logical_name
    }

    /// The entity set name the Web API addresses the table by (`accounts`).
    pub fn entity_set_name(&self) -> &str {
        &self.entity_set_name
    }

    pub(crate) fn attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.attributes.iter().find(|a| a.logical_name == name)
    }

    /// The column a Web API property (`name`, `_parentcustomerid_value`) reads, if any.
    pub(crate) fn property(&self, property: &str) -> Option<&AttributeDef> {
        if let Some(inner) = property
            .strip_prefix('_')
            .and_then(|p| p.strip_suffix("_value"))
        {
            return self
                .attribute(inner)
                .filter(|a| a.attribute_type.is_lookup());
        }
        self.attribute(property)
            .filter(|a| !a.attribute_type.is_lookup())
    }

    /// Every Web API property name in column order.
    pub(crate) fn properties(&self) -> impl Iterator<Item = (String, &AttributeDef)> {
        self.attributes.iter().map(|a| (a.property_name(), a))
    }
}

/// A column definition inside an [`EntityDef`].
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDef {
    pub(crate) logical_name: String,
    pub(crate) attribute_type: AttributeType,
    pub(crate) targets: Vec<String>,
    pub(crate) date_only: bool,
    pub(crate) options: Vec<(i64, String)>,
}

impl AttributeDef {
    /// A column of the given type. Lookups default to no target (use
    /// [`AttributeDef::lookup`]), Customer to `account` and `contact`, Owner to `systemuser`
    /// and `team`.
    pub fn new(logical_name: impl Into<String>, attribute_type: AttributeType) -> Self {
        let targets = match attribute_type {
            AttributeType::Customer => vec!["account".to_owned(), "contact".to_owned()],
            AttributeType::Owner => vec!["systemuser".to_owned(), "team".to_owned()],
            _ => Vec::new(),
        };
        Self {
            logical_name: logical_name.into(),
            attribute_type,
            targets,
            date_only: false,
            options: Vec::new(),
        }
    }

    /// A `Lookup` column pointing at the `targets` tables.
    pub fn lookup<I, S>(logical_name: impl Into<String>, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(logical_name, AttributeType::Lookup).with_targets(targets)
    }

    /// A `DateTime` column with `DateTimeBehavior` `DateOnly` (values `YYYY-MM-DD`).
    pub fn date_only(logical_name: impl Into<String>) -> Self {
        Self {
            date_only: true,
            ..Self::new(logical_name, AttributeType::DateTime)
        }
    }

    /// A choice column (`Picklist`, `State` or `Status`) with its option labels.
    pub fn choice<I, S>(
        logical_name: impl Into<String>,
        attribute_type: AttributeType,
        options: I,
    ) -> Self
    where
        I: IntoIterator<Item = (i64, S)>,
        S: Into<String>,
    {
        Self::new(logical_name, attribute_type).with_options(options)
    }

    /// Replaces the tables a lookup column may point at.
    pub fn with_targets<I, S>(mut self, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.targets = targets.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the option labels (`(value, label)`) of a choice column; for a `Boolean` column
    /// the labels of `0` and `1` replace "No" and "Yes".
    pub fn with_options<I, S>(mut self, options: I) -> Self
    where
        I: IntoIterator<Item = (i64, S)>,
        S: Into<String>,
    {
        self.options = options.into_iter().map(|(v, l)| (v, l.into())).collect();
        self
    }

    /// The column's logical name.
    pub fn logical_name(&self) -> &str {
        &self.logical_name
    }

    /// The Web API property that carries the column (`_x_value` for lookups).
    pub(crate) fn property_name(&self) -> String {
        if self.attribute_type.is_lookup() {
            format!("_{}_value", self.logical_name)
        } else {
            self.logical_name.clone()
        }
    }

    pub(crate) fn label(&self, value: i64) -> Option<&str> {
        self.options
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, l)| l.as_str())
    }
}

/// One live row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: String,
    /// The primary id in SQL Server's order, for range filters and sorting on it.
    pub(crate) key: Option<SqlGuid>,
    /// Insertion sequence: the order of a query without `$orderby`.
    pub(crate) seq: u64,
    /// Change version of the last write; also the etag.
    pub(crate) version: u64,
    /// Web API properties (`name`, `_parentcustomerid_value`); numbers of Money, Decimal,
    /// Double and BigInt columns are kept as their literal text in a JSON string.
    pub(crate) fields: Map<String, Json>,
    /// Target table of each lookup property that holds an id.
    pub(crate) lookup_targets: HashMap<String, String>,
    /// Formatted values given with the row, by property.
    pub(crate) formatted: HashMap<String, String>,
}

/// A deleted row, kept for change tracking.
#[derive(Debug, Clone)]
pub(crate) struct Tombstone {
    pub(crate) id: String,
    pub(crate) version: u64,
}

/// One table with its rows.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) def: EntityDef,
    pub(crate) rows: Vec<Row>,
    pub(crate) tombstones: Vec<Tombstone>,
}

/// What an issued token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenState {
    Valid,
    Revoked,
}

/// A pending authorization code.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) scope: String,
    pub(crate) redeemed: bool,
}

/// The whole instance.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) base_url: String,
    pub(crate) tables: Vec<Table>,
    pub(crate) version: u64,
    pub(crate) seq: u64,
    /// Delta tokens below this version are expired.
    pub(crate) delta_floor: u64,
    pub(crate) access_tokens: HashMap<String, TokenState>,
    pub(crate) refresh_tokens: HashMap<String, (TokenState, String)>,
    pub(crate) codes: HashMap<String, PendingCode>,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) token_requests: usize,
    pub(crate) load: Load,
    /// How many rows [`StandIn::add_accounts`](super::StandIn::add_accounts) generated so far.
    pub(crate) generated_accounts: u64,
    seed: [u8; 32],
    counter: u64,
}

impl State {
    pub(crate) fn new(base_url: String) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let seed: [u8; 32] = Sha256::digest(format!("{base_url}|{nanos}").as_bytes()).into();
        Self {
            base_url,
            tables: Vec::new(),
            version: FIRST_VERSION,
            seq: 0,
            delta_floor: 0,
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            codes: HashMap::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            token_requests: 0,
            load: Load::default(),
            generated_accounts: 0,
            seed,
            counter: 0,
        }
    }

    /// 32 fresh pseudo-random bytes.
    pub(crate) fn random_bytes(&mut self) -> [u8; 32] {
        self.counter += 1;
        let mut hasher = Sha256::new();
        hasher.update(self.seed);
        hasher.update(self.counter.to_le_bytes());
        hasher.finalize().into()
    }

    /// A fresh opaque URL-safe string.
    pub(crate) fn opaque(&mut self) -> String {
        URL_SAFE_NO_PAD.encode(self.random_bytes())
    }

    /// A fresh GUID (version 4 layout).
    pub(crate) fn guid(&mut self) -> String {
        let mut b = self.random_bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        format_guid(&b)
    }

    pub(crate) fn table(&self, logical_name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.def.logical_name == logical_name)
    }

    pub(crate) fn table_by_set(&self, entity_set: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.def.entity_set_name == entity_set)
    }

    pub(crate) fn table_mut(&mut self, logical_name: &str) -> &mut Table {
        match self
            .tables
            .iter_mut()
            .find(|t| t.def.logical_name == logical_name)
        {
            Some(table) => table,
            None => {
                panic!("stand-in: no table `{logical_name}`; add it with StandIn::add_entity first")
            }
        }
    }

    pub(crate) fn add_entity(&mut self, def: EntityDef) {
        for a in &def.attributes {
            if a.attribute_type.is_lookup() && a.targets.is_empty() {
                panic!(
                    "stand-in: lookup column `{}.{}` needs at least one target table",
                    def.logical_name, a.logical_name
                );
            }
        }
        if let Some(table) = self
            .tables
            .iter_mut()
            .find(|t| t.def.logical_name == def.logical_name)
        {
            table.def = def;
        } else {
            self.tables.push(Table {
                def,
                rows: Vec::new(),
                tombstones: Vec::new(),
            });
        }
    }

    /// Inserts or merges one row given in Web API shape; returns its id.
    pub(crate) fn upsert(&mut self, entity: &str, row: Json) -> String {
        let Json::Object(input) = row else {
            panic!("stand-in: a row for `{entity}` must be a JSON object");
        };
        let def = self.table_mut(entity).def.clone();
        let mut incoming = Incoming::read(entity, &def, input);
        let id = match incoming.fields.get(&def.primary_id) {
            Some(Json::String(id)) => id.to_ascii_lowercase(),
            Some(other) => panic!(
                "stand-in: `{}` must be a GUID string, got {other}",
                def.primary_id
            ),
            None => self.guid(),
        };
        incoming
            .fields
            .insert(def.primary_id.clone(), Json::String(id.clone()));
        self.resolve_lookup_targets(entity, &def, &mut incoming);
        incoming.check_lookup_targets(entity, &def);
        self.store(entity, &def, id.clone(), incoming);
        id
    }

    /// Finds the target table of every lookup in `incoming` that holds an id and was given
    /// none: the only target, else the table holding the id (`systemuser` for an owner).
    fn resolve_lookup_targets(&self, entity: &str, def: &EntityDef, incoming: &mut Incoming) {
        for (key, value) in &incoming.fields {
            let Some(attr) = def.property(key) else {
                continue;
            };
            if !attr.attribute_type.is_lookup() || incoming.lookup_targets.contains_key(key) {
                continue;
            }
            let Json::String(target_id) = value else {
                continue;
            };
            let target = self.lookup_target(attr, target_id).unwrap_or_else(|| {
                panic!(
                    "stand-in: cannot tell which of {:?} `{entity}.{key}` = {target_id} points at; add `{key}@Microsoft.Dynamics.CRM.lookuplogicalname`",
                    attr.targets
                )
            });
            incoming.lookup_targets.insert(key.clone(), target);
        }
    }

    /// The table lookup `attr` points at with `id`, if it can be told.
    fn lookup_target(&self, attr: &AttributeDef, id: &str) -> Option<String> {
        if let [only] = attr.targets.as_slice() {
            return Some(only.clone());
        }
        let holding = attr.targets.iter().find(|t| {
            self.table(t)
                .is_some_and(|table| table.rows.iter().any(|r| r.id == id))
        });
        match holding {
            Some(table) => Some(table.clone()),
            None => (attr.attribute_type == AttributeType::Owner).then(|| "systemuser".to_owned()),
        }
    }

    /// Writes `incoming` as one change: a new version and `modifiedon` (unless given), merged
    /// into the row with `id` or inserted as a new row.
    fn store(&mut self, entity: &str, def: &EntityDef, id: String, mut incoming: Incoming) {
        self.version += 1;
        let version = self.version;
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let fields = &mut incoming.fields;
        if def.attribute("modifiedon").is_some() && !fields.contains_key("modifiedon") {
            fields.insert("modifiedon".to_owned(), Json::String(now.clone()));
        }
        if def.attribute("versionnumber").is_some() {
            fields.insert("versionnumber".to_owned(), Json::from(version));
        }
        let table = self.table_mut(entity);
        if let Some(existing) = table.rows.iter_mut().find(|r| r.id == id) {
            existing.fields.extend(incoming.fields);
            existing.lookup_targets.extend(incoming.lookup_targets);
            existing.formatted.extend(incoming.formatted);
            existing.version = version;
            return;
        }
        if def.attribute("createdon").is_some() && !fields.contains_key("createdon") {
            let created = fields
                .get("modifiedon")
                .cloned()
                .unwrap_or(Json::String(now));
            fields.insert("createdon".to_owned(), created);
        }
        for (property, _) in def.properties() {
            fields.entry(property).or_insert(Json::Null);
        }
        table.tombstones.retain(|t| t.id != id);
        self.seq += 1;
        let seq = self.seq;
        self.table_mut(entity).rows.push(Row {
            key: SqlGuid::parse(&id),
            id,
            seq,
            version,
            fields: incoming.fields,
            lookup_targets: incoming.lookup_targets,
            formatted: incoming.formatted,
        });
    }

    /// Deletes a row, leaving a tombstone for change tracking. Returns whether it existed.
    pub(crate) fn delete(&mut self, entity: &str, id: &str) -> bool {
        let id = id.to_ascii_lowercase();
        let version = self.version + 1;
        let table = self.table_mut(entity);
        let before = table.rows.len();
        table.rows.retain(|r| r.id != id);
        if table.rows.len() == before {
            return false;
        }
        table.tombstones.push(Tombstone { id, version });
        self.version = version;
        true
    }

    /// Records that the instance issued a new access token.
    pub(crate) fn new_access_token(&mut self, subject: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"stand-in"}"#);
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "aud": self.base_url,
            "iss": format!("https://sts.windows.net/{}/", super::StandIn::TENANT_ID),
            "iat": now,
            "nbf": now,
            "exp": now + 3599,
            "tid": super::StandIn::TENANT_ID,
            "appid": super::StandIn::CLIENT_ID,
            "sub": subject,
            "jti": self.opaque(),
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
        let signature = self.opaque();
        let token = format!("{header}.{payload}.{signature}");
        self.access_tokens.insert(token.clone(), TokenState::Valid);
        token
    }

    pub(crate) fn new_refresh_token(&mut self, scope: &str) -> String {
        let token = format!("1.AR-stand-in.{}{}", self.opaque(), self.opaque());
        self.refresh_tokens
            .insert(token.clone(), (TokenState::Valid, scope.to_owned()));
        token
    }
}

/// A row as given to [`State::upsert`], checked and sorted out.
struct Incoming {
    /// Web API properties, normalized for their columns.
    fields: Map<String, Json>,
    /// Targets given as `x@Microsoft.Dynamics.CRM.lookuplogicalname`, then resolved.
    lookup_targets: HashMap<String, String>,
    /// Formatted values given as `x@OData.Community.Display.V1.FormattedValue`.
    formatted: HashMap<String, String>,
}

impl Incoming {
    /// Reads the properties and annotations of `input` (`@odata.` ones are ignored); panics on
    /// an unknown column or a value that does not fit its column.
    fn read(entity: &str, def: &EntityDef, input: Map<String, Json>) -> Self {
        let mut incoming = Incoming {
            fields: Map::new(),
            lookup_targets: HashMap::new(),
            formatted: HashMap::new(),
        };
        for (key, value) in input {
            if key.starts_with("@odata.") {
                continue;
            }
            if let Some((property, annotation)) = key.split_once('@') {
                incoming.annotate(&key, property, annotation, value);
                continue;
            }
            let Some(attr) = def.property(&key) else {
                let hint = def
                    .attribute(&key)
                    .map(|a| format!(" (a lookup: use `{}`)", a.property_name()))
                    .unwrap_or_default();
                panic!("stand-in: `{entity}` has no column `{key}`{hint}");
            };
            let value = normalize(entity, attr, &key, value);
            incoming.fields.insert(key, value);
        }
        incoming
    }

    /// Takes in the annotation `key` (`property@annotation`); unknown ones are ignored.
    fn annotate(&mut self, key: &str, property: &str, annotation: &str, value: Json) {
        let into = match annotation {
            "OData.Community.Display.V1.FormattedValue" => &mut self.formatted,
            "Microsoft.Dynamics.CRM.lookuplogicalname" => &mut self.lookup_targets,
            _ => return,
        };
        let Json::String(text) = value else {
            panic!("stand-in: `{key}` must be a string");
        };
        into.insert(property.to_owned(), text);
    }

    /// Panics when a lookup points at a table it cannot point at.
    fn check_lookup_targets(&self, entity: &str, def: &EntityDef) {
        for (key, target) in &self.lookup_targets {
            let attr = def.property(key);
            if !attr.is_some_and(|a| a.targets.iter().any(|t| t == target)) {
                panic!("stand-in: `{entity}.{key}` cannot point at table `{target}`");
            }
        }
    }
}

/// Checks and normalizes one value for its column; panics with a clear message when it does
/// not fit.
fn normalize(entity: &str, attr: &AttributeDef, key: &str, value: Json) -> Json {
    if value.is_null() {
        return value;
    }
    match normalized(attr, &value) {
        Ok(Some(normalized)) => normalized,
        Ok(None) => value,
        Err(what) => panic!(
            "stand-in: `{entity}.{key}` ({:?}) needs {what}, got {value}",
            attr.attribute_type
        ),
    }
}

/// A non-null `value` as column `attr` keeps it: `Ok(None)` when as given, `Err` saying what
/// the column needs when it does not fit.
fn normalized(attr: &AttributeDef, value: &Json) -> Result<Option<Json>, &'static str> {
    let needs = |fits: bool, what| if fits { Ok(None) } else { Err(what) };
    match &attr.attribute_type {
        AttributeType::String | AttributeType::Memo | AttributeType::EntityName => {
            needs(value.is_string(), "a string")
        }
        AttributeType::Boolean => needs(value.is_boolean(), "true or false"),
        AttributeType::Integer
        | AttributeType::Picklist
        | AttributeType::State
        | AttributeType::Status => needs(value.as_i64().is_some(), "a whole number"),
        AttributeType::Money
        | AttributeType::Decimal
        | AttributeType::Double
        | AttributeType::BigInt => number_literal(attr, value).map(|n| Some(Json::String(n))),
        AttributeType::DateTime => {
            let text = value.as_str().ok_or("a date string")?;
            if attr.date_only {
                needs(is_date(text), "YYYY-MM-DD")
            } else {
                needs(
                    is_utc_date_time(text),
                    "a UTC date-time like 2024-06-12T14:13:25Z",
                )
            }
        }
        AttributeType::Uniqueidentifier
        | AttributeType::Lookup
        | AttributeType::Customer
        | AttributeType::Owner => match value.as_str() {
            Some(text) if SqlGuid::parse(text).is_some() => {
                Ok(Some(Json::String(text.to_ascii_lowercase())))
            }
            _ => Err("a GUID string"),
        },
        _ => Ok(None),
    }
}

/// The exact literal a Money, Decimal, Double or BigInt value is kept as (Money numbers with
/// four decimals).
fn number_literal(attr: &AttributeDef, value: &Json) -> Result<String, &'static str> {
    match value {
        Json::String(s) if crate::value::Number::parse(s).is_ok() => Ok(s.clone()),
        Json::Number(n) if attr.attribute_type == AttributeType::Money => {
            n.as_f64().map(|f| format!("{f:.4}")).ok_or("a number")
        }
        Json::Number(n) => Ok(n.to_string()),
        _ => Err("a number (or its exact literal as a string, e.g. \"922337203685477.5807\")"),
    }
}

/// `2024-06-12`.
fn is_date(text: &str) -> bool {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// `2024-06-12T14:13:25Z`.
fn is_utc_date_time(text: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(text).is_ok() && text.ends_with('Z')
}

/// Formats 16 bytes as a lowercase GUID.
pub(crate) fn format_guid(b: &[u8]) -> String {
    let hex: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A stable GUID derived from `name` (metadata ids).
pub(crate) fn stable_guid(name: &str) -> String {
    let b: [u8; 32] = Sha256::digest(name.as_bytes()).into();
    format_guid(&b)
}
