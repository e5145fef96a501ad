//! What each property key of a row stands for, worked out once per page.

use crate::value::NameMap;

/// What a property of a row stands for; slots are those of the page's column list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Property {
    /// The value of the column at this slot: `<name>`, or `_<name>_value` for a lookup.
    Value(usize),
    /// `<name>` of the lookup at this slot: its navigation property when it holds an object or
    /// null.
    Navigation(usize),
    /// The formatted-value annotation of the column at this slot.
    Formatted(usize),
    /// The lookup-table annotation of the column at this slot.
    LookupTable(usize),
    /// `@odata.context`: a delta page's deleted rows say `$deletedEntity` there.
    Context,
    /// `@odata.etag`: the row's version.
    Etag,
    /// `@removed` or `@odata.removed`: the row was deleted.
    Removed,
    /// `@odata.id`: the row is a reference.
    Reference,
    /// Any other annotation.
    Skipped,
}

/// The property keys a page has sent, each with what it stands for.
///
/// Rows of a page mostly send the same keys in the same order, so the key a row sends at a
/// position is first compared with the one the previous row sent there; only other keys are
/// looked up in the map, and only keys new to the page are worked out.
#[derive(Debug, Default)]
pub(super) struct PropertyKeys {
    known: Vec<(Box<str>, Property)>,
    index: NameMap<Box<str>, usize>,
    /// The `known` entry at each position of the previous rows.
    previous: Vec<usize>,
}

impl PropertyKeys {
    /// What `key`, sent at `position` of a row (from 0), stands for; `work_out` tells it for a
    /// key new to the page.
    pub(super) fn get(
        &mut self,
        position: usize,
        key: &str,
        work_out: impl FnOnce(&str) -> Property,
    ) -> Property {
        if let Some(&entry) = self.previous.get(position) {
            let (previous, property) = &self.known[entry];
            if **previous == *key {
                return *property;
            }
        }
        let entry = match self.index.get(key) {
            Some(&entry) => entry,
            None => self.add(key, work_out(key)),
        };
        match self.previous.get_mut(position) {
            Some(previous) => *previous = entry,
            None => self.previous.push(entry),
        }
        self.known[entry].1
    }

    fn add(&mut self, key: &str, property: Property) -> usize {
        let entry = self.known.len();
        self.known.push((key.into(), property));
        self.index.insert(key.into(), entry);
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_worked_out_once_whatever_their_position() {
        let mut keys = PropertyKeys::default();
        let mut worked_out = Vec::new();
        let mut get = |keys: &mut PropertyKeys, position, key: &str| {
            keys.get(position, key, |key| {
                worked_out.push(key.to_owned());
                Property::Value(key.len())
            })
        };
        for row in [["a", "bb"], ["a", "bb"], ["bb", "a"]] {
            assert_eq!(get(&mut keys, 0, row[0]), Property::Value(row[0].len()));
            assert_eq!(get(&mut keys, 1, row[1]), Property::Value(row[1].len()));
        }
        assert_eq!(get(&mut keys, 2, "ccc"), Property::Value(3));
        assert_eq!(worked_out, ["a", "bb", "ccc"]);
    }
}
