//! etcd's errors: each variant carries etcd's gRPC status code and its exact message string.
//!
//! Clients match on these strings (clientv3's `rpctypes` turns them back into typed errors), so
//! they are copied from etcd's `api/v3rpc/rpctypes/error.go` verbatim and must never be
//! reworded. The engine returns [`Error`]; the server turns it into a gRPC status with
//! [`Error::code`] and [`Error::message`].

use std::fmt;

/// gRPC status codes, by their wire numbers. The engine has no gRPC dependency; the server maps
/// these one to one onto its status type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum GrpcCode {
    Canceled = 1,
    InvalidArgument = 3,
    NotFound = 5,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    OutOfRange = 11,
    Unimplemented = 12,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

macro_rules! etcd_errors {
    ($( $(#[$doc:meta])* $variant:ident => ($code:ident, $message:literal), )*) => {
        /// An error etcd defines, with its code and message. See the module docs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Error {
            $( $(#[$doc])* $variant, )*
        }

        impl Error {
            /// Every error, in declaration order (for tests and documentation).
            pub const ALL: &'static [Error] = &[$(Error::$variant,)*];

            /// The gRPC status code etcd answers this error with.
            pub fn code(self) -> GrpcCode {
                match self { $( Error::$variant => GrpcCode::$code, )* }
            }

            /// etcd's exact message string.
            pub fn message(self) -> &'static str {
                match self { $( Error::$variant => $message, )* }
            }
        }
    };
}

etcd_errors! {
    /// A request without a key (range, put, delete, or a compare in a txn).
    EmptyKey => (InvalidArgument, "etcdserver: key is not provided"),
    /// A put with `ignore_value` or `ignore_lease` on a key that does not exist.
    KeyNotFound => (InvalidArgument, "etcdserver: key not found"),
    /// A put with `ignore_value` that also carries a value.
    ValueProvided => (InvalidArgument, "etcdserver: value is provided"),
    /// A put with `ignore_lease` that also carries a lease.
    LeaseProvided => (InvalidArgument, "etcdserver: lease is provided"),
    /// A txn level with more than `MAX_TXN_OPS` operations.
    TooManyOps => (InvalidArgument, "etcdserver: too many operations in txn request"),
    /// Two writes to one key in one txn (put/put or put/delete overlap).
    DuplicateKey => (InvalidArgument, "etcdserver: duplicate key given in txn request"),
    /// A request larger than `--max-request-bytes`.
    RequestTooLarge => (InvalidArgument, "etcdserver: request is too large"),
    MemberBadUrls => (InvalidArgument, "etcdserver: given member URLs are invalid"),
    UserEmpty => (InvalidArgument, "etcdserver: user name is empty"),
    RoleEmpty => (InvalidArgument, "etcdserver: role name is empty"),
    AuthFailed => (InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
    InvalidAuthMgmt => (InvalidArgument, "etcdserver: invalid auth management"),
    /// The auth state changed between a request's proposal and its apply.
    AuthOldRevision => (InvalidArgument, "etcdserver: revision of auth store is old"),
    PermissionNotGiven => (InvalidArgument, "etcdserver: permission not given"),
    /// A read or compaction at a revision below the compacted revision.
    Compacted => (OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
    /// A read or compaction at a revision above the current revision.
    FutureRevision => (OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
    LeaseTtlTooLarge => (OutOfRange, "etcdserver: too large lease TTL"),
    LeaseNotFound => (NotFound, "etcdserver: requested lease not found"),
    MemberNotFound => (NotFound, "etcdserver: member not found"),
    LeaseExists => (FailedPrecondition, "etcdserver: lease already exists"),
    NotLeader => (FailedPrecondition, "etcdserver: not leader"),
    MemberExists => (FailedPrecondition, "etcdserver: member ID already exist"),
    PeerUrlExists => (FailedPrecondition, "etcdserver: Peer URLs already exists"),
    MemberNotEnoughStarted => (FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members"),
    MemberNotLearner => (FailedPrecondition, "etcdserver: can only promote a learner member"),
    LearnerNotReady => (FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader"),
    TooManyLearners => (FailedPrecondition, "etcdserver: too many learner members in cluster"),
    RootUserNotExist => (FailedPrecondition, "etcdserver: root user does not exist"),
    RootRoleNotExist => (FailedPrecondition, "etcdserver: root user does not have root role"),
    UserAlreadyExist => (FailedPrecondition, "etcdserver: user name already exists"),
    UserNotFound => (FailedPrecondition, "etcdserver: user name not found"),
    RoleAlreadyExist => (FailedPrecondition, "etcdserver: role name already exists"),
    RoleNotFound => (FailedPrecondition, "etcdserver: role name not found"),
    RoleNotGranted => (FailedPrecondition, "etcdserver: role is not granted to the user"),
    PermissionNotGranted => (FailedPrecondition, "etcdserver: permission is not granted to the role"),
    AuthNotEnabled => (FailedPrecondition, "etcdserver: authentication is not enabled"),
    BadLeaderTransferee => (FailedPrecondition, "etcdserver: bad leader transferee"),
    NoSpace => (ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
    TooManyRequests => (ResourceExhausted, "etcdserver: too many requests"),
    NoLeader => (Unavailable, "etcdserver: no leader"),
    LeaderChanged => (Unavailable, "etcdserver: leader changed"),
    NotCapable => (Unavailable, "etcdserver: not capable"),
    Stopped => (Unavailable, "etcdserver: server stopped"),
    Timeout => (Unavailable, "etcdserver: request timed out"),
    TimeoutDueToLeaderFail => (Unavailable, "etcdserver: request timed out, possibly due to previous leader failure"),
    TimeoutDueToConnectionLost => (Unavailable, "etcdserver: request timed out, possibly due to connection lost"),
    Unhealthy => (Unavailable, "etcdserver: unhealthy cluster"),
    LearnerNotSupported => (Unavailable, "etcdserver: rpc not supported for learner"),
    Corrupt => (DataLoss, "etcdserver: corrupt cluster"),
    PermissionDenied => (PermissionDenied, "etcdserver: permission denied"),
    InvalidAuthToken => (Unauthenticated, "etcdserver: invalid auth token"),
    WatchCanceled => (Canceled, "etcdserver: watch canceled"),
    RequestCanceled => (Canceled, "etcdserver: request canceled"),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_etcds_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for e in Error::ALL {
            assert!(e.message().starts_with("etcdserver: "), "{e:?}");
            assert!(seen.insert(e.message()), "duplicate message for {e:?}");
        }
        assert_eq!(Error::Compacted.code(), GrpcCode::OutOfRange);
        assert_eq!(Error::LeaseNotFound.code(), GrpcCode::NotFound);
        assert_eq!(GrpcCode::Unavailable as i32, 14);
    }
}
