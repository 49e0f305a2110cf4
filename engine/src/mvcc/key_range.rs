use std::collections::BTreeMap;
use std::ops::Bound;

/// The keys a request names by `key` and `range_end`, with etcd's encoding:
///
/// | `range_end`            | keys                          |
/// |------------------------|-------------------------------|
/// | empty                  | exactly `key`                 |
/// | `"\0"`                 | every key ≥ `key` (from-key)  |
/// | anything else          | `[key, range_end)`; empty if `key >= range_end` |
///
/// So `key = range_end = "\0"` means every key, and `range_end` = `key` with its last byte
/// incremented means every key with the prefix `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRange<'a> {
    Single(&'a [u8]),
    /// `[start, end)`; `end == None` means unbounded.
    Span {
        start: &'a [u8],
        end: Option<&'a [u8]>,
    },
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::Span { start: key, end: None },
            end => KeyRange::Span { start: key, end: Some(end) },
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => k == key,
            KeyRange::Span { start, end } => k >= start && end.is_none_or(|end| k < end),
        }
    }

    /// The entries of `map` whose keys are in this range, in key order.
    ///
    /// (`BTreeMap::range` panics on an inverted interval; an inverted span is simply empty.)
    pub fn iter<'m, K, V>(&self, map: &'m BTreeMap<K, V>) -> Box<dyn Iterator<Item = (&'m K, &'m V)> + 'm>
    where
        K: std::borrow::Borrow<[u8]> + Ord,
    {
        match *self {
            KeyRange::Single(key) => Box::new(map.get_key_value(key).into_iter()),
            KeyRange::Span { start, end: Some(end) } if start >= end => Box::new(std::iter::empty()),
            KeyRange::Span { start, end } => {
                let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                Box::new(map.range::<[u8], _>((Bound::Included(start), upper)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert!(KeyRange::new(b"a", b"").contains(b"a"));
        assert!(!KeyRange::new(b"a", b"").contains(b"ab"));
        let from_key = KeyRange::new(b"b", b"\0");
        assert!(from_key.contains(b"b") && from_key.contains(b"zzz") && !from_key.contains(b"a"));
        let all = KeyRange::new(b"\0", b"\0");
        assert!(all.contains(b"\0") && all.contains(b"\xff\xff"));
        let prefix = KeyRange::new(b"ab", b"ac");
        assert!(prefix.contains(b"ab") && prefix.contains(b"ab\xff") && !prefix.contains(b"ac"));
        let inverted = KeyRange::new(b"z", b"a");
        assert!(!inverted.contains(b"z") && !inverted.contains(b"m"));
        let map: BTreeMap<Vec<u8>, ()> = [(b"m".to_vec(), ())].into_iter().collect();
        assert_eq!(inverted.iter(&map).count(), 0);
        assert_eq!(all.iter(&map).count(), 1);
    }
}
