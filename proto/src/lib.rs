//! Protocol definitions of detcd: Rust types and gRPC services generated from
//! the `.proto` files in this crate's `proto/` directory.
//!
//! - [`etcdserverpb`], [`mvccpb`], [`authpb`], [`v3lockpb`] and
//!   [`v3electionpb`] are etcd's client-facing API. Package, service, method,
//!   message and field names, field numbers and enum values are identical to
//!   etcd v3.5 (the protos are copies of etcd v3.5.33's with the gogoproto and
//!   grpc-gateway annotations removed), so real etcd clients (etcdctl,
//!   `go.etcd.io/etcd/client/v3`, `etcd-client` crates, ...) interoperate with
//!   detcd on the wire.
//! - [`peerpb`] is detcd's own member-to-member protocol: raft messages carried
//!   as opaque protobuf-encoded raft-rs `eraftpb` bytes, and chunked snapshot
//!   transfer.
//!
//! Every protobuf `bytes` field is a [`bytes::Bytes`] in Rust.
//!
//! Each package module holds the messages, plus `<service>_server` and
//! `<service>_client` modules for each service it defines (for example
//! [`etcdserverpb::kv_server::KvServer`] and
//! [`etcdserverpb::kv_client::KvClient`]).
//!
//! The code is generated with `madsim-tonic-build` and served with
//! `madsim-tonic` (imported as `tonic`). A normal build gives real tonic
//! services over HTTP/2; building with `RUSTFLAGS="--cfg madsim"` gives
//! madsim-tonic services that run inside the madsim deterministic simulator
//! instead. The messages are the same in both worlds.
//!
//! The gRPC clients and servers come with the `grpc` feature. Without it the crate holds the
//! messages alone and depends on no runtime: that is how the sans-IO engine uses it.

/// Includes one generated package: with services under the `grpc` feature (the tonic or the
/// madsim flavour, by `cfg(madsim)`), messages only without it.
macro_rules! package {
    ($name:literal) => {
        #[cfg(feature = "grpc")]
        tonic::include_proto!($name);
        #[cfg(not(feature = "grpc"))]
        include!(concat!(env!("OUT_DIR"), "/messages/", $name, ".rs"));
    };
}

/// Keys, values and watch events (etcd `mvccpb`, `kv.proto`).
pub mod mvccpb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    package!("mvccpb");
}

/// Users, roles and permissions (etcd `authpb`, `auth.proto`).
pub mod authpb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    package!("authpb");
}

/// The etcd v3 API: services `KV`, `Watch`, `Lease`, `Cluster`,
/// `Maintenance` and `Auth` (etcd `etcdserverpb`, `rpc.proto`).
pub mod etcdserverpb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    package!("etcdserverpb");
}

/// The etcd v3 lock service `Lock` (etcd `v3lockpb`, `v3lock.proto`).
pub mod v3lockpb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    package!("v3lockpb");
}

/// The etcd v3 election service `Election` (etcd `v3electionpb`,
/// `v3election.proto`).
pub mod v3electionpb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    package!("v3electionpb");
}

/// detcd's member-to-member service `Peer` (`peer.proto`): raft message
/// batches and chunked snapshot transfer.
pub mod peerpb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    package!("peerpb");
}

/// detcd's own replicated requests (`internal.proto`): the payload of a raft log entry.
pub mod internalpb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    package!("internalpb");
}
