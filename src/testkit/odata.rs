//! Record queries: `$select`, `$filter`, `$orderby`, `$top`, paging by `@odata.nextLink`,
//! annotations on request, and change tracking (`@odata.deltaLink`, `$deltatoken`).

use super::filter::{self, Expr, SortKey};
use super::reply::{self, ApiError, Obj, Out, Reply};
use super::state::{AttributeDef, EntityDef, Row, State, Table};
use crate::metadata::AttributeType;
use serde_json::Value as Json;
use std::cmp::Ordering;
use url::Url;

/// Dataverse's default and largest page size.
pub(crate) const MAX_PAGE_SIZE: usize = 5000;

const FORMATTED: &str = "OData.Community.Display.V1.FormattedValue";
const LOOKUP_NAME: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";
const NAV_PROPERTY: &str = "Microsoft.Dynamics.CRM.associatednavigationproperty";

/// The `Prefer` preferences the stand-in understands.
#[derive(Debug, Default, Clone)]
pub(crate) struct Prefs {
    pub(crate) max_page_size: Option<usize>,
    pub(crate) annotations: Option<String>,
    pub(crate) track_changes: bool,
}

impl Prefs {
    /// Reads every `Prefer` header (comma-separated preferences, quoted values kept whole).
    pub(crate) fn parse(values: &[String]) -> Self {
        let mut prefs = Prefs::default();
        for value in values {
            let mut parts = Vec::new();
            let mut current = String::new();
            let mut quoted = false;
            for c in value.chars() {
                match c {
                    '"' => {
                        quoted = !quoted;
                        current.push(c);
                    }
                    ',' if !quoted => parts.push(std::mem::take(&mut current)),
                    _ => current.push(c),
                }
            }
            parts.push(current);
            for part in parts {
                let part = part.trim();
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (part, None),
                };
                match (name.to_ascii_lowercase().as_str(), arg) {
                    ("odata.maxpagesize", Some(n)) => prefs.max_page_size = n.parse().ok(),
                    ("odata.include-annotations", Some(a)) => {
                        prefs.annotations = Some(a.to_owned())
                    }
                    ("odata.track-changes", _) => prefs.track_changes = true,
                    _ => {}
                }
            }
        }
        prefs
    }

    /// The page size in effect.
    fn page_size(&self) -> usize {
        self.max_page_size
            .filter(|n| *n > 0)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE)
    }

    /// Whether the annotation `term` was asked for (`*`, `Namespace.*`, or the exact term).
    fn wants(&self, term: &str) -> bool {
        let Some(list) = &self.annotations else {
            return false;
        };
        list.split(',').map(str::trim).any(|pattern| {
            pattern == "*"
                || pattern == term
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| term.starts_with(prefix))
        })
    }

    /// The `Preference-Applied` header value.
    fn applied(&self, tracking: bool) -> String {
        let mut out = Vec::new();
        if let Some(n) = self.max_page_size {
            out.push(format!("odata.maxpagesize={}", n.min(MAX_PAGE_SIZE)));
        }
        if let Some(a) = &self.annotations {
            out.push(format!("odata.include-annotations=\"{a}\""));
        }
        if tracking {
            out.push("odata.track-changes".to_owned());
        }
        out.join(",")
    }
}

/// The query options of one request.
#[derive(Debug, Default)]
struct Query {
    select: Option<String>,
    filter: Option<String>,
    orderby: Option<String>,
    top: Option<String>,
    expand: Option<String>,
    skiptoken: Option<String>,
    deltatoken: Option<String>,
    /// The raw `name=value` pieces, as the client encoded them.
    raw: Vec<String>,
}

