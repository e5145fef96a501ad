//! Record queries: `$select`, `$filter`, `$orderby`, `$top`, paging by `@odata.nextLink`,
//! annotations on request, and change tracking (`@odata.deltaLink`, `$deltatoken`).

use super::filter::{self, Expr, SortKey};
use super::prefer::Prefs;
use super::render::RowWriter;
use super::reply::{self, ApiError, Obj, Reply, push_json_str, push_key};
use super::state::{EntityDef, Row, State, Table};
use serde_json::Value as Json;
use std::cmp::Ordering;
use url::Url;

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
    let mut body = "{".to_owned();
    push_key(&mut body, "@odata.context");
    push_json_str(&mut body, &context(state, def, query, "/$entity"));
    body.push(',');
    RowWriter::new(state, def, &props, prefs).write_properties(row, &mut body);
    body.push('}');
    let reply = Reply::ok(body).header("ETag", format!("W/\"{}\"", row.version));
    Ok((with_applied(reply, prefs, false), Page::new(def, 1, &props)))
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

    /// The key of the last change a delta page sent (`<phase>:<version>`).
    fn resume_key(&self) -> Option<ChangeKey> {
        let (phase, version) = self.last.as_deref()?.split_once(':')?;
        Some((phase.parse().ok()?, version.parse().ok()?))
    }

    /// Where the page after the cookie's starts in `rows`: after its last row, or (when that
    /// row is gone) at its page number's offset.
    fn resume_at(&self, rows: &[&Row], size: usize) -> usize {
        self.last
            .as_ref()
            .and_then(|last| rows.iter().position(|r| &r.id == last))
            .map(|p| p + 1)
            .unwrap_or_else(|| self.page.saturating_sub(1).saturating_mul(size))
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
    let rows = matching(table, query, prefs.page_size())?;
    let cookie = query.skiptoken.as_deref().map(Cookie::parse).transpose()?;
    let size = prefs.page_size();
    let start = cookie.as_ref().map_or(0, |c| c.resume_at(&rows, size));
    let end = start.saturating_add(size).min(rows.len());
    let page = &rows[start.min(end)..end];
    let snapshot = cookie
        .as_ref()
        .and_then(|c| c.version)
        .unwrap_or(state.version);
    let trailer = match (page.first(), page.last()) {
        (Some(first), Some(last)) if end < rows.len() => {
            let page_number = cookie.as_ref().map_or(1, |c| c.page);
            let ends = (first.id.as_str(), last.id.as_str());
            Some(next_page_link(
                state,
                def,
                query,
                prefs,
                page_number,
                ends,
                snapshot,
            ))
        }
        _ if prefs.track_changes => Some(delta_link(state, def, query, snapshot)),
        _ => None,
    };
    let writer = RowWriter::new(state, def, &props, prefs);
    let body = reply::collection(
        &context(state, def, query, ""),
        page.iter(),
        |row, out| writer.write(row, out),
        trailer.as_slice(),
    );
    let reply = with_applied(Reply::ok(body), prefs, prefs.track_changes);
    Ok((reply, Page::new(def, page.len(), &props)))
}

/// The rows a query's `$filter`, `$orderby` and `$top` select, in order. A first page of
/// `page_size` rows needs only its own rows in order (and one more, to know whether more
/// follow), so only those are sorted.
fn matching<'t>(
    table: &'t Table,
    query: &Query,
    page_size: usize,
) -> Result<Vec<&'t Row>, ApiError> {
    let def = &table.def;
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
    let top = query.top.as_deref().map(parse_top).transpose()?;
    let rows: Vec<&Row> = table
        .rows
        .iter()
        .filter(|r| filter.as_ref().is_none_or(|f| filter::matches(f, r)))
        .collect();
    let needed = (query.skiptoken.is_none() && top.is_none()).then(|| page_size.saturating_add(1));
    let mut rows = if orderby.is_empty() {
        rows
    } else {
        sorted(def, rows, &orderby, needed)
    };
    if let Some(top) = top {
        rows.truncate(top);
    }
    Ok(rows)
}

fn parse_top(top: &str) -> Result<usize, ApiError> {
    top.trim().parse().map_err(|_| {
        ApiError::bad_request(
            "0x80060888",
            format!("Invalid value '{top}' for $top query option found."),
        )
    })
}

/// The `@odata.nextLink` after page `page_number`, whose rows run from id `ends.0` to
/// `ends.1`: the query again with a paging cookie.
fn next_page_link(
    state: &State,
    def: &EntityDef,
    query: &Query,
    prefs: &Prefs,
    page_number: usize,
    ends: (&str, &str),
    snapshot: u64,
) -> (&'static str, String) {
    let token = Cookie::encode(
        page_number.saturating_add(1),
        &def.primary_id,
        ends.0,
        ends.1,
        prefs.track_changes.then_some(snapshot),
        prefs.track_changes,
    );
    next_link(state, def, query, &token)
}

/// `("@odata.nextLink", <the query with $skiptoken=token>)`.
fn next_link(state: &State, def: &EntityDef, query: &Query, token: &str) -> (&'static str, String) {
    let mut pieces = query.raw_without(&["$skiptoken"]);
    pieces.push(format!("$skiptoken={token}"));
    ("@odata.nextLink", link(state, def, &pieces))
}

