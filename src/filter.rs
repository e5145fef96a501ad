//! A typed OData `$filter` builder whose literals cannot break or inject into the query.

use crate::error::{Error, Result};
use crate::value::Number;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use std::fmt::{self, Write as _};

/// A row filter for a read: typed comparisons combined with `and`/`or`, or a raw OData
/// expression passed through as given.
///
/// Literals are rendered by type: strings are quoted with `'` doubled (`O'Brien` becomes
/// `'O''Brien'`), GUIDs, dates and numbers are bare, and column names are checked to be plain
/// identifiers, so no value or name can change the shape of the query. The rendered text is
/// percent-encoded when it is put in the URL, so `&`, `#`, `+` and `%` in a literal reach
/// Dataverse unchanged.
///
/// ```
/// use d365_connector::{Filter, FilterValue};
///
/// let filter = Filter::eq("lastname", "O'Brien")
///     .and(Filter::ge("createdon", FilterValue::date_time("2024-06-12T14:13:25Z").unwrap()))
///     .or(Filter::is_null("parentcustomerid"));
/// assert_eq!(
///     filter.to_odata().unwrap(),
///     "((lastname eq 'O''Brien') and (createdon ge 2024-06-12T14:13:25Z)) or (parentcustomerid eq null)"
/// );
/// ```
///
/// When an [`EntitySource`](crate::EntitySource) renders the filter, every column is checked
/// against the table's metadata and lookup columns are addressed as the Web API expects
/// (`parentcustomerid` becomes `_parentcustomerid_value`). A [`Filter::raw`] expression is
/// sent verbatim and is the caller's responsibility.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter(Node);

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Compare {
        column: String,
        op: Comparison,
        literal: FilterValue,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Raw(String),
}

/// An OData comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Comparison {
    fn as_str(self) -> &'static str {
        match self {
            Comparison::Eq => "eq",
            Comparison::Ne => "ne",
            Comparison::Gt => "gt",
            Comparison::Ge => "ge",
            Comparison::Lt => "lt",
            Comparison::Le => "le",
        }
    }
}

impl Filter {
    fn compare(column: impl Into<String>, op: Comparison, literal: impl Into<FilterValue>) -> Self {
        Self(Node::Compare {
            column: column.into(),
            op,
            literal: literal.into(),
        })
    }

    /// `column eq literal`.
    pub fn eq(column: impl Into<String>, literal: impl Into<FilterValue>) -> Self {
        Self::compare(column, Comparison::Eq, literal)
    }

    /// `column ne literal`.
    pub fn ne(column: impl Into<String>, literal: impl Into<FilterValue>) -> Self {
        Self::compare(column, Comparison::Ne, literal)
    }

    /// `column gt literal`.
    pub fn gt(column: impl Into<String>, literal: impl Into<FilterValue>) -> Self {
        Self::compare(column, Comparison::Gt, literal)
    }

    /// `column ge literal`.
    pub fn ge(column: impl Into<String>, literal: impl Into<FilterValue>) -> Self {
        Self::compare(column, Comparison::Ge, literal)
    }

    /// `column lt literal`.
    pub fn lt(column: impl Into<String>, literal: impl Into<FilterValue>) -> Self {
        Self::compare(column, Comparison::Lt, literal)
    }

    /// `column le literal`.
    pub fn le(column: impl Into<String>, literal: impl Into<FilterValue>) -> Self {
        Self::compare(column, Comparison::Le, literal)
    }

    /// `column eq null`.
    pub fn is_null(column: impl Into<String>) -> Self {
        Self::eq(column, FilterValue::null())
    }

    /// `column ne null`.
    pub fn is_not_null(column: impl Into<String>) -> Self {
        Self::ne(column, FilterValue::null())
    }

    /// An OData filter expression passed through verbatim (such as `statecode eq 0`).
    ///
    /// Nothing in it is checked or escaped; never build one from untrusted input.
    pub fn raw(expression: impl Into<String>) -> Self {
        Self(Node::Raw(expression.into()))
    }

    /// Both this filter and `other`.
    #[must_use]
    pub fn and(self, other: Filter) -> Self {
        Self(Node::And(Box::new(self), Box::new(other)))
    }

    /// This filter or `other`.
    #[must_use]
    pub fn or(self, other: Filter) -> Self {
        Self(Node::Or(Box::new(self), Box::new(other)))
    }