impl Query {
    fn parse(url: &Url) -> Result<Self, ApiError> {
        let mut q = Query {
            raw: url
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Query::default()
        };
        for (key, value) in url.query_pairs() {
            let value = value.into_owned();
            let slot = match key.as_ref() {
                "$select" => &mut q.select,
                "$filter" => &mut q.filter,
                "$orderby" => &mut q.orderby,
                "$top" => &mut q.top,
                "$expand" => &mut q.expand,
                "$skiptoken" => &mut q.skiptoken,
                "$deltatoken" => &mut q.deltatoken,
                other => {
                    return Err(ApiError::bad_request(
                        "0x80060888",
                        format!("The query parameter {other} is not supported"),
                    ));
                }
            };
            if slot.is_some() {
                return Err(ApiError::bad_request(
                    "0x80060888",
                    format!(
                        "Query option '{key}' was specified more than once, but it must be specified at most once."
                    ),
                ));
            }
            *slot = Some(value);
        }
        Ok(q)
    }

    /// The raw query without the options named in `drop`.
    fn raw_without(&self, drop: &[&str]) -> Vec<String> {
        self.raw
            .iter()
            .filter(|piece| {
                let key = reply::percent_decode(piece.split('=').next().unwrap_or_default());
                !drop.contains(&key.as_str())
            })
            .cloned()
            .collect()
    }
}

/// The Web API root (`http://127.0.0.1:PORT/api/data/v9.2/`).
pub(crate) fn api_base(state: &State) -> String {
    format!("{}/api/data/v9.2/", state.base_url)
}

/// `GET <entityset>` or `GET <entityset>(<id>)`.
/// The rows a record query returned and how many columns each has (the primary id included):
/// what its server time depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) rows: usize,
    pub(crate) columns: usize,
}

impl Page {
    fn new(def: &EntityDef, rows: usize, props: &[String]) -> Self {
        let id_missing = !props.contains(&def.primary_id);
        Page {
            rows,
            columns: props.len() + usize::from(id_missing),
        }
    }
}

pub(crate) fn get(
    state: &State,
    path: &str,
    url: &Url,
    prefs: &Prefs,
) -> Result<(Reply, Page), ApiError> {
    let (segment, key) = match path.split_once('(') {
        Some((set, rest)) => (set, Some(rest)),
        None => (path, None),
    };
    let Some(table) = state.table_by_set(segment) else {
        let first = path.split('/').next().unwrap_or(path);
        return Err(ApiError::new(
            404,
            "0x8006088a",
            format!("Resource not found for the segment '{first}'."),
        ));
    };
    let query = Query::parse(url)?;
    match key {
        Some(rest) => {
            let Some(id) = rest.strip_suffix(')') else {
                return Err(ApiError::bad_request(
                    "0x80060888",
                    format!(
                        "The stand-in only serves `{segment}(<id>)` below an entity set, not `{path}`."
                    ),
                ));
            };
            single(state, table, id, &query, prefs)
        }
        None if query.deltatoken.is_some() => delta(state, table, &query, prefs),
        None => collection(state, table, &query, prefs),
    }
}

/// The properties a `$select` names, validated; `None` selects every column.
fn selected(def: &EntityDef, select: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(select) = select else {
        return Ok(def.properties().map(|(p, _)| p).collect());
    };
    let mut out = Vec::new();
    for item in select.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(ApiError::bad_request(
                "0x80060888",
                format!("Syntax error: empty item in $select '{select}'."),
            ));
        }
        def.property(item)
            .ok_or_else(|| filter::no_property(def, item))?;
        if !out.iter().any(|p| p == item) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}

/// `#accounts(name,revenue)` or `#accounts`.
fn context(state: &State, def: &EntityDef, query: &Query, suffix: &str) -> String {
    let columns = match &query.select {
        Some(s) => format!(
            "({})",
            s.split(',').map(str::trim).collect::<Vec<_>>().join(",")
        ),
        None => String::new(),
    };
    format!(
        "{}$metadata#{}{columns}{suffix}",
        api_base(state),
        def.entity_set_name
    )
}