/// `rows` in `$orderby` order, ties in insertion order; each row's keys are computed once.
/// With `needed`, only that many first rows are returned (found without sorting the rest).
fn sorted<'a>(
    def: &EntityDef,
    rows: Vec<&'a Row>,
    orderby: &[(String, bool)],
    needed: Option<usize>,
) -> Vec<&'a Row> {
    // The keys of row `i` are `keys[i * width..][..width]`: one allocation for all of them.
    let width = orderby.len();
    let keys: Vec<SortKey> = rows
        .iter()
        .flat_map(|row| {
            orderby
                .iter()
                .map(|(property, _)| row_sort_key(def, row, property))
        })
        .collect();
    let order = |a: &usize, b: &usize| {
        let (x, y) = (&keys[a * width..][..width], &keys[b * width..][..width]);
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
            .then(rows[*a].seq.cmp(&rows[*b].seq))
    };
    let mut positions: Vec<usize> = (0..rows.len()).collect();
    if let Some(needed) = needed.filter(|n| *n > 0 && *n < positions.len()) {
        positions.select_nth_unstable_by(needed - 1, order);
        positions.truncate(needed);
    }
    positions.sort_by(order);
    positions.into_iter().map(|i| rows[i]).collect()
}

/// What `row` sorts by for `property`.
fn row_sort_key(def: &EntityDef, row: &Row, property: &str) -> SortKey {
    if property == def.primary_id {
        return SortKey::Guid(row.key);
    }
    let attr = def.property(property).expect("validated");
    filter::sort_key(row.fields.get(property).unwrap_or(&Json::Null), attr)
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

/// `("@odata.deltaLink", <base>/<set>?$select=...&$deltatoken=<version>%21<MM/dd/yyyy HH:mm:ss>)`.
fn delta_link(
    state: &State,
    def: &EntityDef,
    query: &Query,
    version: u64,
) -> (&'static str, String) {
    let stamp = chrono::Utc::now().format("%m/%d/%Y %H:%M:%S");
    let token = reply::encode_lower(&format!("{version}!{stamp}"));
    let mut pieces = query.raw_without(&[
        "$skiptoken",
        "$deltatoken",
        "$filter",
        "$orderby",
        "$top",
        "$expand",
    ]);
    pieces.push(format!("$deltatoken={token}"));
    ("@odata.deltaLink", link(state, def, &pieces))
}

/// One change in a delta: a live row or a deletion, ordered rows first then deletions, each by
/// version.
enum Change<'a> {
    Row(&'a Row),
    Deleted(&'a str),
}

/// Where a change sorts in a delta: (phase, version), rows in phase 0, deletions in phase 1.
type ChangeKey = (u8, u64);

fn delta(
    state: &State,
    table: &Table,
    query: &Query,
    prefs: &Prefs,
) -> Result<(Reply, Page), ApiError> {
    let def = &table.def;
    tracking_allowed(def, query)?;
    let from = delta_from(state, query)?;
    let props = selected(def, query.select.as_deref())?;
    let cookie = query.skiptoken.as_deref().map(Cookie::parse).transpose()?;
    let upper = cookie
        .as_ref()
        .and_then(|c| c.version)
        .unwrap_or(state.version);
    let resume = cookie.as_ref().and_then(Cookie::resume_key);
    let all = changes(table, from, upper, resume);
    let page = &all[..prefs.page_size().min(all.len())];
    let trailer = match page.last() {
        Some(((phase, version), _)) if all.len() > page.len() => {
            let page_number = cookie.as_ref().map_or(1, |c| c.page).saturating_add(1);
            let last = format!("{phase}:{version}");
            let token = Cookie::encode(
                page_number,
                &def.primary_id,
                &last,
                &last,
                Some(upper),
                true,
            );
            next_link(state, def, query, &token)
        }
        _ => delta_link(state, def, query, upper),
    };
    let writer = RowWriter::new(state, def, &props, prefs);
    let deleted_context = format!(
        "{}$metadata#{}/$deletedEntity",
        api_base(state),
        def.entity_set_name
    );
    let write_change = |(_, change): &(ChangeKey, Change), out: &mut String| match change {
        Change::Row(row) => writer.write(row, out),
        Change::Deleted(id) => Obj::new()
            .with("@odata.context", deleted_context.as_str())
            .with("id", *id)
            .with("reason", "deleted")
            .write(out),
    };
    let context = context(state, def, query, "/$delta");
    let body = reply::collection(&context, page.iter(), write_change, &[trailer]);
    let reply = with_applied(Reply::ok(body), prefs, true);
    Ok((reply, Page::new(def, page.len(), &props)))
}

/// The version a `$deltatoken` was issued at; refused when expired.
fn delta_from(state: &State, query: &Query) -> Result<u64, ApiError> {
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
    Ok(from)
}

/// The changes after version `from` up to `upper`, in delta order, after `resume` (the key of
/// the last change already sent).
fn changes(
    table: &Table,
    from: u64,
    upper: u64,
    resume: Option<ChangeKey>,
) -> Vec<(ChangeKey, Change<'_>)> {
    let in_range = |version: u64| version > from && version <= upper;
    let mut changed: Vec<&Row> = table.rows.iter().filter(|r| in_range(r.version)).collect();
    changed.sort_by_key(|r| r.version);
    let mut deleted: Vec<_> = table
        .tombstones
        .iter()
        .filter(|t| in_range(t.version) && !table.rows.iter().any(|r| r.id == t.id))
        .collect();
    deleted.sort_by_key(|t| t.version);
    changed
        .into_iter()
        .map(|r| ((0, r.version), Change::Row(r)))
        .chain(
            deleted
                .into_iter()
                .map(|t| ((1, t.version), Change::Deleted(&t.id))),
        )
        .filter(|(key, _)| resume.is_none_or(|r| *key > r))
        .collect()
}
