//! `$filter` and `$orderby`: the subset a sync sends, parsed strictly and evaluated on rows.

use super::guid::SqlGuid;
use super::reply::ApiError;
use super::state::{AttributeDef, EntityDef, Row};
use crate::metadata::AttributeType;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value as Json;
use std::cmp::Ordering;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn kind(self) -> &'static str {
        match self {
            Op::Eq => "Equal",
            Op::Ne => "NotEqual",
            Op::Gt => "GreaterThan",
            Op::Ge => "GreaterThanOrEqual",
            Op::Lt => "LessThan",
            Op::Le => "LessThanOrEqual",
        }
    }
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Str(String),
    Guid(SqlGuid),
    Int(i64),
    Dec(String),
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
}

impl Lit {
    fn edm(&self) -> &'static str {
        match self {
            Lit::Null => "null",
            Lit::Bool(_) => "Edm.Boolean",
            Lit::Str(_) => "Edm.String",
            Lit::Guid(_) => "Edm.Guid",
            Lit::Int(i) if i32::try_from(*i).is_ok() => "Edm.Int32",
            Lit::Int(_) => "Edm.Int64",
            Lit::Dec(_) => "Edm.Decimal",
            Lit::DateTime(_) => "Edm.DateTimeOffset",
            Lit::Date(_) => "Edm.Date",
        }
    }
}

/// A parsed `$filter`.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp {
        property: String,
        op: Op,
        lit: Lit,
    },
    /// A comparison of the primary id with an id, decided on the row's parsed key.
    IdCmp {
        op: Op,
        key: SqlGuid,
    },
    Func {
        name: String,
        property: String,
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Comma,
    Str(String),
    Word(String),
}

/// The EDM type a column's values have in the Web API.
pub(crate) fn edm_type(attr: &AttributeDef) -> &'static str {
    match attr.attribute_type {
        AttributeType::String | AttributeType::Memo | AttributeType::EntityName => "Edm.String",
        AttributeType::Integer
        | AttributeType::Picklist
        | AttributeType::State
        | AttributeType::Status => "Edm.Int32",
        AttributeType::BigInt => "Edm.Int64",
        AttributeType::Money | AttributeType::Decimal => "Edm.Decimal",
        AttributeType::Double => "Edm.Double",
        AttributeType::Boolean => "Edm.Boolean",
        AttributeType::DateTime if attr.date_only => "Edm.Date",
        AttributeType::DateTime => "Edm.DateTimeOffset",
        AttributeType::Uniqueidentifier
        | AttributeType::Lookup
        | AttributeType::Customer
        | AttributeType::Owner => "Edm.Guid",
        _ => "Edm.String",
    }
}

fn family(edm: &str) -> &str {
    match edm {
        "Edm.Int32" | "Edm.Int64" | "Edm.Decimal" | "Edm.Double" => "number",
        "Edm.Date" | "Edm.DateTimeOffset" => "date",
        other => other,
    }
}

/// The error Dataverse gives for a property that does not exist.
pub(crate) fn no_property(def: &EntityDef, name: &str) -> ApiError {
    ApiError::bad_request(
        "0x80060888",
        format!(
            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{}'.",
            def.logical_name
        ),
    )
}

fn syntax(position: usize, text: &str, what: &str) -> ApiError {
    ApiError::bad_request(
        "0x80060888",
        format!("Syntax error: {what} at position {position} in '{text}'."),
    )
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, ApiError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let tok = match chars[i] {
            ' ' | '\t' => None,
            '(' => Some(Tok::Open),
            ')' => Some(Tok::Close),
            ',' => Some(Tok::Comma),
            '\'' => {
                let (literal, end) = string_literal(&chars, start, text)?;
                i = end - 1;
                Some(Tok::Str(literal))
            }
            c if is_word_char(c) => {
                let end = (start..chars.len())
                    .find(|&j| !is_word_char(chars[j]))
                    .unwrap_or(chars.len());
                i = end - 1;
                Some(Tok::Word(chars[start..end].iter().collect()))
            }
            other => {
                return Err(syntax(
                    i,
                    text,
                    &format!("character '{other}' is not valid"),
                ));
            }
        };
        out.extend(tok.map(|tok| (start, tok)));
        i += 1;
    }
    Ok(out)
}

/// A character of a word: a name, keyword, number, GUID or date.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+')
}