fn single(
    state: &State,
    table: &Table,
    id: &str,
    query: &Query,
    prefs: &Prefs,
) -> Result<(Reply, Page), ApiError> {
    let def = &table.def;
    let id = id.trim_matches('\'').to_ascii_lowercase();
    if query.filter.is_some()
        || query.orderby.is_some()
        || query.top.is_some()
        || query.expand.is_some()
    {
        return Err(ApiError::bad_request(
            "0x80060888",
            "The stand-in serves only $select when retrieving one record.",
        ));
    }
    let props = selected(def, query.select.as_deref())?;
    let Some(row) = table.rows.iter().find(|r| r.id == id) else {
        return Err(ApiError::new(
            404,
            "0x80040217",
            format!("{} With Id = {id} Does Not Exist", def.logical_name),
        ));
    };
    let mut obj = Obj::new().with("@odata.context", context(state, def, query, "/$entity"));
    render_into(&mut obj, state, def, row, &props, prefs);
    let mut body = String::new();
    obj.write(&mut body);
    let applied = prefs.applied(false);
    let mut reply = Reply::ok(body).header("ETag", format!("W/\"{}\"", row.version));
    if !applied.is_empty() {
        reply = reply.header("Preference-Applied", applied);
    }
    Ok((reply, Page::new(def, 1, &props)))
}

/// A paging cookie, as opaque to clients as Dataverse's.
#[derive(Debug, Default)]
struct Cookie {
    page: usize,
    last: Option<String>,
    version: Option<u64>,
}

impl Cookie {
    fn parse(token: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::bad_request("0x80060888", "The $skiptoken is not valid.");
        let page = attribute(token, "pagenumber")
            .and_then(|p| p.parse().ok())
            .ok_or_else(invalid)?;
        let inner = attribute(token, "pagingcookie")
            .map(|c| reply::percent_decode(&reply::percent_decode(c)))
            .unwrap_or_default();
        Ok(Cookie {
            page,
            last: attribute(&inner, "last")
                .map(|l| l.trim_matches(['{', '}']).to_ascii_lowercase()),
            version: attribute(&inner, "version").and_then(|v| v.parse().ok()),
        })
    }

    /// `<cookie pagenumber="2" pagingcookie="..." istracking="False" />`, URL-encoded.
    fn encode(
        page: usize,
        id_column: &str,
        first: &str,
        last: &str,
        version: Option<u64>,
        tracking: bool,
    ) -> String {
        let version = version
            .map(|v| format!(" version=\"{v}\""))
            .unwrap_or_default();
        let inner = format!(
            "<cookie page=\"{}\"{version}><{id_column} last=\"{{{}}}\" first=\"{{{}}}\" /></cookie>",
            page - 1,
            last.to_ascii_uppercase(),
            first.to_ascii_uppercase()
        );
        let twice = reply::encode_lower(&reply::encode_lower(&inner));
        let cookie = format!(
            "<cookie pagenumber=\"{page}\" pagingcookie=\"{twice}\" istracking=\"{}\" />",
            if tracking { "True" } else { "False" }
        );
        reply::encode_query_value(&cookie)
    }
}

/// The value of `name="..."` inside a cookie.
fn attribute<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("{name}=\"");
    let start = text.find(&needle)? + needle.len();
    let end = text[start..].find('"')?;
    Some(&text[start..start + end])
}

