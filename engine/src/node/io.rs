//! What goes into a [`Node`](super::Node) and what comes out of it.

use detcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    MoveLeaderRequest, MoveLeaderResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
    TxnRequest, TxnResponse,
};
use detcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

use detcd_proto::etcdserverpb::*;
use detcd_proto::internalpb::AuthTokenIssue;

use crate::raft::{Entry, HardState, Message, Snapshot};
use crate::Error;

/// Chosen by the driver for each client request; the node answers with the same id. Unique
/// among the requests in flight on this node.
pub type RequestId = u64;

/// Identifies a [`Persist`] output; the driver hands it back to `handle_persisted` once the
/// data is durable. Tokens increase; persists complete in order.
pub type PersistToken = u64;

/// A client request the node serves.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Linearizable (through ReadIndex) unless `serializable` is set (local state).
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    /// A txn without writes in any branch is served as a read, like etcd.
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// Through a raft conf change; the new member's id is drawn by the proposing member.
    MemberAdd(MemberAddRequest),
    MemberRemove(MemberRemoveRequest),
    /// Peer URLs only; through a normal entry.
    MemberUpdate(MemberUpdateRequest),
    /// Only the leader can tell whether a learner has caught up: elsewhere `NotLeader`, and
    /// the driver forwards the request to [`Node::leader_id`](super::Node::leader_id).
    MemberPromote(MemberPromoteRequest),
    /// Local, or after a ReadIndex round when `linearizable` is set.
    MemberList(MemberListRequest),
    /// Leader only (elsewhere `NotLeader`); answered once the target leads.
    MoveLeader(MoveLeaderRequest),
    /// ID 0: this member picks one. Through raft.
    LeaseGrant(LeaseGrantRequest),
    /// Through raft; the lease's keys are deleted in one revision.
    LeaseRevoke(LeaseRevokeRequest),
    /// Leader only (elsewhere `NotLeader`: the driver forwards); no raft entry.
    LeaseKeepAlive(LeaseKeepAliveRequest),
    /// Leader only (elsewhere `NotLeader`): only the leader's lease clocks run.
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    /// Local.
    LeaseLeases(LeaseLeasesRequest),
    /// This member announces its name and client URLs to the cluster, through raft (the
    /// driver sends it once the member runs, as etcd's `publish`). Answered with the member
    /// list.
    PublishAttributes {
        name: String,
        client_urls: Vec<String>,
    },
    /// etcd's Alarm: list, raise or disarm, every action through raft (as etcd does).
    Alarm(AlarmRequest),
    /// Auth (see `crate::auth`): management requests go through raft, as in etcd, and need
    /// the root role once auth is enabled; passwords arrive already hashed. AuthStatus is local.
    AuthEnable(AuthEnableRequest),
    AuthDisable(AuthDisableRequest),
    AuthStatus(AuthStatusRequest),
    AuthUserAdd(AuthUserAddRequest),
    AuthUserDelete(AuthUserDeleteRequest),
    AuthUserChangePassword(AuthUserChangePasswordRequest),
    AuthUserGrantRole(AuthUserGrantRoleRequest),
    AuthUserRevokeRole(AuthUserRevokeRoleRequest),
    AuthUserGet(AuthUserGetRequest),
    AuthUserList(AuthUserListRequest),
    AuthRoleAdd(AuthRoleAddRequest),
    AuthRoleDelete(AuthRoleDeleteRequest),
    AuthRoleGet(AuthRoleGetRequest),
    AuthRoleList(AuthRoleListRequest),
    AuthRoleGrantPermission(AuthRoleGrantPermissionRequest),
    AuthRoleRevokePermission(AuthRoleRevokePermissionRequest),
    /// Local: a user's password hash and the auth revision, for the password check the server
    /// does (bcrypt is too slow, and needs no replicated state, to run inside the engine).
    AuthPasswordOf {
        name: String,
    },
    /// Through raft: a token for a user whose password was checked (etcd's
    /// InternalAuthenticateRequest); answered `Response::Authenticate`.
    Authenticate(AuthTokenIssue),
    /// Local: Ok (an `AuthStatus` answer) if the caller may do admin operations.
    AuthCheckAdmin,
    /// Local: Ok (an `AuthStatus` answer) if the caller may read (and, with `write`, write)
    /// every key of `[key, range_end)` (etcd's range encoding), for services that work on
    /// keys as clients of the member (Lock, Election).
    AuthCheckRange {
        key: bytes::Bytes,
        range_end: bytes::Bytes,
        write: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    MemberAdd(MemberAddResponse),
    MemberRemove(MemberRemoveResponse),
    MemberUpdate(MemberUpdateResponse),
    MemberPromote(MemberPromoteResponse),
    MemberList(MemberListResponse),
    MoveLeader(MoveLeaderResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseKeepAlive(LeaseKeepAliveResponse),
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    LeaseLeases(LeaseLeasesResponse),
    Alarm(AlarmResponse),
    AuthEnable(AuthEnableResponse),
    AuthDisable(AuthDisableResponse),
    AuthStatus(AuthStatusResponse),
    AuthUserAdd(AuthUserAddResponse),
    AuthUserDelete(AuthUserDeleteResponse),
    AuthUserChangePassword(AuthUserChangePasswordResponse),
    AuthUserGrantRole(AuthUserGrantRoleResponse),
    AuthUserRevokeRole(AuthUserRevokeRoleResponse),
    AuthUserGet(AuthUserGetResponse),
    AuthUserList(AuthUserListResponse),
    AuthRoleAdd(AuthRoleAddResponse),
    AuthRoleDelete(AuthRoleDeleteResponse),
    AuthRoleGet(AuthRoleGetResponse),
    AuthRoleList(AuthRoleListResponse),
    AuthRoleGrantPermission(AuthRoleGrantPermissionResponse),
    AuthRoleRevokePermission(AuthRoleRevokePermissionResponse),
    Authenticate(AuthenticateResponse),
    AuthPassword(AuthPassword),
}

/// A user's password hash (bcrypt's text form) and the auth revision it was read at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthPassword {
    pub header: Option<ResponseHeader>,
    pub hash: String,
    pub revision: u64,
}

