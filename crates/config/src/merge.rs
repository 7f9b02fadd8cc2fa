//! Step 3: files are merged in order. Mappings are deep-merged, later files
//! win; sequences and scalars are replaced wholesale (figment's behaviour,
//! which MAS uses). The merge also remembers which source each value came from
//! so that later errors can name the file.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use crate::path;

/// Which source (index into the list of sources) set each key path.
#[derive(Debug, Default)]
pub(crate) struct Provenance(BTreeMap<String, usize>);

impl Provenance {
    /// The source of `at`, or of its closest ancestor that has one.
    pub(crate) fn source_of(&self, at: &str) -> Option<usize> {
        let mut current = at;
        loop {
            if let Some(&idx) = self.0.get(current) {
                return Some(idx);
            }
            if current.is_empty() {
                return None;
            }
            current = match current.rfind(['.', '[']) {
                Some(pos) => &current[..pos],
                None => "",
            };
        }
    }

    fn forget_under(&mut self, at: &str) {
        let doomed: Vec<String> = self
            .0
            .range(at.to_owned()..)
            .take_while(|(k, _)| k.starts_with(at))
            .filter(|(k, _)| {
                k.len() == at.len() || matches!(k.as_bytes().get(at.len()), Some(b'.' | b'['))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.0.remove(&k);
        }
    }

    fn record_all(&mut self, value: &Value, at: &str, idx: usize) {
        self.0.insert(at.to_owned(), idx);
        match value {
            Value::Mapping(map) => {
                for (k, v) in map {
                    self.record_all(v, &path::key(at, &path::key_name(k)), idx);
                }
            }
            Value::Sequence(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.record_all(v, &path::index(at, i), idx);
                }
            }
            _ => {}
        }
    }
}

/// Merges `src` (from source `idx`) into `dst`.
pub(crate) fn merge_into(dst: &mut Mapping, src: Mapping, idx: usize, prov: &mut Provenance) {
    prov.0.entry(String::new()).or_insert(idx);
    merge_mapping(dst, src, "", idx, prov);
}

fn merge_mapping(dst: &mut Mapping, src: Mapping, at: &str, idx: usize, prov: &mut Provenance) {
    for (k, v) in src {
        let here = path::key(at, &path::key_name(&k));
        match (dst.get_mut(&k), v) {
            (Some(Value::Mapping(existing)), Value::Mapping(incoming)) => {
                prov.0.entry(here.clone()).or_insert(idx);
                merge_mapping(existing, incoming, &here, idx, prov);
            }
            (_, v) => {
                prov.forget_under(&here);
                prov.record_all(&v, &here, idx);
                dst.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(s: &str) -> Mapping {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn deep_merge_and_replace() {
        let mut dst = Mapping::new();
        let mut prov = Provenance::default();
        merge_into(
            &mut dst,
            map("a: {x: 1, y: 2}\nl: [1, 2, 3]\ns: one"),
            0,
            &mut prov,
        );
        merge_into(
            &mut dst,
            map("a: {y: 3, z: 4}\nl: [9]\ns: two"),
            1,
            &mut prov,
        );
        let expected = map("a: {x: 1, y: 3, z: 4}\nl: [9]\ns: two");
        assert_eq!(dst, expected);
        assert_eq!(prov.source_of("a.x"), Some(0));
        assert_eq!(prov.source_of("a.y"), Some(1));
        assert_eq!(prov.source_of("l[0]"), Some(1));
        assert_eq!(prov.source_of("l[2]"), Some(1), "old items are forgotten");
        assert_eq!(prov.source_of("nowhere.deep"), Some(0));
    }
}