fn collection(
    state: &State,
    table: &Table,
    query: &Query,
    prefs: &Prefs,
) -> Result<(Reply, Page), ApiError> {
    let def = &table.def;
    if prefs.track_changes {
        tracking_allowed(def, query)?;
    }
    if query.expand.is_some() {
        return Err(ApiError::bad_request(
            "0x80060888",
            "The stand-in does not support $expand on records.",
        ));
    }
    let props = selected(def, query.select.as_deref())?;
    let filter: Option<Expr> = query
        .filter
        .as_deref()
        .map(|f| filter::parse_filter(f, def))
        .transpose()?;
    let orderby = query
        .orderby
        .as_deref()
        .map(|o| filter::parse_orderby(o, def))
        .transpose()?
        .unwrap_or_default();
    let top = match &query.top {
        Some(t) => Some(t.trim().parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                "0x80060888",
                format!("Invalid value '{t}' for $top query option found."),
            )
        })?),
        None => None,
    };

    let rows: Vec<&Row> = table
        .rows
        .iter()
        .filter(|r| filter.as_ref().is_none_or(|f| filter::matches(f, r)))
        .collect();
    let size = prefs.page_size();
    // A first page needs only its own rows in order (and one more, to know whether more follow).
    let needed = (query.skiptoken.is_none() && top.is_none()).then(|| size.saturating_add(1));
    let mut rows = if orderby.is_empty() {
        rows
    } else {
        sorted(def, rows, &orderby, needed)
    };
    if let Some(top) = top {
        rows.truncate(top);
    }

    let cookie = query.skiptoken.as_deref().map(Cookie::parse).transpose()?;
    let start = match &cookie {
        None => 0,
        Some(c) => c
            .last
            .as_ref()
            .and_then(|last| rows.iter().position(|r| &r.id == last))
            .map(|p| p + 1)
            .unwrap_or_else(|| c.page.saturating_sub(1).saturating_mul(size)),
    };
    let page_number = cookie.as_ref().map_or(1, |c| c.page);
    let snapshot = cookie
        .as_ref()
        .and_then(|c| c.version)
        .unwrap_or(state.version);
    let end = start.saturating_add(size).min(rows.len());
    let page = &rows[start.min(end)..end];

    let items: Vec<Obj> = page
        .iter()
        .map(|row| render(state, def, row, &props, prefs))
        .collect();
    let mut trailer = Vec::new();
    if end < rows.len() {
        let (first, last) = (
            page.first().expect("non-empty"),
            page.last().expect("non-empty"),
        );
        let token = Cookie::encode(
            page_number.saturating_add(1),
            &def.primary_id,
            &first.id,
            &last.id,
            prefs.track_changes.then_some(snapshot),
            prefs.track_changes,
        );
        let mut pieces = query.raw_without(&["$skiptoken"]);
        pieces.push(format!("$skiptoken={token}"));
        trailer.push(("@odata.nextLink", link(state, def, &pieces)));
    } else if prefs.track_changes {
        trailer.push(("@odata.deltaLink", delta_link(state, def, query, snapshot)));
    }
    let body = reply::collection(&context(state, def, query, ""), &items, &trailer);
    let reply = with_applied(Reply::ok(body), prefs, prefs.track_changes);
    Ok((reply, Page::new(def, items.len(), &props)))
}

/// `rows` in `$orderby` order, ties in insertion order; each row's keys are computed once.
/// With `needed`, only that many first rows are returned (found without sorting the rest).
fn sorted<'a>(
    def: &EntityDef,
    rows: Vec<&'a Row>,
    orderby: &[(String, bool)],
    needed: Option<usize>,
) -> Vec<&'a Row> {
    let mut keyed: Vec<(Vec<SortKey>, &Row)> = rows
        .into_iter()
        .map(|row| {
            let keys = orderby
                .iter()
                .map(|(property, _)| {
                    if *property == def.primary_id {
                        return SortKey::Guid(row.key);
                    }
                    let attr = def.property(property).expect("validated");
                    filter::sort_key(row.fields.get(property).unwrap_or(&Json::Null), attr)
                })
                .collect();
            (keys, row)
        })
        .collect();
    let order = |(x, a): &(Vec<SortKey>, &Row), (y, b): &(Vec<SortKey>, &Row)| {
        let by_keys = x
            .iter()
            .zip(y)
            .zip(orderby)
            .map(|((x, y), (_, descending))| {
                let ord = x.cmp(y);
                if *descending { ord.reverse() } else { ord }
            });
        by_keys
            .fold(Ordering::Equal, Ordering::then)
            .then(a.seq.cmp(&b.seq))
    };
    if let Some(needed) = needed.filter(|n| *n > 0 && *n < keyed.len()) {
        keyed.select_nth_unstable_by(needed - 1, order);
        keyed.truncate(needed);
    }
    keyed.sort_by(order);
    keyed.into_iter().map(|(_, row)| row).collect()
}