    /// The negation of `filter`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(filter: Filter) -> Self {
        Self(Node::Not(Box::new(filter)))
    }

    /// The OData expression, with column names as given.
    ///
    /// Fails with a [`Config`](crate::ErrorKind::Config) error naming every column that is not
    /// a plain identifier.
    pub fn to_odata(&self) -> Result<String> {
        self.render(&mut |column| Ok(column.to_owned()))
    }

    /// Renders the expression, turning each (checked) column name into the property to filter
    /// on with `resolve`. Every bad column is reported at once.
    pub(crate) fn render(&self, resolve: &mut dyn FnMut(&str) -> Result<String>) -> Result<String> {
        let mut out = String::new();
        let mut problems = Vec::new();
        self.render_into(&mut out, resolve, &mut problems);
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(Error::config(format!(
                "the filter is invalid: {}",
                problems.join("; ")
            )))
        }
    }

    fn render_into(
        &self,
        out: &mut String,
        resolve: &mut dyn FnMut(&str) -> Result<String>,
        problems: &mut Vec<String>,
    ) {
        match &self.0 {
            Node::Compare {
                column,
                op,
                literal,
            } => {
                if !is_identifier(column) {
                    problems.push(format!(
                        "`{}` is not a column name (letters, digits and `_` only)",
                        printable(column)
                    ));
                    return;
                }
                match resolve(column) {
                    Ok(property) => {
                        let _ = write!(out, "{property} {} {literal}", op.as_str());
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
            Node::And(a, b) | Node::Or(a, b) => {
                let joiner = if matches!(self.0, Node::And(..)) {
                    " and "
                } else {
                    " or "
                };
                out.push('(');
                a.render_into(out, resolve, problems);
                out.push(')');
                out.push_str(joiner);
                out.push('(');
                b.render_into(out, resolve, problems);
                out.push(')');
            }
            Node::Not(inner) => {
                out.push_str("not (");
                inner.render_into(out, resolve, problems);
                out.push(')');
            }
            Node::Raw(expression) => out.push_str(expression),
        }
    }
}

/// `text` with control characters escaped, for error messages.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Whether `name` is a plain identifier: an ASCII letter or `_`, then letters, digits or `_`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A typed literal on the right-hand side of a comparison.
///
/// Build one from a `&str`/`String` (a text value), `bool`, integers, [`Number`],
/// `DateTime<Utc>` or `NaiveDate` with `From`, or with the constructors; a GUID needs
/// [`FilterValue::guid`], which checks it.
#[derive(Clone, PartialEq)]
pub struct FilterValue(FilterValueKind);

#[derive(Clone, Debug, PartialEq)]
enum FilterValueKind {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Guid(String),
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
}

impl FilterValue {
    /// `null`.
    pub fn null() -> Self {
        Self(FilterValueKind::Null)
    }

    /// A text value, rendered quoted with every `'` doubled.
    pub fn string(value: impl Into<String>) -> Self {
        Self(FilterValueKind::String(value.into()))
    }

    /// A GUID (`00000000-0000-0000-0000-000000000020`, braces allowed), rendered bare.
    ///
    /// Fails with a [`Config`](crate::ErrorKind::Config) error when `value` is not a GUID.
    pub fn guid(value: &str) -> Result<Self> {
        let trimmed = value
            .strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .unwrap_or(value);
        let shape_ok = trimmed.len() == 36
            && trimmed.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
        if shape_ok {
            Ok(Self(FilterValueKind::Guid(trimmed.to_ascii_lowercase())))
        } else {
            Err(Error::config(format!(
                "`{}` is not a GUID (expected 8-4-4-4-12 hexadecimal digits)",
                printable(value)
            )))
        }
    }

    /// A date and time, rendered in UTC (`2024-06-12T14:13:25Z`).
    pub fn date_time_utc(value: DateTime<Utc>) -> Self {
        Self(FilterValueKind::DateTime(value))
    }

    /// Parses an RFC 3339 date and time (any offset; it is converted to UTC).
    ///
    /// Fails with a [`Config`](crate::ErrorKind::Config) error when `value` is not one.
    pub fn date_time(value: &str) -> Result<Self> {
        DateTime::parse_from_rfc3339(value)
            .map(|d| Self::date_time_utc(d.with_timezone(&Utc)))
            .map_err(|e| {
                Error::config(format!(
                    "`{}` is not an RFC 3339 date and time such as 2024-06-12T14:13:25Z ({e})",
                    printable(value)
                ))
            })
    }

    /// A date without a time (for DateOnly columns), rendered `2024-04-10`.
    pub fn date(value: NaiveDate) -> Self {
        Self(FilterValueKind::Date(value))
    }

    /// A number, rendered with exactly its digits.
    pub fn number(value: Number) -> Self {
        Self(FilterValueKind::Number(value))
    }
}

impl fmt::Display for FilterValue {
    /// The literal as OData writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            FilterValueKind::Null => f.write_str("null"),
            FilterValueKind::Bool(b) => write!(f, "{b}"),
            FilterValueKind::Number(n) => f.write_str(n.as_str()),
            FilterValueKind::String(s) => {
                f.write_char('\'')?;
                for part in s.split_inclusive('\'') {
                    f.write_str(part)?;
                    if part.ends_with('\'') {
                        f.write_char('\'')?;
                    }
                }
                f.write_char('\'')
            }
            FilterValueKind::Guid(g) => f.write_str(g),
            FilterValueKind::DateTime(d) => {
                f.write_str(&d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            FilterValueKind::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
        }
    }
}

impl fmt::Debug for FilterValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FilterValue({self})")
    }
}

