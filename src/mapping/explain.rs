//! The sentences of mapping violations: the id-only rule, type names, suggestions.

use super::plan::Read;
use super::schema::TargetFieldType;
use crate::metadata::{AttributeMetadata, AttributeType};

/// The id-only rule, stated for `name` reaching through `lookup` (or reading its label).
pub(super) fn id_only(name: &str, lookup: &AttributeMetadata, label: bool) -> String {
    let column = lookup.logical_name();
    let tables = match lookup.targets() {
        [] => "the related record".to_owned(),
        [one] => format!("the {one}"),
        many => format!("the {}", many.join(" or ")),
    };
    let opening = if label {
        format!("the label of `{name}` is the name of {tables} that `{column}` points at")
    } else {
        format!("`{name}` reaches a field of {tables} that `{column}` points at")
    };
    match lookup.attribute_type() {
        AttributeType::Customer => format!(
            "{opening}, but a Customer-type lookup maps by its id only; map `{column}` itself to an id field, and sync the account or contact table in its own job to get its fields"
        ),
        _ => format!(
            "{opening}, but lookups map by id only; map `{column}` itself to an id field, and sync that table in its own job to get its fields"
        ),
    }
}

pub(super) fn unsupported(name: &str, attribute: &AttributeMetadata) -> String {
    match attribute.attribute_type() {
        AttributeType::Other(unknown) if unknown == "Unknown" => format!(
            "the type of `{name}` is unknown (the metadata gave neither AttributeType nor a cast); fetch the metadata with EntityMetadata::fetch"
        ),
        other => format!(
            "`{name}` is {} column, which the connector does not sync; leave it out of the mapping",
            with_article(&type_name(other))
        ),
    }
}

pub(super) fn type_name(attribute_type: &AttributeType) -> String {
    match attribute_type {
        AttributeType::Other(name) => name.clone(),
        AttributeType::MultiSelectPicklist => "MultiSelectPicklist".into(),
        other => format!("{other:?}"),
    }
}

pub(super) fn incompatible(
    name: &str,
    attribute: &AttributeMetadata,
    read: Read,
    target: TargetFieldType,
    fits: &[TargetFieldType],
) -> String {
    let what = match read {
        Read::Value => format!(
            "{}{} column",
            with_article(&type_name(attribute.attribute_type())),
            if attribute.is_date_only() {
                " (DateOnly)"
            } else {
                ""
            }
        ),
        Read::Label => "a label".into(),
        Read::LookupTable => "a table name".into(),
    };
    let fits: Vec<&str> = fits.iter().map(|t| t.as_str()).collect();
    format!(
        "`{name}` is {what}, which does not convert to {} field; map it to {} field or choose another column",
        with_article(target.as_str()),
        with_article(&fits.join(" or "))
    )
}

/// `word` with `a` or `an` before it.
pub(super) fn with_article(word: &str) -> String {
    let vowel = word
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    format!("{} {word}", if vowel { "an" } else { "a" })
}

/// ` (did you mean `x`?)` for the names nearest `wanted`, or nothing.
pub(super) fn did_you_mean(wanted: &str, names: &[&str]) -> String {
    let wanted_lower = wanted.to_lowercase();
    let limit = (wanted.chars().count() / 3).max(2);
    let mut near: Vec<(usize, &str)> = names
        .iter()
        .map(|n| (distance(&wanted_lower, &n.to_lowercase()), *n))
        .filter(|(d, _)| *d <= limit)
        .collect();
    near.sort();
    near.truncate(3);
    match near.as_slice() {
        [] => String::new(),
        [(_, one)] => format!(" (did you mean `{one}`?)"),
        many => format!(
            " (did you mean {}?)",
            many.iter()
                .map(|(_, n)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current[j + 1] = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("emailadress1", "emailaddress1"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }

    #[test]
    fn suggestions_are_the_nearest_names() {
        let names = ["emailaddress1", "emailaddress2", "fullname"];
        assert_eq!(
            did_you_mean("emailadress1", &names),
            " (did you mean `emailaddress1`, `emailaddress2`?)"
        );
        assert_eq!(did_you_mean("zzzzzzzz", &names), "");
    }
}