fn with_applied(reply: Reply, prefs: &Prefs, tracking: bool) -> Reply {
    let applied = prefs.applied(tracking);
    if applied.is_empty() {
        reply
    } else {
        reply.header("Preference-Applied", applied)
    }
}

/// Refuses change tracking on a table without it, and with query options it excludes.
fn tracking_allowed(def: &EntityDef, query: &Query) -> Result<(), ApiError> {
    if !def.change_tracking {
        return Err(ApiError::bad_request(
            "0x80072491",
            format!(
                "Entity {} isn't enabled for change tracking",
                def.logical_name
            ),
        ));
    }
    for (option, present) in [
        ("$filter", query.filter.is_some()),
        ("$orderby", query.orderby.is_some()),
        ("$expand", query.expand.is_some()),
        ("$top", query.top.is_some()),
    ] {
        if present {
            return Err(ApiError::bad_request(
                "0x80060888",
                format!(
                    "The query option '{option}' cannot be used with change tracking (Prefer: odata.track-changes or $deltatoken)."
                ),
            ));
        }
    }
    Ok(())
}

fn link(state: &State, def: &EntityDef, pieces: &[String]) -> String {
    format!(
        "{}{}?{}",
        api_base(state),
        def.entity_set_name,
        pieces.join("&")
    )
}

/// `<base>/<set>?$select=...&$deltatoken=<version>%21<MM/dd/yyyy HH:mm:ss>`.
fn delta_link(state: &State, def: &EntityDef, query: &Query, version: u64) -> String {
    let stamp = chrono::Utc::now().format("%m/%d/%Y %H:%M:%S");
    let token = reply::encode_lower(&format!("{version}!{stamp}"));
    let mut pieces: Vec<String> = query
        .raw_without(&[
            "$skiptoken",
            "$deltatoken",
            "$filter",
            "$orderby",
            "$top",
            "$expand",
        ])
        .into_iter()
        .collect();
    pieces.push(format!("$deltatoken={token}"));
    link(state, def, &pieces)
}