impl Response {
    pub fn header(&self) -> Option<&ResponseHeader> {
        match self {
            Response::Range(r) => r.header.as_ref(),
            Response::Put(r) => r.header.as_ref(),
            Response::DeleteRange(r) => r.header.as_ref(),
            Response::Txn(r) => r.header.as_ref(),
            Response::Compact(r) => r.header.as_ref(),
            Response::MemberAdd(r) => r.header.as_ref(),
            Response::MemberRemove(r) => r.header.as_ref(),
            Response::MemberUpdate(r) => r.header.as_ref(),
            Response::MemberPromote(r) => r.header.as_ref(),
            Response::MemberList(r) => r.header.as_ref(),
            Response::MoveLeader(r) => r.header.as_ref(),
            Response::LeaseGrant(r) => r.header.as_ref(),
            Response::LeaseRevoke(r) => r.header.as_ref(),
            Response::LeaseKeepAlive(r) => r.header.as_ref(),
            Response::LeaseTimeToLive(r) => r.header.as_ref(),
            Response::LeaseLeases(r) => r.header.as_ref(),
            Response::Alarm(r) => r.header.as_ref(),
            Response::AuthEnable(r) => r.header.as_ref(),
            Response::AuthDisable(r) => r.header.as_ref(),
            Response::AuthStatus(r) => r.header.as_ref(),
            Response::AuthUserAdd(r) => r.header.as_ref(),
            Response::AuthUserDelete(r) => r.header.as_ref(),
            Response::AuthUserChangePassword(r) => r.header.as_ref(),
            Response::AuthUserGrantRole(r) => r.header.as_ref(),
            Response::AuthUserRevokeRole(r) => r.header.as_ref(),
            Response::AuthUserGet(r) => r.header.as_ref(),
            Response::AuthUserList(r) => r.header.as_ref(),
            Response::AuthRoleAdd(r) => r.header.as_ref(),
            Response::AuthRoleDelete(r) => r.header.as_ref(),
            Response::AuthRoleGet(r) => r.header.as_ref(),
            Response::AuthRoleList(r) => r.header.as_ref(),
            Response::AuthRoleGrantPermission(r) => r.header.as_ref(),
            Response::AuthRoleRevokePermission(r) => r.header.as_ref(),
            Response::Authenticate(r) => r.header.as_ref(),
            Response::AuthPassword(r) => r.header.as_ref(),
        }
    }

