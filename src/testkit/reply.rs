//! Responses: Dataverse error bodies, OData JSON written in Dataverse's property order.

use serde_json::Value as Json;
use std::fmt::Write as _;
use wiremock::ResponseTemplate;

/// The content type Dataverse answers JSON with.
pub(crate) const ODATA_JSON: &str = "application/json; odata.metadata=minimal";

/// A response about to be sent.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    /// `200 OK` with an OData JSON body.
    pub(crate) fn ok(body: String) -> Self {
        Self::json(200, body)
    }

    pub(crate) fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: ODATA_JSON,
            headers: Vec::new(),
            body,
        }
    }

    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub(crate) fn into_template(self) -> ResponseTemplate {
        let mut template = ResponseTemplate::new(self.status);
        for (name, value) in self.headers {
            template = template.append_header(name.as_str(), value.as_str());
        }
        if self.body.is_empty() {
            template
        } else {
            template.set_body_raw(self.body.into_bytes(), self.content_type)
        }
    }
}

/// A Web API error: `{"error":{"code":"0x...","message":"..."}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub(crate) fn into_reply(self) -> Reply {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        Reply::json(self.status, body.to_string())
    }
}

/// A JSON object whose properties keep the order they were added in.
#[derive(Debug, Default, Clone)]
pub(crate) struct Obj {
    fields: Vec<(String, Json)>,
}

impl Obj {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, value: impl Into<Json>) {
        self.fields.push((key.into(), value.into()));
    }

    pub(crate) fn with(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.push(key, value);
        self
    }

    /// The object as compact JSON text.
    pub(crate) fn write(&self, out: &mut String) {
        out.push('{');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_key(out, key);
            push_json(out, value);
        }
        out.push('}');
    }
}

/// `{"@odata.context": .., "value": [..], <trailer>}` as text, each item written by
/// `write_item`.
pub(crate) fn collection<T>(
    context: &str,
    items: impl ExactSizeIterator<Item = T>,
    mut write_item: impl FnMut(T, &mut String),
    trailer: &[(&str, String)],
) -> String {
    let mut out = String::new();
    out.push_str("{\"@odata.context\":");
    push_json_str(&mut out, context);
    out.push_str(",\"value\":[");
    let count = items.len();
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let start = out.len();
        write_item(item, &mut out);
        if i == 0 {
            // The items are alike: size the text for all of them once, with some room.
            out.reserve((out.len() - start + 1) * count * 9 / 8);
        }
    }
    out.push(']');
    for (key, value) in trailer {
        out.push(',');
        push_key(&mut out, key);
        push_json_str(&mut out, value);
    }
    out.push('}');
    out
}

/// Appends `"key":`.
pub(crate) fn push_key(out: &mut String, key: &str) {
    push_json_str(out, key);
    out.push(':');
}

/// Appends `value` as compact JSON, exactly as `serde_json` writes it.
pub(crate) fn push_json(out: &mut String, value: &Json) {
    match value {
        Json::String(text) => push_json_str(out, text),
        Json::Null => out.push_str("null"),
        other => match other.as_u64() {
            Some(n) => push_decimal(out, n),
            None => write!(out, "{other}").expect("writing to a String cannot fail"),
        },
    }
}

/// Appends `n` in decimal (without `fmt`'s machinery, which shows in a page of 5000 rows).
pub(crate) fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// Appends `text` as a JSON string, escaped exactly as `serde_json` escapes it: `"`, `\` and
/// control characters, nothing else.
pub(crate) fn push_json_str(out: &mut String, text: &str) {
    let needs_escape = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    out.push('"');
    let mut rest = text;
    while let Some(at) = rest.bytes().position(needs_escape) {
        // An ASCII byte always ends a character: the slices are whole characters.
        out.push_str(&rest[..at]);
        push_escape(out, rest.as_bytes()[at]);
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Appends the JSON escape of `byte` (a quote, a backslash or a control character).
fn push_escape(out: &mut String, byte: u8) {
    let short = match byte {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        0x08 => "\\b",
        0x0c => "\\f",
        _ => "",
    };
    if short.is_empty() {
        write!(out, "\\u{byte:04x}").expect("writing to a String cannot fail");
    } else {
        out.push_str(short);
    }
}

/// Percent-encodes everything but ASCII letters and digits, in lowercase hex
/// (`!` -> `%21`, `/` -> `%2f`), as Dataverse writes delta tokens.
pub(crate) fn encode_lower(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Percent-encodes what a query value may not contain (`<`, `"`, space, `%`, `&`, ...), in
/// uppercase hex, as Dataverse writes `$skiptoken`.
pub(crate) fn encode_query_value(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'=' | b'/' | b':')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (no `+` handling).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("é € 😀 \u{2028} tail");
        for sample in [text.as_str(), "", "plain", "\"", "a\\b"] {
            let mut out = String::new();
            push_json_str(&mut out, sample);
            assert_eq!(out, Json::String(sample.to_owned()).to_string());
        }
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let value = serde_json::json!([null, true, -12, 0, 18446744073709551615u64, 1.5e300, "x\ny", {"k": [1]}]);
        for item in value.as_array().unwrap().iter().chain([&value]) {
            let mut out = String::new();
            push_json(&mut out, item);
            assert_eq!(out, item.to_string());
        }
    }
}
