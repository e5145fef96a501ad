//! Responses: Dataverse error bodies, OData JSON written in Dataverse's property order.

use serde_json::Value as Json;
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

/// A JSON value to write: either a value or a number literal written digit for digit.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    Value(Json),
    Raw(String),
}

impl From<Json> for Out {
    fn from(value: Json) -> Self {
        Out::Value(value)
    }
}

impl From<&str> for Out {
    fn from(value: &str) -> Self {
        Out::Value(Json::String(value.to_owned()))
    }
}

impl From<String> for Out {
    fn from(value: String) -> Self {
        Out::Value(Json::String(value))
    }
}

/// A JSON object whose properties keep the order they were added in.
#[derive(Debug, Default, Clone)]
pub(crate) struct Obj {
    fields: Vec<(String, Out)>,
}

impl Obj {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, value: impl Into<Out>) {
        self.fields.push((key.into(), value.into()));
    }

    pub(crate) fn with(mut self, key: impl Into<String>, value: impl Into<Out>) -> Self {
        self.push(key, value);
        self
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == key)
    }

    /// The object as compact JSON text.
    pub(crate) fn write(&self, out: &mut String) {
        out.push('{');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Json::String(key.clone()).to_string());
            out.push(':');
            match value {
                Out::Value(v) => out.push_str(&v.to_string()),
                Out::Raw(r) => out.push_str(r),
            }
        }
        out.push('}');
    }
}

/// `{"@odata.context": .., "value": [..], <trailer>}` as text.
pub(crate) fn collection(context: &str, items: &[Obj], trailer: &[(&str, String)]) -> String {
    let mut out = String::new();
    out.push_str("{\"@odata.context\":");
    out.push_str(&Json::String(context.to_owned()).to_string());
    out.push_str(",\"value\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item.write(&mut out);
    }
    out.push(']');
    for (key, value) in trailer {
        out.push(',');
        out.push_str(&Json::String((*key).to_owned()).to_string());
        out.push(':');
        out.push_str(&Json::String(value.clone()).to_string());
    }
    out.push('}');
    out
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