/// The text of the string literal opening at `start` (`''` stands for `'`), and the position
/// after its closing quote.
fn string_literal(chars: &[char], start: usize, text: &str) -> Result<(String, usize), ApiError> {
    let mut literal = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err(syntax(start, text, "unterminated string literal")),
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                literal.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((literal, i + 1)),
            Some(ch) => {
                literal.push(*ch);
                i += 1;
            }
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|(p, _)| *p)
            .unwrap_or(self.text.len())
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w == word)
    }

    fn or(&mut self) -> Result<Expr, ApiError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ApiError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ApiError> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ApiError> {
        let at = self.at();
        if self.next().as_ref() == Some(&tok) {
            Ok(())
        } else {
            Err(syntax(at, self.text, &format!("{what} expected")))
        }
    }

    fn identifier(&mut self) -> Result<String, ApiError> {
        let at = self.at();
        match self.next() {
            Some(Tok::Word(w))
                if w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Ok(w)
            }
            _ => Err(syntax(at, self.text, "property name expected")),
        }
    }

    fn primary(&mut self) -> Result<Expr, ApiError> {
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Tok::Close, "')'")?;
            return Ok(inner);
        }
        let name = self.identifier()?;
        if self.peek() == Some(&Tok::Open) {
            return self.function(name);
        }
        let op = self.operator(&name)?;
        let lit = self.operand()?;
        Ok(Expr::Cmp {
            property: name,
            op,
            lit,
        })
    }

    /// `(property,'text')` after the function `name` (`contains`, `startswith`, `endswith`).
    fn function(&mut self, name: String) -> Result<Expr, ApiError> {
        if !matches!(name.as_str(), "contains" | "startswith" | "endswith") {
            return Err(ApiError::bad_request(
                "0x80060888",
                format!("An unknown function with name '{name}' was found."),
            ));
        }
        self.pos += 1;
        let property = self.identifier()?;
        self.expect(Tok::Comma, "','")?;
        let at = self.at();
        let Some(Tok::Str(text)) = self.next() else {
            return Err(syntax(at, self.text, "string literal expected"));
        };
        self.expect(Tok::Close, "')'")?;
        Ok(Expr::Func {
            name,
            property,
            text,
        })
    }

    /// The comparison operator after the property `name`.
    fn operator(&mut self, name: &str) -> Result<Op, ApiError> {
        let at = self.at();
        let op = match self.next() {
            Some(Tok::Word(w)) => match w.as_str() {
                "eq" => Some(Op::Eq),
                "ne" => Some(Op::Ne),
                "gt" => Some(Op::Gt),
                "ge" => Some(Op::Ge),
                "lt" => Some(Op::Lt),
                "le" => Some(Op::Le),
                _ => None,
            },
            _ => None,
        };
        op.ok_or_else(|| syntax(at, self.text, &format!("operator expected after '{name}'")))
    }

    /// The literal on the right of a comparison.
    fn operand(&mut self) -> Result<Lit, ApiError> {
        let at = self.at();
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Word(w)) => literal(&w)
                .ok_or_else(|| syntax(at, self.text, &format!("'{w}' is not a valid literal"))),
            _ => Err(syntax(at, self.text, "literal expected")),
        }
    }
}

/// Classifies a bare literal.
fn literal(word: &str) -> Option<Lit> {
    match word {
        "null" => return Some(Lit::Null),
        "true" => return Some(Lit::Bool(true)),
        "false" => return Some(Lit::Bool(false)),
        _ => {}
    }
    if let Some(guid) = SqlGuid::parse(word) {
        return Some(Lit::Guid(guid));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(word) {
        return Some(Lit::DateTime(dt.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(word, "%Y-%m-%d") {
        if word.len() == 10 {
            return Some(Lit::Date(d));
        }
    }
    if let Ok(i) = word.parse::<i64>() {
        return Some(Lit::Int(i));
    }
    let unsigned = word.strip_prefix('-').unwrap_or(word);
    let mut parts = unsigned.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    if !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(Lit::Dec(word.to_owned()));
    }
    None
}

/// Parses `$filter` and checks every property and operand type against the table.
pub(crate) fn parse_filter(text: &str, def: &EntityDef) -> Result<Expr, ApiError> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err(syntax(0, text, "expression expected"));
    }
    let mut parser = Parser { text, toks, pos: 0 };
    let expr = parser.or()?;
    if parser.pos < parser.toks.len() {
        return Err(syntax(parser.at(), text, "unexpected token"));
    }
    check(&expr, def)?;
    Ok(with_id_keys(expr, &def.primary_id))
}

/// `expr` with every comparison of the primary id against an id turned into an [`Expr::IdCmp`].
fn with_id_keys(expr: Expr, primary: &str) -> Expr {
    let inner = |e: Box<Expr>| Box::new(with_id_keys(*e, primary));
    match expr {
        Expr::And(a, b) => Expr::And(inner(a), inner(b)),
        Expr::Or(a, b) => Expr::Or(inner(a), inner(b)),
        Expr::Not(a) => Expr::Not(inner(a)),
        Expr::Cmp {
            property,
            op,
            lit: Lit::Guid(key),
        } if property == primary => Expr::IdCmp { op, key },
        other => other,
    }
}

fn check(expr: &Expr, def: &EntityDef) -> Result<(), ApiError> {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check(a, def)?;
            check(b, def)
        }
        Expr::Not(a) => check(a, def),
        Expr::Cmp { property, op, lit } => {
            let attr = def
                .property(property)
                .ok_or_else(|| no_property(def, property))?;
            let column = edm_type(attr);
            if *lit != Lit::Null && family(column) != family(lit.edm()) {
                return Err(ApiError::bad_request(
                    "0x80060888",
                    format!(
                        "A binary operator with incompatible types was detected. Found operand types '{column}' and '{}' for operator kind '{}'.",
                        lit.edm(),
                        op.kind()
                    ),
                ));
            }
            Ok(())
        }
        Expr::Func { name, property, .. } => {
            let attr = def
                .property(property)
                .ok_or_else(|| no_property(def, property))?;
            if edm_type(attr) != "Edm.String" {
                return Err(ApiError::bad_request(
                    "0x80060888",
                    format!(
                        "No function signature for the function with name '{name}' matches the specified arguments. The function signatures considered are: {name}(Edm.String Nullable=true, Edm.String Nullable=true)."
                    ),
                ));
            }
            Ok(())
        }
        // Made from a checked comparison, after the check.
        Expr::IdCmp { .. } => Ok(()),
    }
}

