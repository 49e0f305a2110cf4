use crate::limits;
use crate::raft::{Entry, HardState, Snapshot};
use crate::time::Duration;

/// A member's configuration. Nothing here is replicated; every member of a cluster should be
/// given the same timing values, as with etcd's flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// This member's id (non-zero), also its raft id.
    pub id: u64,
    pub cluster_id: u64,
    /// The voters a new cluster starts with (etcd's `--initial-cluster`); every founding member
    /// gets the same list. Ignored once a snapshot holds the membership.
    pub initial_voters: Vec<u64>,
    /// Names and URLs of the founding members, where known (etcd's `--initial-cluster`).
    pub initial_members: Vec<detcd_proto::etcdserverpb::Member>,
    /// One raft tick (etcd's `--heartbeat-interval`).
    pub heartbeat_interval: Duration,
    /// The election timeout in ticks (etcd's `--election-timeout` / `--heartbeat-interval`).
    /// Each member draws its actual timeout from `[election_ticks, 2 * election_ticks)` with its
    /// seeded generator, anew at every term, role and election-clock reset.
    pub election_ticks: usize,
    /// Applied entries between two snapshots of the state (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept in the log behind a snapshot, for followers to catch up from.
    pub snapshot_catch_up_entries: u64,
    /// How long a request may wait for consensus before it fails with `Timeout`.
    pub request_timeout: Duration,
    /// How long a ReadIndex round may go unanswered before it is asked again.
    pub read_index_retry: Duration,
    /// Largest raft append message, in bytes.
    pub max_size_per_msg_bytes: u64,
    /// Append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Largest client request accepted (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Largest store size, as [`crate::mvcc::Store::size_bytes`] counts it, before writes that
    /// add data are refused and the NOSPACE alarm is raised (etcd's `--quota-backend-bytes`).
    pub quota_backend_bytes: u64,
    /// How long a simple auth token lives past its last use (etcd's `--auth-token-ttl`).
    pub auth_token_ttl: Duration,
}

impl Config {
    /// etcd's defaults for member `id` of a cluster founded by `initial_voters`.
    pub fn new(id: u64, initial_voters: Vec<u64>) -> Config {
        let heartbeat_interval = Duration::from_millis(limits::HEARTBEAT_INTERVAL_MS_DEFAULT);
        let election_ticks = (limits::ELECTION_TIMEOUT_MS_DEFAULT / limits::HEARTBEAT_INTERVAL_MS_DEFAULT) as usize;
        Config {
            id,
            cluster_id: 0x1000,
            initial_voters,
            initial_members: Vec::new(),
            heartbeat_interval,
            election_ticks,
            snapshot_count: limits::SNAPSHOT_COUNT_DEFAULT,
            snapshot_catch_up_entries: limits::SNAPSHOT_CATCH_UP_ENTRIES,
            // etcd: 5 s + 2 × election timeout.
            request_timeout: Duration::from_secs(5) + heartbeat_interval * (2 * election_ticks as u32),
            // etcd's readIndexRetryTime.
            read_index_retry: Duration::from_millis(500),
            max_size_per_msg_bytes: limits::RAFT_MAX_SIZE_PER_MSG_BYTES,
            max_inflight_msgs: limits::RAFT_MAX_INFLIGHT_MSGS,
            max_request_bytes: limits::MAX_REQUEST_BYTES,
            quota_backend_bytes: limits::QUOTA_BACKEND_BYTES_DEFAULT,
            auth_token_ttl: Duration::from_secs(300),
        }
    }
}

/// What a member finds on its disk when it starts. `Recovered::default()` is a new member.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The latest snapshot written (its data is a state image).
    pub snapshot: Option<Snapshot>,
    /// Log entries written, in index order; those the snapshot covers are skipped.
    pub entries: Vec<Entry>,
}
