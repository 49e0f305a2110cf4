//! Every bound of detcd, in one place, with etcd's defaults.
//!
//! A bound that is not here does not exist. Where etcd makes a bound configurable (a flag), the
//! constant here is the default and the configured value travels in the member's config.

/// Largest client request etcd accepts by default (`--max-request-bytes`): 1.5 MiB.
/// A larger request fails with [`crate::Error::RequestTooLarge`].
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// Extra room gRPC gets above the request limit, so that an oversized request still decodes
/// and gets etcd's own error rather than a transport error (etcd's `grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Client connections accepted and told to be gRPC, waiting for the gRPC server to take them.
pub const CLIENT_ACCEPT_QUEUE: usize = 128;

/// Largest gRPC message the client port receives: request limit plus overhead.
pub const MAX_GRPC_RECEIVE_BYTES: usize = MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES;

/// Most operations in one level of a txn (`--max-txn-ops`), counted as
/// max(compares, success ops, failure ops); nested txns share what is left of the budget.
pub const MAX_TXN_OPS: usize = 128;

/// Default backend quota (`--quota-backend-bytes`): 2 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;

/// What a put counts for against the quota beyond its key and value (etcd's `kvOverhead`).
pub const QUOTA_PUT_OVERHEAD_BYTES: u64 = 256;

/// What a lease grant counts for against the quota (etcd's `leaseOverhead`).
pub const QUOTA_LEASE_OVERHEAD_BYTES: u64 = 64;

/// Largest quota etcd suggests: 8 GiB.
pub const QUOTA_BACKEND_BYTES_MAX_SUGGESTED: u64 = 8 * 1024 * 1024 * 1024;

/// Longest lease TTL etcd grants, in seconds (`MaxLeaseTTL`).
pub const MAX_LEASE_TTL_S: i64 = 9_000_000_000;

/// Applied entries between raft snapshots (`--snapshot-count`): etcd 3.4's default. A snapshot
/// encodes the whole store on the apply path (docs/BENCHMARKS.md), so it costs in proportion to
/// the store, not to the entries since the last one; 3.6's 10,000 cost about 10% of 3-member
/// put throughput with 100,000 keys.
pub const SNAPSHOT_COUNT_DEFAULT: u64 = 100_000;

/// Entries kept in the raft log behind a snapshot for slow followers to catch up from.
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5_000;

/// Default heartbeat interval (`--heartbeat-interval`), in milliseconds.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 100;

/// Default election timeout (`--election-timeout`), in milliseconds.
pub const ELECTION_TIMEOUT_MS_DEFAULT: u64 = 1000;

/// Events buffered per watcher before it moves to the unsynced group (etcd's `chanBufLen`).
pub const WATCHER_EVENTS_MAX: usize = 128;

/// Watchers moved from unsynced to synced in one batch (etcd's `maxWatchersPerSync`).
pub const WATCHERS_PER_SYNC_MAX: usize = 512;

/// Default interval between watch progress notifications, in milliseconds (10 minutes).
pub const WATCH_PROGRESS_INTERVAL_MS_DEFAULT: u64 = 10 * 60 * 1000;

// ---- raft ----

/// Largest raft append message (raft-rs's `max_size_per_msg`; its default 0 would mean one entry
/// per message).
pub const RAFT_MAX_SIZE_PER_MSG_BYTES: u64 = 1024 * 1024;

/// Append messages in flight to one follower (etcd's `maxInflightMsgs`).
pub const RAFT_MAX_INFLIGHT_MSGS: usize = 4096 / 8;

/// Client requests waiting for consensus on one member; more fail with `TooManyRequests`
/// (etcd refuses when applied lags committed by more than 5,000 entries; we bound the queue).
pub const PENDING_REQUESTS_MAX: usize = 10_000;

/// Learners a cluster may hold at once (etcd's `--max-learners` default).
pub const MAX_LEARNERS_DEFAULT: usize = 1;

/// A learner may be promoted once its log has reached this share of the leader's, in percent
/// (etcd's `readyPercent` of 90%).
pub const LEARNER_READY_PERCENT: u64 = 90;

// ---- leases ----

/// Interval between checkpoints of a lease's remaining TTL (etcd's
/// `defaultLeaseCheckpointInterval`, `--experimental-lease-checkpoint-interval`): 5 minutes.
/// Only leases with a longer TTL are checkpointed. A checkpoint lets a new leader restart a
/// lease from what was left of it rather than from its full TTL.
pub const LEASE_CHECKPOINT_INTERVAL_MS: u64 = 5 * 60 * 1000;

/// Most checkpoints in one `LeaseCheckpointRequest` entry (etcd's `maxLeaseCheckpointBatchSize`).
pub const LEASE_CHECKPOINT_BATCH_MAX: usize = 1000;

