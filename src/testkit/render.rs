//! Records as the Web API writes them, straight into the response text: the etag, the selected
//! properties in order (annotations first when asked for), and formatted values (en-US, UTC).

use super::prefer::{FORMATTED, LOOKUP_NAME, NAV_PROPERTY, Prefs};
use super::reply::{push_decimal, push_json, push_json_str, push_key};
use super::state::{AttributeDef, EntityDef, Row, State};
use crate::metadata::AttributeType;
use chrono::{Datelike as _, Timelike as _};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::fmt::Write as _;

/// Writes the rows of one response: what every row shares (columns, keys, annotations asked
/// for) is worked out once.
pub(crate) struct RowWriter<'a> {
    state: &'a State,
    columns: Vec<Column<'a>>,
    formatted: bool,
    navigation: bool,
    lookup_name: bool,
}

/// One property every row carries, its keys escaped once.
struct Column<'a> {
    property: &'a str,
    attr: &'a AttributeDef,
    /// `"name":`.
    key: String,
    /// `,"name@OData.Community.Display.V1.FormattedValue":`.
    formatted_key: String,
    /// `,"name@Microsoft.Dynamics.CRM.associatednavigationproperty":`.
    navigation_key: String,
    /// `,"name@Microsoft.Dynamics.CRM.lookuplogicalname":`.
    lookup_name_key: String,
    /// Money, Decimal, Double and BigInt values are kept as literals, written digit for digit.
    numeric: bool,
}

impl<'a> RowWriter<'a> {
    /// A writer of the properties `props` (and the primary id) of `def`'s rows.
    pub(crate) fn new(
        state: &'a State,
        def: &'a EntityDef,
        props: &'a [String],
        prefs: &Prefs,
    ) -> Self {
        let names = props.iter().map(String::as_str);
        let mut columns: Vec<Column<'a>> = Vec::new();
        for property in names.chain([def.primary_id.as_str()]) {
            let Some(attr) = def.property(property) else {
                continue;
            };
            if columns.iter().all(|c| c.property != property) {
                columns.push(Column::new(property, attr));
            }
        }
        RowWriter {
            state,
            columns,
            formatted: prefs.wants(FORMATTED),
            navigation: prefs.wants(NAV_PROPERTY),
            lookup_name: prefs.wants(LOOKUP_NAME),
        }
    }

    /// `{"@odata.etag":"W/\"<version>\"",<properties>}`.
    pub(crate) fn write(&self, row: &Row, out: &mut String) {
        out.push('{');
        self.write_properties(row, out);
        out.push('}');
    }

    /// The etag and the properties of `row`, without the braces around them.
    pub(crate) fn write_properties(&self, row: &Row, out: &mut String) {
        out.push_str("\"@odata.etag\":\"W/\\\"");
        push_decimal(out, row.version);
        out.push_str("\\\"\"");
        for column in &self.columns {
            let value = row.fields.get(column.property).unwrap_or(&Json::Null);
            if !value.is_null() {
                self.write_annotations(column, row, value, out);
            }
            out.push(',');
            out.push_str(&column.key);
            match value {
                Json::String(literal) if column.numeric => out.push_str(literal),
                value => push_json(out, value),
            }
        }
    }

    /// The annotations asked for that `value` of `column` has.
    fn write_annotations(&self, column: &Column, row: &Row, value: &Json, out: &mut String) {
        let property = column.property;
        if self.formatted {
            let text = match row.formatted.get(property) {
                Some(given) => Some(Cow::Borrowed(given.as_str())),
                None => formatted(self.state, column.attr, value),
            };
            if let Some(text) = text {
                push_annotation(out, &column.formatted_key, &text);
            }
        }
        let Some(target) = row.lookup_targets.get(property) else {
            return;
        };
        if self.navigation {
            let attr = column.attr;
            let navigation = if attr.targets.len() > 1 {
                Cow::Owned(format!("{}_{target}", attr.logical_name))
            } else {
                Cow::Borrowed(attr.logical_name.as_str())
            };
            push_annotation(out, &column.navigation_key, &navigation);
        }
        if self.lookup_name {
            push_annotation(out, &column.lookup_name_key, target);
        }
    }
}

impl<'a> Column<'a> {
    fn new(property: &'a str, attr: &'a AttributeDef) -> Self {
        let mut key = String::new();
        push_key(&mut key, property);
        let annotation_key = |term: &str| {
            let mut key = ",".to_owned();
            push_key(&mut key, &format!("{property}@{term}"));
            key
        };
        Column {
            property,
            attr,
            key,
            formatted_key: annotation_key(FORMATTED),
            navigation_key: annotation_key(NAV_PROPERTY),
            lookup_name_key: annotation_key(LOOKUP_NAME),
            numeric: matches!(
                attr.attribute_type,
                AttributeType::Money
                    | AttributeType::Decimal
                    | AttributeType::Double
                    | AttributeType::BigInt
            ),
        }
    }
}

/// `,"<property>@<term>":"<text>"`, its key written beforehand.
fn push_annotation(out: &mut String, key: &str, text: &str) {
    out.push_str(key);
    push_json_str(out, text);
}