impl From<&str> for FilterValue {
    fn from(value: &str) -> Self {
        Self::string(value)
    }
}

impl From<String> for FilterValue {
    fn from(value: String) -> Self {
        Self::string(value)
    }
}

impl From<bool> for FilterValue {
    fn from(value: bool) -> Self {
        Self(FilterValueKind::Bool(value))
    }
}

impl From<Number> for FilterValue {
    fn from(value: Number) -> Self {
        Self::number(value)
    }
}

impl From<DateTime<Utc>> for FilterValue {
    fn from(value: DateTime<Utc>) -> Self {
        Self::date_time_utc(value)
    }
}

impl From<NaiveDate> for FilterValue {
    fn from(value: NaiveDate) -> Self {
        Self::date(value)
    }
}

macro_rules! integer_literals {
    ($($t:ty),*) => {$(
        impl From<$t> for FilterValue {
            fn from(value: $t) -> Self {
                Self(FilterValueKind::Number(
                    Number::parse(&value.to_string()).expect("an integer is a JSON number"),
                ))
            }
        }
    )*};
}
integer_literals!(i32, i64, u32, u64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn strings_double_their_quotes() {
        assert_eq!(
            Filter::eq("lastname", "O'Brien").to_odata().unwrap(),
            "lastname eq 'O''Brien'"
        );
        assert_eq!(
            Filter::eq("name", "'; drop' or 1 eq 1 or ''")
                .to_odata()
                .unwrap(),
            "name eq '''; drop'' or 1 eq 1 or '''''"
        );
        assert_eq!(FilterValue::string("").to_string(), "''");
        assert_eq!(FilterValue::string("''").to_string(), "''''''");
    }

    #[test]
    fn typed_literals_render_bare() {
        assert_eq!(
            FilterValue::guid("{00000000-0000-0000-0000-0000000000AB}")
                .unwrap()
                .to_string(),
            "00000000-0000-0000-0000-0000000000ab"
        );
        assert_eq!(
            FilterValue::date_time("2024-06-12T16:13:25+02:00")
                .unwrap()
                .to_string(),
            "2024-06-12T14:13:25Z"
        );
        assert_eq!(
            FilterValue::date(NaiveDate::from_ymd_opt(2024, 4, 10).unwrap()).to_string(),
            "2024-04-10"
        );
        assert_eq!(
            FilterValue::from(Number::parse("922337203685477.5807").unwrap()).to_string(),
            "922337203685477.5807"
        );
        assert_eq!(
            FilterValue::from(9_007_199_254_740_993_i64).to_string(),
            "9007199254740993"
        );
        assert_eq!(FilterValue::from(true).to_string(), "true");
        assert_eq!(FilterValue::null().to_string(), "null");
    }

    #[test]
    fn bad_guids_and_dates_are_refused() {
        for bad in [
            "",
            "not-a-guid",
            "00000000-0000-0000-0000-00000000002",
            "00000000-0000-0000-0000-000000000020' or 1 eq 1",
            "0000000000000-0000-0000-000000000020",
        ] {
            let error = FilterValue::guid(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
        }
        assert!(FilterValue::date_time("2024-06-12 14:13").is_err());
    }

    #[test]
    fn combinators_parenthesise() {
        let filter = Filter::not(Filter::eq("statecode", 0).or(Filter::is_not_null("x")))
            .and(Filter::raw("statecode eq 0"));
        assert_eq!(
            filter.to_odata().unwrap(),
            "(not ((statecode eq 0) or (x ne null))) and (statecode eq 0)"
        );
    }

    #[test]
    fn column_names_cannot_inject() {
        let error = Filter::eq("name eq 'x' or name", "y")
            .and(Filter::eq("ok", 1))
            .and(Filter::gt("a)", 1))
            .to_odata()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        let message = error.to_string();
        assert!(message.contains("`name eq 'x' or name`"), "{message}");
        assert!(message.contains("`a)`"), "{message}");
        assert!(!message.contains("`ok`"), "{message}");
    }
}
