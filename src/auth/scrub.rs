//! Removing secrets a server echoes back (in an error description) before the text reaches an
//! [`Error`](crate::Error): the secret as sent, URL-encoded and JSON-escaped.

/// Secrets shorter than this are not scrubbed: replacing two letters would garble every
/// message and protect nothing.
const MIN_LEN: usize = 4;

/// The secrets sent with one request, in every form an answer may echo them.
#[derive(Default)]
pub(crate) struct Scrubber {
    forms: Vec<String>,
}

impl Scrubber {
    /// Remembers `secret` (raw, URL-encoded and JSON-escaped).
    pub(crate) fn add(&mut self, secret: &str) {
        if secret.len() < MIN_LEN {
            return;
        }
        for form in encodings(secret) {
            if !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
        // Longest first, so an encoded form is not half-replaced through a shorter one.
        self.forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    }

    /// `text` with every remembered form replaced by `[redacted]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.forms.iter().fold(text.to_owned(), |acc, form| {
            acc.replace(form.as_str(), "[redacted]")
        })
    }
}

/// The forms of `secret` an answer may carry: as sent; form-URL-encoded (`~` as `%7E`, space as
/// `+`), with lower-case hex, and with `%20`; JSON-escaped as serde does, with `\/`, and with
/// the `\u00XX` escapes of .NET's default encoder.
fn encodings(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned();
    vec![
        secret.to_owned(),
        lower_hex(&form),
        form.replace('+', "%20"),
        form,
        json.replace('/', "\\/"),
        json,
        dotnet_json(secret, false),
        dotnet_json(secret, true),
    ]
}

/// `%7E` written `%7e`.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// JSON escaping as System.Text.Json does by default: HTML-sensitive characters, the quote,
/// the backslash, controls and non-ASCII as `\uXXXX` (upper-case hex unless `lower`).
fn dotnet_json(secret: &str, lower: bool) -> String {
    let mut out = String::with_capacity(secret.len());
    for unit in secret.encode_utf16() {
        let plain = unit < 0x80
            && !matches!(
                unit as u8,
                b'<' | b'>' | b'&' | b'\'' | b'"' | b'+' | b'`' | b'\\'
            )
            && unit >= 0x20;
        if plain {
            out.push(unit as u8 as char);
        } else if lower {
            out.push_str(&format!("\\u{unit:04x}"));
        } else {
            out.push_str(&format!("\\u{unit:04X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber(secrets: &[&str]) -> Scrubber {
        let mut scrubber = Scrubber::default();
        for secret in secrets {
            scrubber.add(secret);
        }
        scrubber
    }

    #[test]
    fn removes_raw_url_encoded_and_json_escaped_echoes() {
        let s = scrubber(&["ab~c+d/e\"f"]);
        for echo in [
            "ab~c+d/e\"f",
            "ab%7Ec%2Bd%2Fe%22f",
            "ab%7ec%2bd%2fe%22f",
            "ab~c+d/e\\\"f",
            "ab~c+d\\/e\\\"f",
            "ab~c\\u002Bd/e\\u0022f",
            "ab~c\\u002bd/e\\u0022f",
        ] {
            assert_eq!(
                s.scrub(&format!("bad secret {echo}.")),
                "bad secret [redacted].",
                "{echo}"
            );
        }
    }

    #[test]
    fn a_space_is_scrubbed_as_plus_and_as_percent_20() {
        let s = scrubber(&["two words"]);
        assert_eq!(s.scrub("x two+words y"), "x [redacted] y");
        assert_eq!(s.scrub("x two%20words y"), "x [redacted] y");
    }

    #[test]
    fn very_short_values_are_left_alone() {
        assert_eq!(scrubber(&["ab"]).scrub("abc"), "abc");
    }
}