/// The formatted value Dataverse would give for `value` (en-US, UTC).
fn formatted<'s>(state: &'s State, attr: &'s AttributeDef, value: &Json) -> Option<Cow<'s, str>> {
    match &attr.attribute_type {
        AttributeType::Picklist | AttributeType::State | AttributeType::Status => {
            attr.label(value.as_i64()?).map(Cow::Borrowed)
        }
        AttributeType::Boolean => {
            let b = value.as_bool()?;
            let label = attr
                .label(i64::from(b))
                .unwrap_or(if b { "Yes" } else { "No" });
            Some(Cow::Borrowed(label))
        }
        AttributeType::Integer | AttributeType::BigInt | AttributeType::Double => {
            Some(Cow::Owned(group(&value_text(value)?)))
        }
        AttributeType::Money => Some(Cow::Owned(format!("${}", rounded(&value_text(value)?, 2)))),
        AttributeType::Decimal => Some(Cow::Owned(rounded(&value_text(value)?, 2))),
        AttributeType::DateTime => date_time(value.as_str()?, attr.date_only).map(Cow::Owned),
        AttributeType::Lookup | AttributeType::Customer | AttributeType::Owner => {
            looked_up_name(state, attr, value.as_str()?).map(Cow::Borrowed)
        }
        _ => None,
    }
}

/// The primary name of the row lookup `attr` points at with `id`.
fn looked_up_name<'s>(state: &'s State, attr: &AttributeDef, id: &str) -> Option<&'s str> {
    attr.targets.iter().find_map(|target| {
        let table = state.table(target)?;
        let name = table.def.primary_name.as_deref()?;
        let row = table.rows.iter().find(|r| r.id == id)?;
        row.fields.get(name)?.as_str()
    })
}

/// `6/12/2024 2:13 PM` for `2024-06-12T14:13:25Z`; `6/12/2024` for a date-only `2024-06-12`
/// (chrono's `%-m/%-d/%Y %-I:%M %p`, written by hand: chrono's formatting is slow).
fn date_time(text: &str, date_only: bool) -> Option<String> {
    let mut out = String::with_capacity(20);
    if date_only {
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        push_date(&mut out, date);
        return Some(out);
    }
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    push_date(&mut out, at.date_naive());
    let (pm, hour) = at.hour12();
    out.push(' ');
    push_digits(&mut out, hour, 1);
    out.push(':');
    push_digits(&mut out, at.minute(), 2);
    out.push_str(if pm { " PM" } else { " AM" });
    Some(out)
}

/// `6/12/2024`; years outside `0..=9999` signed, as chrono's `%Y` writes them.
fn push_date(out: &mut String, date: chrono::NaiveDate) {
    push_digits(out, date.month(), 1);
    out.push('/');
    push_digits(out, date.day(), 1);
    out.push('/');
    match u32::try_from(date.year()) {
        Ok(year) if year < 10_000 => push_digits(out, year, 4),
        _ => write!(out, "{:+05}", date.year()).expect("writing to a String cannot fail"),
    }
}

/// Appends `n` in decimal, with leading zeros up to `width` digits.
fn push_digits(out: &mut String, n: u32, width: usize) {
    let digits = n.checked_ilog10().map_or(1, |log| log as usize + 1);
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits)));
    push_decimal(out, u64::from(n));
}

/// A number's text: the literal kept for numeric columns, or the JSON number.
fn value_text(value: &Json) -> Option<Cow<'_, str>> {
    match value {
        Json::String(s) => Some(Cow::Borrowed(s)),
        Json::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// `1234567.5` -> `1,234,567.5`.
fn group(literal: &str) -> String {
    let (sign, unsigned) = split_sign(literal);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let mut out = String::with_capacity(literal.len() + whole.len() / 3);
    out.push_str(sign);
    push_grouped(&mut out, whole);
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// Rounds a decimal literal half away from zero to `places` decimals, digit for digit, and
/// groups thousands: `922337203685477.5807` -> `922,337,203,685,477.58`.
fn rounded(literal: &str, places: usize) -> String {
    let (sign, unsigned) = split_sign(literal);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let mut digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes().chain(std::iter::repeat(b'0')).take(places))
        .collect();
    if fraction.as_bytes().get(places).is_some_and(|d| *d >= b'5') {
        round_up(&mut digits);
    }
    let text: String = digits.iter().copied().map(char::from).collect();
    let (w, f) = text.split_at(text.len() - places);
    let mut out = String::with_capacity(text.len() + text.len() / 3 + 2);
    out.push_str(sign);
    push_grouped(&mut out, if w.is_empty() { "0" } else { w });
    if places > 0 {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// Adds one in the last place to ASCII decimal `digits`, carrying to the left.
fn round_up(digits: &mut Vec<u8>) {
    for digit in digits.iter_mut().rev() {
        if *digit == b'9' {
            *digit = b'0';
        } else {
            *digit += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

/// `("-", "12")` for `-12`, `("", "12")` for `12`.
fn split_sign(literal: &str) -> (&str, &str) {
    match literal.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", literal),
    }
}

/// Appends whole-number `digits` with a comma between thousands.
fn push_grouped(out: &mut String, digits: &str) {
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
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
    fn dates_are_formatted_as_chrono_formats_them() {
        for text in [
            "2024-06-12T14:13:25Z",
            "2024-01-02T00:05:00Z",
            "0999-12-31T12:00:00Z",
        ] {
            let at = chrono::DateTime::parse_from_rfc3339(text).unwrap();
            let expected = at.format("%-m/%-d/%Y %-I:%M %p").to_string();
            assert_eq!(date_time(text, false).unwrap(), expected);
        }
        for text in ["2024-06-12", "0012-01-09", "+12345-01-09"] {
            let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") else {
                continue;
            };
            let expected = date.format("%-m/%-d/%Y").to_string();
            assert_eq!(date_time(text, true).unwrap(), expected);
        }
    }
}