/// One change in a delta: a live row or a deletion, ordered rows first then deletions, each by
/// version.
enum Change<'a> {
    Row(&'a Row),
    Deleted(&'a str),
}

fn delta(
    state: &State,
    table: &Table,
    query: &Query,
    prefs: &Prefs,
) -> Result<(Reply, Page), ApiError> {
    let def = &table.def;
    tracking_allowed(def, query)?;
    let token = query.deltatoken.as_deref().unwrap_or_default();
    let from: u64 = token
        .split('!')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("0x80060888", "The $deltatoken is not valid."))?;
    if from < state.delta_floor {
        return Err(ApiError::bad_request(
            "0x80044352",
            "Version stamp associated with the client has expired. Please perform a full sync.",
        ));
    }
    let props = selected(def, query.select.as_deref())?;
    let cookie = query.skiptoken.as_deref().map(Cookie::parse).transpose()?;
    let upper = cookie
        .as_ref()
        .and_then(|c| c.version)
        .unwrap_or(state.version);
    // Resume key: (phase, version) of the last change already sent.
    let resume: Option<(u8, u64)> = cookie
        .as_ref()
        .and_then(|c| c.last.as_deref())
        .and_then(|l| {
            let (phase, version) = l.split_once(':')?;
            Some((phase.parse().ok()?, version.parse().ok()?))
        });

    let mut changed: Vec<&Row> = table
        .rows
        .iter()
        .filter(|r| r.version > from && r.version <= upper)
        .collect();
    changed.sort_by_key(|r| r.version);
    let mut deleted: Vec<_> = table
        .tombstones
        .iter()
        .filter(|t| {
            t.version > from && t.version <= upper && !table.rows.iter().any(|r| r.id == t.id)
        })
        .collect();
    deleted.sort_by_key(|t| t.version);
    let all: Vec<((u8, u64), Change)> = changed
        .into_iter()
        .map(|r| ((0, r.version), Change::Row(r)))
        .chain(
            deleted
                .into_iter()
                .map(|t| ((1, t.version), Change::Deleted(&t.id))),
        )
        .filter(|(key, _)| resume.is_none_or(|r| *key > r))
        .collect();

    let size = prefs.page_size();
    let page = &all[..size.min(all.len())];
    let deleted_context = format!(
        "{}$metadata#{}/$deletedEntity",
        api_base(state),
        def.entity_set_name
    );
    let items: Vec<Obj> = page
        .iter()
        .map(|(_, change)| match change {
            Change::Row(row) => render(state, def, row, &props, prefs),
            Change::Deleted(id) => Obj::new()
                .with("@odata.context", deleted_context.as_str())
                .with("id", *id)
                .with("reason", "deleted"),
        })
        .collect();
    let mut trailer = Vec::new();
    if all.len() > page.len() {
        let ((phase, version), _) = page.last().expect("non-empty");
        let page_number = cookie.as_ref().map_or(1, |c| c.page).saturating_add(1);
        let inner_last = format!("{phase}:{version}");
        let token = Cookie::encode(
            page_number,
            &def.primary_id,
            &inner_last,
            &inner_last,
            Some(upper),
            true,
        );
        let mut pieces = query.raw_without(&["$skiptoken"]);
        pieces.push(format!("$skiptoken={token}"));
        trailer.push(("@odata.nextLink", link(state, def, &pieces)));
    } else {
        trailer.push(("@odata.deltaLink", delta_link(state, def, query, upper)));
    }
    let body = reply::collection(&context(state, def, query, "/$delta"), &items, &trailer);
    let reply = with_applied(Reply::ok(body), prefs, true);
    Ok((reply, Page::new(def, items.len(), &props)))
}

/// One row as the Web API writes it: etag, the selected properties (annotations first when
/// asked for), and the primary id.
fn render(state: &State, def: &EntityDef, row: &Row, props: &[String], prefs: &Prefs) -> Obj {
    let mut obj = Obj::new();
    render_into(&mut obj, state, def, row, props, prefs);
    obj
}

fn render_into(
    obj: &mut Obj,
    state: &State,
    def: &EntityDef,
    row: &Row,
    props: &[String],
    prefs: &Prefs,
) {
    obj.push("@odata.etag", format!("W/\"{}\"", row.version));
    let mut all: Vec<&str> = props.iter().map(String::as_str).collect();
    if !all.contains(&def.primary_id.as_str()) {
        all.push(&def.primary_id);
    }
    for property in all {
        let Some(attr) = def.property(property) else {
            continue;
        };
        let value = row.fields.get(property).cloned().unwrap_or(Json::Null);
        if !value.is_null() {
            if prefs.wants(FORMATTED) {
                if let Some(text) = row
                    .formatted
                    .get(property)
                    .cloned()
                    .or_else(|| formatted(state, attr, &value))
                {
                    obj.push(format!("{property}@{FORMATTED}"), text);
                }
            }
            if let Some(target) = row.lookup_targets.get(property) {
                if prefs.wants(NAV_PROPERTY) {
                    let nav = if attr.targets.len() > 1 {
                        format!("{}_{target}", attr.logical_name)
                    } else {
                        attr.logical_name.clone()
                    };
                    obj.push(format!("{property}@{NAV_PROPERTY}"), nav);
                }
                if prefs.wants(LOOKUP_NAME) {
                    obj.push(format!("{property}@{LOOKUP_NAME}"), target.as_str());
                }
            }
        }
        let out = match (&attr.attribute_type, value) {
            (
                AttributeType::Money
                | AttributeType::Decimal
                | AttributeType::Double
                | AttributeType::BigInt,
                Json::String(literal),
            ) => Out::Raw(literal),
            (_, value) => Out::Value(value),
        };
        if !obj.has(property) {
            obj.push(property, out);
        }
    }
}