/// Most leases revoked per second (etcd's `leaseRevokeRate`). A new leader with at least this
/// many leases spreads their expiries so that they can be revoked at this rate.
pub const LEASE_REVOKE_RATE_PER_S: usize = 1000;

/// How often the leader looks for expired leases and due checkpoints (etcd's lessor loop).
pub const LEASE_EXPIRY_CHECK_INTERVAL_MS: u64 = 500;

/// Most expired leases handed out per check: half the revoke rate per half-second check
/// (etcd's `leaseRevokeRate / 2`).
pub const LEASE_EXPIRED_BATCH_MAX: usize = LEASE_REVOKE_RATE_PER_S / 2;

/// How long an expired lease handed out for revocation waits before it is handed out again, in
/// case its revoke proposal was lost (etcd's lessor default `defaultExpiredleaseRetryInterval`;
/// etcdserver itself passes its request timeout, 5 s + 2 x election timeout).
pub const LEASE_EXPIRED_RETRY_INTERVAL_MS: u64 = 3_000;
/// Keepalives of expired leases waiting for the revoke (see `Node::expired_renewals`); beyond
/// it a keepalive of an expired lease is refused with "too many requests" (retried by clients).
pub const LEASE_EXPIRED_RENEWALS_WAITING_MAX: usize = 10_000;
// ---- watch ----

/// Responses one watch stream queues for its client before its watchers stop taking events
/// from writes (etcd's `chanBufLen`, the buffer of a watch stream's channel: 128 responses).
/// A synced watcher that finds its stream this full falls back to the unsynced group and later
/// catches up from the store, so a slow client never blocks or loses writes.
pub const WATCH_STREAM_RESPONSES_MAX: usize = 128;

/// Room a watch stream keeps above [`WATCH_STREAM_RESPONSES_MAX`] for the replies to its
/// client's own requests (created, canceled, requested progress), so that a stream full of
/// events can still answer them (etcd's `ctrlStreamBufLen`). When even this is used up the
/// driver stops reading the stream's requests, as etcd's receive loop blocks.
pub const WATCH_STREAM_CONTROL_RESPONSES_MAX: usize = 16;

/// Events one catch-up response of an unsynced watcher carries, plus at most the rest of the
/// revision the bound falls in (a revision is never split). etcd bounds the same batch by
/// revisions (`watchBatchMaxRevs` = 1000); counting events bounds its memory.
pub const WATCH_SYNC_RESPONSE_EVENTS_MAX: usize = 1000;

// ---- locks and elections ----

/// TTL of the lease the lock and election services grant when a request names no lease
/// (lease 0), in seconds: etcd's `concurrency` session default (`defaultSessionTTL`). etcd's
/// services then orphan that session, so the lease is never kept alive and expires after this.
pub const CONCURRENCY_SESSION_TTL_S: i64 = 60;

/// Leader answers one election Observe stream buffers for its client; when they are not read,
/// the observer stops reading its watch (and the watch hub its events) until there is room.
pub const ELECTION_OBSERVE_BUFFER: usize = 16;

/// Attempts of a read the lock and election services make while leadership moves (a read
/// fails with "leader changed" or "no leader" then): about two election timeouts' worth at
/// [`CONCURRENCY_READ_RETRY_MS`] apart, enough for a new leader to be elected.
pub const CONCURRENCY_READ_ATTEMPTS_MAX: u32 = 20;

/// Pause between those attempts, in milliseconds.
pub const CONCURRENCY_READ_RETRY_MS: u64 = 100;

// ---- disk ----

/// A WAL segment is closed and a new one started before it would grow past this (etcd's
/// `SegmentSizeBytes`: 64 MiB). A single record larger than what is left still goes into a
/// segment of its own.
pub const WAL_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Largest WAL record, type byte and payload (etcd's `maxWALEntrySizeLimit`: 10 MiB). Larger
/// writes are refused; on reading, a larger declared length is corruption, not a torn tail, so a
/// flipped high bit in a length field cannot make recovery drop the rest of a segment.
pub const WAL_RECORD_BYTES_MAX: usize = 10 * 1024 * 1024;

/// Snapshot files kept on disk; older ones are deleted (etcd's `--max-snapshots` default: 5).
pub const SNAPSHOT_FILES_KEPT: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_match_etcd_defaults() {
        assert_eq!(MAX_REQUEST_BYTES, 1_572_864);
        assert_eq!(MAX_GRPC_RECEIVE_BYTES, 2_097_152);
        assert_eq!(MAX_TXN_OPS, 128);
        assert_eq!(QUOTA_BACKEND_BYTES_DEFAULT, 2_147_483_648);
    }
}