    pub fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
        match self {
            Response::Range(r) => &mut r.header,
            Response::Put(r) => &mut r.header,
            Response::DeleteRange(r) => &mut r.header,
            Response::Txn(r) => &mut r.header,
            Response::Compact(r) => &mut r.header,
            Response::MemberAdd(r) => &mut r.header,
            Response::MemberRemove(r) => &mut r.header,
            Response::MemberUpdate(r) => &mut r.header,
            Response::MemberPromote(r) => &mut r.header,
            Response::MemberList(r) => &mut r.header,
            Response::MoveLeader(r) => &mut r.header,
            Response::LeaseGrant(r) => &mut r.header,
            Response::LeaseRevoke(r) => &mut r.header,
            Response::LeaseKeepAlive(r) => &mut r.header,
            Response::LeaseTimeToLive(r) => &mut r.header,
            Response::LeaseLeases(r) => &mut r.header,
            Response::Alarm(r) => &mut r.header,
            Response::AuthEnable(r) => &mut r.header,
            Response::AuthDisable(r) => &mut r.header,
            Response::AuthStatus(r) => &mut r.header,
            Response::AuthUserAdd(r) => &mut r.header,
            Response::AuthUserDelete(r) => &mut r.header,
            Response::AuthUserChangePassword(r) => &mut r.header,
            Response::AuthUserGrantRole(r) => &mut r.header,
            Response::AuthUserRevokeRole(r) => &mut r.header,
            Response::AuthUserGet(r) => &mut r.header,
            Response::AuthUserList(r) => &mut r.header,
            Response::AuthRoleAdd(r) => &mut r.header,
            Response::AuthRoleDelete(r) => &mut r.header,
            Response::AuthRoleGet(r) => &mut r.header,
            Response::AuthRoleList(r) => &mut r.header,
            Response::AuthRoleGrantPermission(r) => &mut r.header,
            Response::AuthRoleRevokePermission(r) => &mut r.header,
            Response::Authenticate(r) => &mut r.header,
            Response::AuthPassword(r) => &mut r.header,
        }
    }

    /// The store revision the response's header carries.
    pub fn revision(&self) -> i64 {
        self.header().map_or(0, |h| h.revision)
    }
}

/// Data the driver must make durable, in order, before answering `handle_persisted(token)`.
///
/// Apply it as: if `snapshot` is set, it replaces the whole log (and the state image); then
/// `entries` are appended, replacing any entries at or after `entries[0].index`; then
/// `hard_state` is written. `must_sync` false means only the commit index changed: an fsync may
/// be skipped or batched (raft-rs's `must_sync`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Persist {
    pub token: PersistToken,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub must_sync: bool,
}

/// What the node asks of its driver. See [`Node::poll_output`](super::Node::poll_output).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a raft message to member `message.to`. Loss is fine; raft retries.
    Send(Message),
    /// Make this durable, then call `handle_persisted(token)`.
    Persist(Persist),
    /// The node took a snapshot of its applied state (raft snapshot metadata + a state image
    /// as data). The driver writes it atomically; after that, the log before
    /// `log_kept_from` is no longer needed for recovery. No answer is expected: until the
    /// driver has written it, the log it already holds is enough to recover.
    Snapshot { snapshot: Snapshot, log_kept_from: u64 },
    /// The answer to request `id`.
    Respond { id: RequestId, result: Result<Response, Error> },
}
