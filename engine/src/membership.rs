//! The member list: ids, names, URLs and learner flags, replicated through raft.
//!
//! raft-rs tracks who votes; this tracks who the members *are*. It changes only when a conf
//! change entry (add, add learner, promote, remove) or a member-update entry is applied, so it
//! is identical on every member at every applied index, and it travels in state images.

use std::collections::{BTreeMap, BTreeSet};

use detcd_proto::etcdserverpb::Member;

use crate::Error;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    members: BTreeMap<u64, Member>,
    /// Ids of members removed from the cluster: never members again (etcd keeps them too, so
    /// that messages from a removed member are refused and it learns to stop).
    removed: BTreeSet<u64>,
}

impl Membership {
    /// The founding members; those without details get an entry with only their id.
    pub fn founding(voters: &[u64], details: &[Member]) -> Membership {
        let mut members = BTreeMap::new();
        for &id in voters {
            let member = details.iter().find(|m| m.id == id).cloned().unwrap_or(Member { id, ..Default::default() });
            members.insert(id, Member { is_learner: false, ..member });
        }
        Membership { members, removed: BTreeSet::new() }
    }

    pub fn from_list(list: Vec<Member>, removed: Vec<u64>) -> Membership {
        Membership { members: list.into_iter().map(|m| (m.id, m)).collect(), removed: removed.into_iter().collect() }
    }

    /// Whether `id` was a member and was removed.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    /// The ids of removed members, ascending.
    pub fn removed_ids(&self) -> Vec<u64> {
        self.removed.iter().copied().collect()
    }

    /// All members, by id.
    pub fn list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    /// Whether the list is `members`, in id order.
    pub fn is(&self, members: &[Member]) -> bool {
        self.members.values().eq(members.iter())
    }

    pub fn get(&self, id: u64) -> Option<&Member> {
        self.members.get(&id)
    }

    pub fn learners(&self) -> usize {
        self.members.values().filter(|m| m.is_learner).count()
    }

    /// etcd's checks before proposing an addition.
    pub fn check_add(&self, peer_urls: &[String], is_learner: bool, max_learners: usize) -> Result<(), Error> {
        if peer_urls.is_empty() || peer_urls.iter().any(|u| !valid_url(u)) {
            return Err(Error::MemberBadUrls);
        }
        if self.members.values().any(|m| m.peer_ur_ls.iter().any(|u| peer_urls.contains(u))) {
            return Err(Error::PeerUrlExists);
        }
        if is_learner && self.learners() >= max_learners {
            return Err(Error::TooManyLearners);
        }
        Ok(())
    }

    pub fn check_update(&self, id: u64, peer_urls: &[String]) -> Result<(), Error> {
        if !self.members.contains_key(&id) {
            return Err(Error::MemberNotFound);
        }
        if peer_urls.is_empty() || peer_urls.iter().any(|u| !valid_url(u)) {
            return Err(Error::MemberBadUrls);
        }
        if self.members.values().any(|m| m.id != id && m.peer_ur_ls.iter().any(|u| peer_urls.contains(u))) {
            return Err(Error::PeerUrlExists);
        }
        Ok(())
    }

    // ---- replicated changes (apply path) --------------------------------------------------

    pub fn add(&mut self, member: Member) {
        self.members.insert(member.id, member);
    }

    pub fn promote(&mut self, id: u64) {
        if let Some(m) = self.members.get_mut(&id) {
            m.is_learner = false;
        }
    }

    pub fn remove(&mut self, id: u64) {
        self.members.remove(&id);
        self.removed.insert(id);
    }

    /// A member's own announcement of its name and client URLs.
    pub fn set_attributes(&mut self, id: u64, name: String, client_urls: Vec<String>) {
        if let Some(m) = self.members.get_mut(&id) {
            m.name = name;
            m.client_ur_ls = client_urls;
        }
    }

    pub fn update_peer_urls(&mut self, id: u64, peer_urls: Vec<String>) {
        if let Some(m) = self.members.get_mut(&id) {
            m.peer_ur_ls = peer_urls;
        }
    }
}

/// etcd accepts `scheme://host:port` URLs with http or https (or unix sockets).
fn valid_url(u: &str) -> bool {
    let Some((scheme, rest)) = u.split_once("://") else { return false };
    matches!(scheme, "http" | "https" | "unix" | "unixs") && !rest.is_empty() && !rest.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_before_adding() {
        let mut m = Membership::founding(&[1], &[]);
        m.add(Member { id: 2, peer_ur_ls: vec!["http://10.0.0.2:2380".into()], ..Default::default() });
        assert_eq!(m.check_add(&[], false, 1), Err(Error::MemberBadUrls));
        assert_eq!(m.check_add(&["10.0.0.3:2380".into()], false, 1), Err(Error::MemberBadUrls));
        assert_eq!(m.check_add(&["http://10.0.0.2:2380".into()], false, 1), Err(Error::PeerUrlExists));
        assert_eq!(m.check_add(&["http://10.0.0.3:2380".into()], true, 1), Ok(()));
        m.add(Member { id: 3, is_learner: true, ..Default::default() });
        assert_eq!(m.check_add(&["http://10.0.0.4:2380".into()], true, 1), Err(Error::TooManyLearners));
        m.promote(3);
        assert_eq!(m.learners(), 0);
        assert_eq!(m.check_update(9, &["http://x:1".into()]), Err(Error::MemberNotFound));
    }

    #[test]
    fn a_removed_member_is_remembered_also_through_a_state_image() {
        let mut m = Membership::founding(&[1, 2, 3], &[]);
        m.remove(2);
        assert!(m.is_removed(2) && !m.is_removed(1) && m.get(2).is_none());
        let restored = Membership::from_list(m.list(), m.removed_ids());
        assert_eq!(restored, m);
        assert!(restored.is_removed(2));
    }
}
