//! The OData queries a read sends: `$select`, `$filter`, `$orderby` and `$count`, each value
//! percent-encoded so that no literal can change the shape of the URL.

/// The query of one request of a read, turned into a Web API path with [`Query::path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Query<'a> {
    /// `$select`: the properties, joined with `,`.
    pub select: &'a str,
    /// `$filter`, when the read is filtered.
    pub filter: Option<&'a str>,
    /// `$orderby`, when the order matters.
    pub order_by: Option<&'a str>,
    /// `$count=true`: asks Dataverse to count the rows the read matches.
    pub count: bool,
}

impl Query<'_> {
    /// The query `$select=..&$filter=..&$orderby=..&$count=true` (absent parts left out).
    pub fn text(&self) -> String {
        let mut query = String::from("$select=");
        encode_query_value(self.select, &mut query);
        if let Some(filter) = self.filter {
            query.push_str("&$filter=");
            encode_query_value(filter, &mut query);
        }
        if let Some(order_by) = self.order_by {
            query.push_str("&$orderby=");
            encode_query_value(order_by, &mut query);
        }
        if self.count {
            query.push_str("&$count=true");
        }
        query
    }

    /// `<entity set>?<query>`, relative to the Web API base.
    pub fn path(&self, entity_set: &str) -> String {
        format!("{entity_set}?{}", self.text())
    }
}

/// Both filters (`(first) and (second)`), or whichever is set.
pub(super) fn all_of(first: Option<String>, second: Option<String>) -> Option<String> {
    match (first, second) {
        (Some(first), Some(second)) => Some(format!("({first}) and ({second})")),
        (first, second) => first.or(second),
    }
}

/// `link` with its `$select` replaced by `select`, first; everything else stays as the server
/// wrote it.
pub(super) fn with_select(link: &str, select: &str) -> String {
    let (base, query) = link.split_once('?').unwrap_or((link, ""));
    let mut encoded = String::from("$select=");
    encode_query_value(select, &mut encoded);
    let mut parts: Vec<&str> = query
        .split('&')
        .filter(|part| !part.is_empty() && !part.starts_with("$select="))
        .collect();
    parts.insert(0, &encoded);
    format!("{base}?{}", parts.join("&"))
}

/// Appends `value` to a URL query, percent-encoding every byte but unreserved characters and
/// a few that are safe and readable in OData (`,`, `(`, `)`, `:`, `/`, `@`, `*`, `!`).
/// A space becomes `%20` (never `+`), and `&`, `#`, `+`, `%`, `=` and `'` are always encoded.
fn encode_query_value(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b',' | b'(' | b')' | b':' | b'/' | b'@' | b'*' | b'!'
            )
        {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding_keeps_every_special_character() {
        let mut out = String::new();
        encode_query_value("a b&c#d+e%f=g'h,(i):j/é", &mut out);
        assert_eq!(out, "a%20b%26c%23d%2Be%25f%3Dg%27h,(i):j/%C3%A9");
        let url = url::Url::parse(&format!("https://x.example/?$filter={out}")).unwrap();
        assert_eq!(url.query(), Some(&*format!("$filter={out}")));
        let (_, decoded) = url.query_pairs().next().unwrap();
        assert_eq!(decoded, "a b&c#d+e%f=g'h,(i):j/é");
    }

    #[test]
    fn a_query_lists_only_its_parts_in_order() {
        let bare = Query {
            select: "accountid",
            filter: None,
            order_by: None,
            count: false,
        };
        assert_eq!(bare.path("accounts"), "accounts?$select=accountid");
        let full = Query {
            select: "accountid,name",
            filter: Some("name eq 'a&b'"),
            order_by: Some("modifiedon asc,accountid asc"),
            count: true,
        };
        assert_eq!(
            full.text(),
            "$select=accountid,name&$filter=name%20eq%20%27a%26b%27&$orderby=modifiedon%20asc,accountid%20asc&$count=true"
        );
    }

    #[test]
    fn filters_combine_in_order() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(all_of(some("a"), some("b")), some("(a) and (b)"));
        assert_eq!(all_of(some("a"), None), some("a"));
        assert_eq!(all_of(None, some("b")), some("b"));
        assert_eq!(all_of(None, None), None);
    }

    #[test]
    fn a_link_gets_another_select_and_keeps_the_rest() {
        assert_eq!(
            with_select(
                "https://x.example/api/data/v9.2/accounts?$select=accountid&$deltatoken=9%2110",
                "accountid,name"
            ),
            "https://x.example/api/data/v9.2/accounts?$select=accountid,name&$deltatoken=9%2110"
        );
    }
}
