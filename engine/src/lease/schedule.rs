//! A deadline queue: lease ids ordered by an instant on this member's clock.
//!
//! The lessor keeps two of these, both only while it is primary: when each lease expires, and
//! when each long lease is next checkpointed. A lease has at most one entry in each queue; the
//! lease record remembers the instant of its entry, so an entry is found and moved in O(log n)
//! without a search. Ties are broken by lease id, so the order is total and deterministic.

use std::collections::BTreeSet;

use crate::time::Instant;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Schedule {
    entries: BTreeSet<(Instant, i64)>,
}

impl Schedule {
    /// Adds `id` at `at`. An entry already there is a bookkeeping bug: the lease record and the
    /// queue disagree about where the lease is queued.
    pub(crate) fn insert(&mut self, at: Instant, id: i64) {
        let fresh = self.entries.insert((at, id));
        assert!(fresh, "lease {id:#x} is already scheduled at {at:?}");
    }

    /// Removes the entry of `id` at `at`, which must exist (see [`Schedule::insert`]).
    pub(crate) fn remove(&mut self, at: Instant, id: i64) {
        let present = self.entries.remove(&(at, id));
        assert!(present, "lease {id:#x} is not scheduled at {at:?}");
    }

    /// Removes and returns the earliest entry if it is due (`at <= now`).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, i64)> {
        match self.entries.first() {
            Some(&(at, _)) if at <= now => self.entries.pop_first(),
            _ => None,
        }
    }

    /// The earliest instant in the queue.
    pub(crate) fn first_at(&self) -> Option<Instant> {
        self.entries.first().map(|&(at, _)| at)
    }

    pub(crate) fn contains(&self, at: Instant, id: i64) -> bool {
        self.entries.contains(&(at, id))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, earliest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Instant, i64)> + '_ {
        self.entries.iter().copied()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_due_entries_earliest_first_ties_by_id() {
        let mut s = Schedule::default();
        let t = Instant::from_nanos;
        s.insert(t(20), 1);
        s.insert(t(10), 9);
        s.insert(t(10), 3);
        assert_eq!(s.first_at(), Some(t(10)));
        assert_eq!(s.pop_due(t(5)), None);
        assert_eq!(s.pop_due(t(10)), Some((t(10), 3)));
        assert_eq!(s.pop_due(t(10)), Some((t(10), 9)));
        assert_eq!(s.pop_due(t(19)), None);
        assert_eq!(s.len(), 1);
        s.remove(t(20), 1);
        assert_eq!(s.first_at(), None);
    }

    #[test]
    #[should_panic(expected = "already scheduled")]
    fn double_insert_is_a_bug() {
        let mut s = Schedule::default();
        s.insert(Instant::ZERO, 1);
        s.insert(Instant::ZERO, 1);
    }
}
