//! Linearizable reads through raft's ReadIndex, batched.
//!
//! A read may be served once the member has applied up to a *read index*: the leader's commit
//! index at a moment after the read arrived, confirmed by a quorum of heartbeats (raft-rs's
//! `ReadOnlySafe`). One ReadIndex round is in flight at a time, and it serves every read that
//! arrived before it was issued; reads arriving meanwhile wait for the next round. Under load
//! this batches many reads into one round of heartbeats.
//!
//! A round can be silently dropped by raft (no leader, or a new leader that has not yet
//! committed an entry of its term), so an unanswered round is issued again after
//! `read_index_retry` — or at once, for a round issued before this member saw the leader commit
//! an entry of the current term, as soon as it sees that (raft-rs drops such rounds rather than
//! queueing them as etcd's raft does, and a fresh cluster's first reads would otherwise all wait
//! out the retry); a leader change fails the reads of the round in flight with
//! `LeaderChanged`, as etcd does; every read fails with `Timeout` at its deadline.

use super::io::{Request, RequestId};
use crate::time::{Duration, Instant};
use crate::Error;

#[derive(Debug, Clone)]
pub(crate) struct PendingRead {
    pub id: RequestId,
    pub request: Request,
    pub deadline: Instant,
}

#[derive(Debug)]
struct Round {
    ctx: u64,
    issued_at: Instant,
    /// Issued before the leader had (to our knowledge) committed an entry of its term: the
    /// leader dropped it, so it is issued again once that commit is known.
    before_term_commit: bool,
    reads: Vec<PendingRead>,
}

#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Arrived after the round in flight was issued.
    waiting: Vec<PendingRead>,
    round: Option<Round>,
    /// Read index known; served once applied reaches it. In index order.
    confirmed: Vec<(u64, Vec<PendingRead>)>,
    next_ctx: u64,
}

impl Reads {
    pub fn len(&self) -> usize {
        self.waiting.len()
            + self.round.as_ref().map_or(0, |r| r.reads.len())
            + self.confirmed.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    pub fn enqueue(&mut self, read: PendingRead) {
        self.waiting.push(read);
    }

    /// The context of a ReadIndex round to issue now, if one is due: when none is in flight and
    /// reads wait, or when the one in flight went unanswered for `retry` or was issued before
    /// the term's first commit that `term_committed` now reports (then the new round takes over
    /// its reads, and those that waited).
    pub fn round_to_issue(&mut self, now: Instant, retry: Duration, term_committed: bool) -> Option<Vec<u8>> {
        let due = match &self.round {
            None => !self.waiting.is_empty(),
            Some(round) => now >= round.issued_at + retry || (round.before_term_commit && term_committed),
        };
        if !due {
            return None;
        }
        let mut reads = self.round.take().map_or_else(Vec::new, |r| r.reads);
        reads.append(&mut self.waiting);
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        self.round = Some(Round { ctx, issued_at: now, before_term_commit: !term_committed, reads });
        Some(ctx.to_be_bytes().to_vec())
    }

    /// Raft answered a round: its reads may be served at `index`.
    pub fn on_read_state(&mut self, ctx: &[u8], index: u64) {
        let Ok(ctx) = <[u8; 8]>::try_from(ctx).map(u64::from_be_bytes) else {
            return;
        };
        if self.round.as_ref().is_some_and(|r| r.ctx == ctx) {
            let round = self.round.take().expect("checked");
            let at = self.confirmed.partition_point(|(i, _)| *i <= index);
            self.confirmed.insert(at, (index, round.reads));
        }
    }

    /// Reads whose read index has been applied, in arrival order of their rounds.
    pub fn take_servable(&mut self, applied_index: u64) -> Vec<PendingRead> {
        let n = self.confirmed.partition_point(|(i, _)| *i <= applied_index);
        self.confirmed.drain(..n).flat_map(|(_, reads)| reads).collect()
    }

    /// The leader changed: the round in flight will never be answered. Its reads fail with
    /// `LeaderChanged`; its lease requests with `NotLeader`, which sends them on to the new
    /// leader (only the leader's lessor answers them: see `Node::serve_lease_read`).
    pub fn fail_round(&mut self) -> Vec<(RequestId, Error)> {
        let error = |request: &Request| match request {
            Request::LeaseKeepAlive(_) | Request::LeaseTimeToLive(_) => Error::NotLeader,
            _ => Error::LeaderChanged,
        };
        self.round.take().map_or_else(Vec::new, |r| r.reads.into_iter().map(|p| (p.id, error(&p.request))).collect())
    }

    /// Every read whose deadline passed fails with `Timeout`.
    pub fn expire(&mut self, now: Instant) -> Vec<(RequestId, Error)> {
        let mut failed = Vec::new();
        let mut keep = |reads: &mut Vec<PendingRead>| {
            reads.retain(|r| {
                let live = r.deadline > now;
                if !live {
                    failed.push((r.id, Error::Timeout));
                }
                live
            })
        };
        keep(&mut self.waiting);
        if let Some(round) = &mut self.round {
            keep(&mut round.reads);
        }
        for (_, reads) in &mut self.confirmed {
            keep(reads);
        }
        self.confirmed.retain(|(_, reads)| !reads.is_empty());
        failed
    }

    /// When `round_to_issue` or `expire` next has work.
    pub fn next_deadline(&self, retry: Duration) -> Option<Instant> {
        let retry_at = self.round.as_ref().map(|r| r.issued_at + retry);
        let deadlines = self
            .waiting
            .iter()
            .chain(self.round.iter().flat_map(|r| &r.reads))
            .chain(self.confirmed.iter().flat_map(|(_, r)| r))
            .map(|r| r.deadline);
        retry_at.into_iter().chain(deadlines).min()
    }
}
