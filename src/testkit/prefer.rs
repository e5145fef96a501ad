//! The `Prefer` header of a record query: page size, annotations, change tracking.

/// Dataverse's default and largest page size.
pub(crate) const MAX_PAGE_SIZE: usize = 5000;

/// The annotation carrying a value's formatted text.
pub(crate) const FORMATTED: &str = "OData.Community.Display.V1.FormattedValue";
/// The annotation carrying the table a lookup points at.
pub(crate) const LOOKUP_NAME: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";
/// The annotation carrying a lookup's navigation property.
pub(crate) const NAV_PROPERTY: &str = "Microsoft.Dynamics.CRM.associatednavigationproperty";

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
        for part in values.iter().flat_map(|value| split_outside_quotes(value)) {
            prefs.apply(part.trim());
        }
        prefs
    }

    /// Takes in one preference (`odata.maxpagesize=10`); unknown ones are ignored.
    fn apply(&mut self, preference: &str) {
        let (name, arg) = match preference.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (preference, None),
        };
        match (name.to_ascii_lowercase().as_str(), arg) {
            ("odata.maxpagesize", Some(n)) => self.max_page_size = n.parse().ok(),
            ("odata.include-annotations", Some(a)) => self.annotations = Some(a.to_owned()),
            ("odata.track-changes", _) => self.track_changes = true,
            _ => {}
        }
    }

    /// The page size in effect.
    pub(crate) fn page_size(&self) -> usize {
        self.max_page_size
            .filter(|n| *n > 0)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE)
    }

    /// Whether the annotation `term` was asked for (`*`, `Namespace.*`, or the exact term).
    pub(crate) fn wants(&self, term: &str) -> bool {
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
    pub(crate) fn applied(&self, tracking: bool) -> String {
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

/// `value` split at the commas outside double quotes.
fn split_outside_quotes(value: &str) -> Vec<String> {
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
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

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