/// Whether `row` satisfies `expr`. Comparisons with a null column are false except
/// `eq null` / `ne <value>` (SQL semantics); text compares case-insensitively.
pub(crate) fn matches(expr: &Expr, row: &Row) -> bool {
    match expr {
        Expr::And(a, b) => matches(a, row) && matches(b, row),
        Expr::Or(a, b) => matches(a, row) || matches(b, row),
        Expr::Not(a) => !matches(a, row),
        Expr::Func {
            name,
            property,
            text,
        } => {
            let Some(Json::String(value)) = row.fields.get(property) else {
                return false;
            };
            let (value, text) = (value.to_lowercase(), text.to_lowercase());
            match name.as_str() {
                "contains" => value.contains(&text),
                "startswith" => value.starts_with(&text),
                _ => value.ends_with(&text),
            }
        }
        Expr::Cmp { property, op, lit } => {
            let cell = row.fields.get(property).unwrap_or(&Json::Null);
            match (cell.is_null(), lit == &Lit::Null) {
                (true, true) => return *op == Op::Eq,
                (false, true) => return *op == Op::Ne,
                (true, false) => return false,
                (false, false) => {}
            }
            match compare_lit(cell, lit) {
                Some(ordering) => op.holds(ordering),
                None => *op == Op::Ne,
            }
        }
        Expr::IdCmp { op, key } => row.key.is_some_and(|id| op.holds(id.cmp(key))),
    }
}

impl Op {
    /// Whether a comparison that came out `ordering` satisfies the operator.
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
        }
    }
}

fn number(cell: &Json) -> Option<f64> {
    match cell {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn instant(cell: &Json) -> Option<DateTime<Utc>> {
    let text = cell.as_str()?;
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

fn compare_lit(cell: &Json, lit: &Lit) -> Option<Ordering> {
    match lit {
        Lit::Null => None,
        Lit::Bool(b) => cell.as_bool().map(|c| c.cmp(b)),
        Lit::Str(s) => cell
            .as_str()
            .map(|c| c.to_lowercase().cmp(&s.to_lowercase())),
        Lit::Guid(g) => cell.as_str().and_then(SqlGuid::parse).map(|c| c.cmp(g)),
        Lit::Int(i) => number(cell)?.partial_cmp(&(*i as f64)),
        Lit::Dec(d) => number(cell)?.partial_cmp(&d.parse::<f64>().ok()?),
        Lit::DateTime(t) => Some(instant(cell)?.cmp(t)),
        Lit::Date(d) => Some(instant(cell)?.cmp(&d.and_hms_opt(0, 0, 0)?.and_utc())),
    }
}

/// A cell's place in `$orderby` order: nulls first, then by value (GUIDs in SQL Server order,
/// text case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SortKey {
    Null,
    Number(Option<TotalF64>),
    Instant(Option<DateTime<Utc>>),
    Bool(Option<bool>),
    Guid(Option<SqlGuid>),
    Text(Option<String>),
}

/// An `f64` ordered by [`f64::total_cmp`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TotalF64(f64);

impl PartialEq for TotalF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for TotalF64 {}

impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The sort key of `cell`, a value of column `attr`.
pub(crate) fn sort_key(cell: &Json, attr: &AttributeDef) -> SortKey {
    if cell.is_null() {
        return SortKey::Null;
    }
    match family(edm_type(attr)) {
        "number" => SortKey::Number(number(cell).map(TotalF64)),
        "date" => SortKey::Instant(instant(cell)),
        "Edm.Boolean" => SortKey::Bool(cell.as_bool()),
        "Edm.Guid" => SortKey::Guid(cell.as_str().and_then(SqlGuid::parse)),
        _ => SortKey::Text(cell.as_str().map(str::to_lowercase)),
    }
}

/// A parsed `$orderby`: properties with `true` for descending.
pub(crate) fn parse_orderby(text: &str, def: &EntityDef) -> Result<Vec<(String, bool)>, ApiError> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let mut words = item.split_whitespace();
        let Some(property) = words.next() else {
            return Err(syntax(0, text, "property name expected in $orderby"));
        };
        def.property(property)
            .ok_or_else(|| no_property(def, property))?;
        let descending = match words.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(syntax(0, text, &format!("'{other}' is not asc or desc")));
            }
        };
        if words.next().is_some() {
            return Err(syntax(0, text, "unexpected token in $orderby"));
        }
        out.push((property.to_owned(), descending));
    }
    Ok(out)
}