/// The formatted value Dataverse would give for `value` (en-US, UTC).
fn formatted(state: &State, attr: &AttributeDef, value: &Json) -> Option<String> {
    match &attr.attribute_type {
        AttributeType::Picklist | AttributeType::State | AttributeType::Status => {
            attr.label(value.as_i64()?).map(str::to_owned)
        }
        AttributeType::Boolean => {
            let b = value.as_bool()?;
            Some(
                attr.label(i64::from(b))
                    .unwrap_or(if b { "Yes" } else { "No" })
                    .to_owned(),
            )
        }
        AttributeType::Integer | AttributeType::BigInt => Some(group(&value_text(value)?)),
        AttributeType::Money => Some(format!("${}", rounded(&value_text(value)?, 2))),
        AttributeType::Decimal => Some(rounded(&value_text(value)?, 2)),
        AttributeType::Double => Some(group(&value_text(value)?)),
        AttributeType::DateTime => {
            let text = value.as_str()?;
            if attr.date_only {
                let d = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
                Some(d.format("%-m/%-d/%Y").to_string())
            } else {
                let dt = chrono::DateTime::parse_from_rfc3339(text).ok()?;
                Some(dt.format("%-m/%-d/%Y %-I:%M %p").to_string())
            }
        }
        AttributeType::Lookup | AttributeType::Customer | AttributeType::Owner => {
            let id = value.as_str()?;
            attr.targets.iter().find_map(|target| {
                let table = state.table(target)?;
                let name = table.def.primary_name.as_deref()?;
                let row = table.rows.iter().find(|r| r.id == id)?;
                row.fields.get(name)?.as_str().map(str::to_owned)
            })
        }
        _ => None,
    }
}

fn value_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `1234567.5` -> `1,234,567.5`.
fn group(literal: &str) -> String {
    let (sign, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", literal),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Rounds a decimal literal half away from zero to `places` decimals, digit for digit, and
/// groups thousands: `922337203685477.5807` -> `922,337,203,685,477.58`.
fn rounded(literal: &str, places: usize) -> String {
    let (sign, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", literal),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let mut digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes().chain(std::iter::repeat(b'0')).take(places))
        .map(|b| b - b'0')
        .collect();
    if fraction.as_bytes().get(places).is_some_and(|d| *d >= b'5') {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let (w, f) = text.split_at(text.len() - places);
    let w = if w.is_empty() { "0" } else { w };
    let grouped = group(w);
    if places == 0 {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_every_digit() {
        assert_eq!(rounded("922337203685477.5807", 2), "922,337,203,685,477.58");
        assert_eq!(rounded("5000000.0000", 2), "5,000,000.00");
        assert_eq!(rounded("999.995", 2), "1,000.00");
        assert_eq!(rounded("-12", 2), "-12.00");
        assert_eq!(group("1234"), "1,234");
    }

    #[test]
    fn prefer_header_is_split_outside_quotes() {
        let prefs = Prefs::parse(&[
            "odata.maxpagesize=10, odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname\",odata.track-changes".to_owned(),
        ]);
        assert_eq!(prefs.max_page_size, Some(10));
        assert!(prefs.track_changes);
        assert!(prefs.wants(FORMATTED));
        assert!(prefs.wants(LOOKUP_NAME));
        assert!(!prefs.wants(NAV_PROPERTY));
    }
}
