//! The history format: JSON lines, one client operation per line.
//!
//! A history is what the clients of an etcd cluster saw: for every request, which client sent it,
//! when it was sent and when the answer came back (`call_ns`, `return_ns`, nanoseconds on one
//! clock shared by all clients), what was asked (`op`), how it ended (`outcome`) and what the
//! answer said (`output`). The checkers read nothing else, so a converter from another tool's
//! history only has to produce these lines.
//!
//! # A line
//!
//! ```json
//! {"client":3,"call_ns":1000,"return_ns":2000,"op":{"type":"put","key":"a","value":"1"},"outcome":"ok","output":{"type":"put","header_revision":5}}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `client` | who sent it (a process: it sends one request at a time); used in reports |
//! | `call_ns` | when the request was sent |
//! | `return_ns` | when the answer came (or, for `indeterminate`, when the client gave up); `>= call_ns` |
//! | `op` | the request, tagged by `type` (below) |
//! | `outcome` | `"ok"`: it happened and `output` says what it returned; `"failed"`: it certainly did not happen (etcd refused it: a compare-failed txn is *not* a failure, it is `ok` with `succeeded: false`); `"indeterminate"`: it may or may not have happened (a timeout, a lost connection) |
//! | `output` | present exactly when `outcome` is `ok`; tagged by the same `type` as `op` |
//! | `error` | optional, with `failed` or `indeterminate`: the error text, for reports |
//!
//! The operation's id, used in every report, is its position in the file counting from 0: the
//! operation on line `n` has id `n - 1`. Empty lines are therefore refused (except after the last
//! line), and so are unknown fields: a misspelt `rang_end` must not silently mean "single key".
//!
//! Keys and values are bytes. In JSON they are strings when they are valid UTF-8 (`"a"`,
//! `"\u0000"`) and arrays of byte values otherwise (`[255, 0]`); both forms are read.
//!
//! # Requests (`op`) and their outputs
//!
//! Names follow etcd's protobufs (`etcdserverpb`), with units added where etcd leaves them out.
//! A range end follows etcd: absent or empty means the single key `key`; `"\u0000"` means every key
//! `>= key`; otherwise the keys in `[key, range_end)`.
//!
//! | `op` | fields (`?`: optional) | `output` fields |
//! |---|---|---|
//! | `range` | `key`, `range_end`?, `revision`? (0 = latest) | `header_revision`, `kvs` |
//! | `put` | `key`, `value`, `lease`? (0 = none), `prev_kv`? (bool) | `header_revision`, `prev_kv`? |
//! | `delete` | `key`, `range_end`?, `prev_kv`? (bool) | `header_revision`, `deleted`, `prev_kvs`? |
//! | `txn` | `compare`, `success`, `failure` | `header_revision`, `succeeded`, `responses` |
//! | `lease_grant` | `ttl_s`, `id`? (0 = chosen by the server) | `header_revision`, `id`, `ttl_s` |
//! | `lease_revoke` | `id` | `header_revision` |
//! | `lease_keepalive` | `id` | `header_revision`, `ttl_s` (0: the lease was not found) |
//! | `compact` | `revision`, `physical`? (bool) | `header_revision` |
//! | `watch` | `watcher`, `key`, `range_end`?, `start_revision`?, `prev_kv`?, `progress_notify`?, `filters`? (`["no_put", "no_delete"]`) | `header_revision`, `watch_id` |
//! | `watch_response` | `watcher` | `header_revision`, `watch_id`, `events`, `compact_revision`?, `canceled`?, `fragment`? |
//! | `list_txn` | `ops` (micro-operations, below) | `header_revision`, `results` |
//!
//! A key-value (`kvs`, `prev_kv`, `prev_kvs`, an event's `kv`) is
//! `{"key":"a","value":"1","create_revision":2,"mod_revision":5,"version":3,"lease":0}`
//! (`lease` may be left out when 0).
//!
//! A txn's `compare` is a list of `{"key":"a","result":"equal","target":{"value":"1"}}`, with an
//! optional `range_end`, `result` one of `equal`, `not_equal`, `greater`, `less`, and `target` one of
//! `{"value": bytes}`, `{"version": n}`, `{"create_revision": n}`, `{"mod_revision": n}`,
//! `{"lease": n}`. `success` and `failure` are lists of `range`, `put` and `delete` requests as
//! above (nested txns are not part of the format). Its output's `responses` holds one entry per
//! request of the branch that ran, in order: `{"type":"range","kvs":[…]}`,
//! `{"type":"put","prev_kv":…}`, `{"type":"delete","deleted":n,"prev_kvs":[…]}` (no headers: the
//! txn's `header_revision` is the one that counts).
//!
//! Watches: a `watch` line is the creation of a watch stream, from the request to the `created`
//! response; `watcher` is a number the recorder picks, unique in the history, that ties the
//! creation to the responses. Each response the watcher received is one `watch_response` line
//! whose `call_ns` and `return_ns` are both the time it arrived and whose `outcome` is `ok`; an
//! event is `{"type":"put"|"delete","kv":{…},"prev_kv":{…}}`, a progress notification is a
//! response with no events. (The watch checks read these lines; the linearizability checker skips
//! them.)
//!
//! List-append transactions (`list_txn`, for the Elle-style transaction checks): each key holds a
//! list of integers; `ops` is a list of `{"f":"append","key":"x","value":3}` (append 3 to x's list)
//! and `{"f":"read","key":"x"}` (read x's whole list), run as one transaction. The output's
//! `results` has one entry per micro-operation, in order: `null` for an append, the list read
//! (`[1,3]`, `[]` for a key never written) for a read. How a recorder runs one on etcd is its own
//! business (detcd's: read the keys, then one txn whose compares pin every key's `mod_revision`
//! and whose success branch writes the appended lists as comma-separated decimals, retried when a
//! compare fails); the checks read only these lines. Every appended value must be unique per key.
//!
//! # Examples
//!
//! ```json
//! {"client":1,"call_ns":100,"return_ns":900,"op":{"type":"put","key":"a","value":"1","prev_kv":true},"outcome":"ok","output":{"type":"put","header_revision":2}}
//! {"client":2,"call_ns":200,"return_ns":700,"op":{"type":"range","key":"a"},"outcome":"ok","output":{"type":"range","header_revision":2,"kvs":[{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}]}}
//! {"client":3,"call_ns":300,"return_ns":5000,"op":{"type":"put","key":"b","value":"x"},"outcome":"indeterminate","error":"deadline exceeded"}
//! {"client":2,"call_ns":1000,"return_ns":1400,"op":{"type":"txn","compare":[{"key":"a","result":"equal","target":{"mod_revision":2}}],"success":[{"type":"put","key":"a","value":"2"}],"failure":[{"type":"range","key":"a"}]},"outcome":"ok","output":{"type":"txn","header_revision":3,"succeeded":true,"responses":[{"type":"put"}]}}
//! {"client":1,"call_ns":1000,"return_ns":1100,"op":{"type":"delete","key":"a","range_end":"\u0000"},"outcome":"failed","error":"etcdserver: too many requests"}
//! {"client":4,"call_ns":50,"return_ns":60,"op":{"type":"watch","watcher":1,"key":"a","start_revision":1},"outcome":"ok","output":{"type":"watch","header_revision":1,"watch_id":0}}
//! {"client":4,"call_ns":950,"return_ns":950,"op":{"type":"watch_response","watcher":1},"outcome":"ok","output":{"type":"watch_response","header_revision":2,"watch_id":0,"events":[{"type":"put","kv":{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}}]}}
//! {"client":5,"call_ns":2000,"return_ns":2500,"op":{"type":"list_txn","ops":[{"f":"append","key":"x","value":3},{"f":"read","key":"y"}]},"outcome":"ok","output":{"type":"list_txn","header_revision":4,"results":[null,[1,2]]}}
//! ```
//!
//! [`read_history`] / [`parse_history`] read a file (an error names the line) and check each line
//! with [`Operation::validate`]; [`write_history`] writes one.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::sync::Arc;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Keys and values: a JSON string when valid UTF-8, else an array of byte values.
///
/// Shared, so that a clone is a reference count: the linearizability search copies the etcd
/// model's key map at every write it tries, keys and values with it.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub Arc<[u8]>);

impl Bytes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Bytes {
    fn from(s: &str) -> Self {
        Bytes(s.as_bytes().into())
    }
}

impl From<String> for Bytes {
    fn from(s: String) -> Self {
        Bytes(s.into_bytes().into())
    }
}

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Self {
        Bytes(b.into())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(b: Vec<u8>) -> Self {
        Bytes(b.into())
    }
}

/// Shown as a quoted string with Rust's escapes, bytes that are not UTF-8 as `\xNN`.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                write!(f, "{}", c.escape_debug())?;
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(s) => serializer.serialize_str(s),
            Err(_) => serializer.collect_seq(self.0.iter()),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;

        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Bytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of byte values")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Bytes(v.as_bytes().into()))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.into()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bytes(out.into()))
            }
        }

        deserializer.deserialize_any(BytesVisitor)
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub client: u64,
    pub call_ns: u64,
    /// For `indeterminate`: when the client gave up. The checkers treat an indeterminate
    /// operation as still in flight until the end of the history.
    pub return_ns: u64,
    pub op: Request,
    pub outcome: Outcome,
    /// Present exactly when `outcome` is `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Response>,
    /// The error a failed or indeterminate operation got, for reports only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened, and `output` is what it returned.
    Ok,
    /// It certainly did not happen.
    Failed,
    /// It may or may not have happened, at any time after `call_ns`.
    Indeterminate,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRequest),
    Txn(TxnRequest),
    LeaseGrant {
        ttl_s: i64,
        /// 0: the server picks the id.
        #[serde(default, skip_serializing_if = "is_zero")]
        id: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    LeaseKeepalive {
        id: i64,
    },
    Compact {
        revision: i64,
        #[serde(default, skip_serializing_if = "is_false")]
        physical: bool,
    },
    Watch(WatchRequest),
    WatchResponse {
        watcher: u64,
    },
    ListTxn {
        ops: Vec<ListOp>,
    },
    /// Not part of the format (never read nor written): the checker's stand-in for the expiry of
    /// lease `id`, which no client asks for, added to the search as an optional operation (see
    /// [`crate::models::EtcdModel`]).
    #[serde(skip)]
    LeaseExpire {
        id: i64,
    },
}

/// One micro-operation of a `list_txn`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum ListOp {
    /// Appends `value` to the end of `key`'s list.
    Append { key: Bytes, value: u64 },
    /// Reads `key`'s whole list.
    Read { key: Bytes },
}

impl ListOp {
    pub fn key(&self) -> &Bytes {
        match self {
            ListOp::Append { key, .. } | ListOp::Read { key } => key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeRequest {
    pub key: Bytes,
    /// Empty: the single key `key`; `"\0"`: every key `>= key`; else `[key, range_end)`.
    #[serde(default, skip_serializing_if = "Bytes::is_empty")]
    pub range_end: Bytes,
    /// 0: the latest revision.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    /// 0: no lease.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub prev_kv: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    pub key: Bytes,
    #[serde(default, skip_serializing_if = "Bytes::is_empty")]
    pub range_end: Bytes,
    #[serde(default, skip_serializing_if = "is_false")]
    pub prev_kv: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    #[serde(default)]
    pub compare: Vec<Compare>,
    #[serde(default)]
    pub success: Vec<TxnOp>,
    #[serde(default)]
    pub failure: Vec<TxnOp>,
}

/// One request of a txn branch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOp {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRequest),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub key: Bytes,
    #[serde(default, skip_serializing_if = "Bytes::is_empty")]
    pub range_end: Bytes,
    pub result: CompareResult,
    pub target: CompareTarget,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareResult {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// What a compare looks at, and the operand it is compared with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CompareTarget {
    Value(Bytes),
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Lease(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchFilter {
    NoPut,
    NoDelete,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchRequest {
    /// Chosen by the recorder, unique in the history: ties `watch_response` lines to this watch.
    pub watcher: u64,
    pub key: Bytes,
    #[serde(default, skip_serializing_if = "Bytes::is_empty")]
    pub range_end: Bytes,
    /// 0: from the next revision.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_revision: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub prev_kv: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub progress_notify: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<WatchFilter>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease: i64,
}

/// What the client received; the variant matches the request's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Range {
        header_revision: i64,
        #[serde(default)]
        kvs: Vec<KeyValue>,
    },
    Put {
        header_revision: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_kv: Option<KeyValue>,
    },
    Delete {
        header_revision: i64,
        deleted: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        prev_kvs: Vec<KeyValue>,
    },
    Txn {
        header_revision: i64,
        succeeded: bool,
        #[serde(default)]
        responses: Vec<TxnOpResponse>,
    },
    LeaseGrant {
        header_revision: i64,
        id: i64,
        ttl_s: i64,
    },
    LeaseRevoke {
        header_revision: i64,
    },
    LeaseKeepalive {
        header_revision: i64,
        /// 0: the lease was not found.
        ttl_s: i64,
    },
    Compact {
        header_revision: i64,
    },
    Watch {
        header_revision: i64,
        watch_id: i64,
    },
    WatchResponse {
        header_revision: i64,
        watch_id: i64,
        #[serde(default)]
        events: Vec<Event>,
        #[serde(default, skip_serializing_if = "is_zero")]
        compact_revision: i64,
        #[serde(default, skip_serializing_if = "is_false")]
        canceled: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        fragment: bool,
    },
    ListTxn {
        header_revision: i64,
        /// One per micro-operation: `None` for an append, the list read for a read.
        results: Vec<Option<Vec<u64>>>,
    },
}

/// The response to one request of a txn branch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOpResponse {
    Range {
        #[serde(default)]
        kvs: Vec<KeyValue>,
    },
    Put {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_kv: Option<KeyValue>,
    },
    Delete {
        deleted: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        prev_kvs: Vec<KeyValue>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub kv: KeyValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_kv: Option<KeyValue>,
}

impl Request {
    /// The name of its `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            Request::Range(_) => "range",
            Request::Put(_) => "put",
            Request::Delete(_) => "delete",
            Request::Txn(_) => "txn",
            Request::LeaseGrant { .. } => "lease_grant",
            Request::LeaseRevoke { .. } => "lease_revoke",
            Request::LeaseKeepalive { .. } => "lease_keepalive",
            Request::Compact { .. } => "compact",
            Request::Watch(_) => "watch",
            Request::WatchResponse { .. } => "watch_response",
            Request::ListTxn { .. } => "list_txn",
            Request::LeaseExpire { .. } => "lease_expire",
        }
    }

    /// Whether it can change no state at all whatever happens: a range, or a txn whose two
    /// branches only read.
    pub fn is_read_only(&self) -> bool {
        match self {
            Request::Range(_) => true,
            Request::Txn(txn) => txn.success.iter().chain(&txn.failure).all(|op| matches!(op, TxnOp::Range(_))),
            _ => false,
        }
    }

    /// Watch lines record what watchers received; they are not requests on the key space.
    pub fn is_watch(&self) -> bool {
        matches!(self, Request::Watch(_) | Request::WatchResponse { .. })
    }

    /// List-append transactions are for the transaction-anomaly checks, not the models.
    pub fn is_list_txn(&self) -> bool {
        matches!(self, Request::ListTxn { .. })
    }
}

impl Response {
    pub fn type_name(&self) -> &'static str {
        match self {
            Response::Range { .. } => "range",
            Response::Put { .. } => "put",
            Response::Delete { .. } => "delete",
            Response::Txn { .. } => "txn",
            Response::LeaseGrant { .. } => "lease_grant",
            Response::LeaseRevoke { .. } => "lease_revoke",
            Response::LeaseKeepalive { .. } => "lease_keepalive",
            Response::Compact { .. } => "compact",
            Response::Watch { .. } => "watch",
            Response::WatchResponse { .. } => "watch_response",
            Response::ListTxn { .. } => "list_txn",
        }
    }

    pub fn header_revision(&self) -> i64 {
        match self {
            Response::Range { header_revision, .. }
            | Response::Put { header_revision, .. }
            | Response::Delete { header_revision, .. }
            | Response::Txn { header_revision, .. }
            | Response::LeaseGrant { header_revision, .. }
            | Response::LeaseRevoke { header_revision }
            | Response::LeaseKeepalive { header_revision, .. }
            | Response::Compact { header_revision }
            | Response::Watch { header_revision, .. }
            | Response::WatchResponse { header_revision, .. }
            | Response::ListTxn { header_revision, .. } => *header_revision,
        }
    }
}

impl TxnOp {
    pub fn type_name(&self) -> &'static str {
        match self {
            TxnOp::Range(_) => "range",
            TxnOp::Put(_) => "put",
            TxnOp::Delete(_) => "delete",
        }
    }
}

impl TxnOpResponse {
    pub fn type_name(&self) -> &'static str {
        match self {
            TxnOpResponse::Range { .. } => "range",
            TxnOpResponse::Put { .. } => "put",
            TxnOpResponse::Delete { .. } => "delete",
        }
    }
}

impl Operation {
    /// Checks what serde cannot: the times are ordered, `output` is present exactly when the
    /// outcome is `ok` and answers the request (same type; for a txn, one response of the right
    /// type per request of the branch that ran), and watch responses are `ok` with equal times.
    pub fn validate(&self) -> Result<(), String> {
        if self.return_ns < self.call_ns {
            return Err(format!("return_ns {} is before call_ns {}", self.return_ns, self.call_ns));
        }
        if let Request::LeaseExpire { .. } = self.op {
            return Err("lease_expire is the checker's stand-in for an expiry, not a request".into());
        }
        match (self.outcome, &self.output) {
            (Outcome::Ok, None) => return Err("outcome \"ok\" needs an output".into()),
            (Outcome::Failed | Outcome::Indeterminate, Some(_)) => {
                return Err("only an \"ok\" outcome may have an output".into());
            }
            _ => {}
        }
        if let Request::WatchResponse { .. } = self.op {
            if self.outcome != Outcome::Ok {
                return Err("a watch_response is something received: its outcome is \"ok\"".into());
            }
            if self.call_ns != self.return_ns {
                return Err("a watch_response has call_ns == return_ns (the time it arrived)".into());
            }
        }
        let Some(output) = &self.output else { return Ok(()) };
        if output.type_name() != self.op.type_name() {
            return Err(format!("a {} request has a {} output", self.op.type_name(), output.type_name()));
        }
        if let (Request::Txn(txn), Response::Txn { succeeded, responses, .. }) = (&self.op, output) {
            let branch = if *succeeded { &txn.success } else { &txn.failure };
            if branch.len() != responses.len() {
                return Err(format!(
                    "the txn's {} branch has {} requests but the output {} responses",
                    if *succeeded { "success" } else { "failure" },
                    branch.len(),
                    responses.len()
                ));
            }
            for (i, (op, response)) in branch.iter().zip(responses).enumerate() {
                if op.type_name() != response.type_name() {
                    return Err(format!(
                        "txn response {i} is a {} but request {i} of the branch is a {}",
                        response.type_name(),
                        op.type_name()
                    ));
                }
            }
        }
        if let (Request::ListTxn { ops }, Response::ListTxn { results, .. }) = (&self.op, output) {
            if ops.len() != results.len() {
                return Err(format!("the list_txn has {} micro-operations but {} results", ops.len(), results.len()));
            }
            for (i, (op, result)) in ops.iter().zip(results).enumerate() {
                match (op, result) {
                    (ListOp::Append { .. }, None) | (ListOp::Read { .. }, Some(_)) => {}
                    (ListOp::Append { .. }, Some(_)) => {
                        return Err(format!("result {i} answers an append: it is null"))
                    }
                    (ListOp::Read { .. }, None) => return Err(format!("result {i} answers a read: it is a list")),
                }
            }
        }
        Ok(())
    }

    /// The operation as one JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and nothing is
        // a non-finite float.
        serde_json::to_string(self).expect("an Operation always serializes")
    }
}

/// Why a history could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// Line `line` (counting from 1) is not a valid operation.
    Line {
        line: usize,
        message: String,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "reading the history: {e}"),
            ReadError::Line { line, message } => write!(f, "line {line}: {message}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads a history: one [`Operation`] per line, each validated. Operation `i` of the result
/// is line `i + 1` of the input.
pub fn read_history(reader: impl BufRead) -> Result<Vec<Operation>, ReadError> {
    let mut ops = Vec::new();
    // An empty line is an error unless nothing but empty lines follow it (a trailing newline
    // or two): remember where the run of empty lines started.
    let mut empty_since: Option<usize> = None;
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line.map_err(ReadError::Io)?;
        let text = line.strip_suffix('\r').unwrap_or(&line);
        if text.trim().is_empty() {
            empty_since.get_or_insert(line_number);
            continue;
        }
        if let Some(empty) = empty_since {
            return Err(ReadError::Line {
                line: empty,
                message: "empty line (each line is one operation; its id is its line number - 1)".into(),
            });
        }
        let op = parse_line(text).map_err(|message| ReadError::Line { line: line_number, message })?;
        ops.push(op);
    }
    Ok(ops)
}

/// [`read_history`] over a string.
pub fn parse_history(text: &str) -> Result<Vec<Operation>, ReadError> {
    read_history(text.as_bytes())
}

/// Parses and validates one line.
pub fn parse_line(line: &str) -> Result<Operation, String> {
    let op: Operation = serde_json::from_str(line).map_err(|e| e.to_string())?;
    op.validate()?;
    Ok(op)
}

/// Writes a history, one operation per line.
pub fn write_history(mut writer: impl Write, ops: &[Operation]) -> io::Result<()> {
    for op in ops {
        writer.write_all(op.to_json_line().as_bytes())?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

// Short human-readable forms for reports: `put "a"="1"`, `range "a".."b"`, `rev 5 [..]`.

fn fmt_range(f: &mut fmt::Formatter<'_>, key: &Bytes, range_end: &Bytes) -> fmt::Result {
    if range_end.is_empty() {
        write!(f, "{key}")
    } else if range_end.as_slice() == [0] {
        write!(f, "{key}..")
    } else {
        write!(f, "{key}..{range_end}")
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} (mod {}, create {}, ver {}",
            self.key, self.value, self.mod_revision, self.create_revision, self.version
        )?;
        if self.lease != 0 {
            write!(f, ", lease {}", self.lease)?;
        }
        f.write_str(")")
    }
}

fn fmt_kvs(f: &mut fmt::Formatter<'_>, kvs: &[KeyValue]) -> fmt::Result {
    f.write_str("[")?;
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{kv}")?;
    }
    f.write_str("]")
}

impl fmt::Display for TxnOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnOp::Range(r) => fmt::Display::fmt(&Request::Range(r.clone()), f),
            TxnOp::Put(p) => fmt::Display::fmt(&Request::Put(p.clone()), f),
            TxnOp::Delete(d) => fmt::Display::fmt(&Request::Delete(d.clone()), f),
        }
    }
}

impl fmt::Display for Compare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, operand) = match &self.target {
            CompareTarget::Value(v) => ("value", v.to_string()),
            CompareTarget::Version(n) => ("version", n.to_string()),
            CompareTarget::CreateRevision(n) => ("create", n.to_string()),
            CompareTarget::ModRevision(n) => ("mod", n.to_string()),
            CompareTarget::Lease(n) => ("lease", n.to_string()),
        };
        write!(f, "{name}(")?;
        fmt_range(f, &self.key, &self.range_end)?;
        let op = match self.result {
            CompareResult::Equal => "==",
            CompareResult::NotEqual => "!=",
            CompareResult::Greater => ">",
            CompareResult::Less => "<",
        };
        write!(f, ") {op} {operand}")
    }
}

fn fmt_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T], sep: &str) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Range(r) => {
                f.write_str("range ")?;
                fmt_range(f, &r.key, &r.range_end)?;
                if r.revision != 0 {
                    write!(f, " @{}", r.revision)?;
                }
                Ok(())
            }
            Request::Put(p) => {
                write!(f, "put {}={}", p.key, p.value)?;
                if p.lease != 0 {
                    write!(f, " lease {}", p.lease)?;
                }
                Ok(())
            }
            Request::Delete(d) => {
                f.write_str("delete ")?;
                fmt_range(f, &d.key, &d.range_end)
            }
            Request::Txn(t) => {
                f.write_str("txn if ")?;
                fmt_list(f, &t.compare, " && ")?;
                f.write_str(" then ")?;
                fmt_list(f, &t.success, "; ")?;
                f.write_str(" else ")?;
                fmt_list(f, &t.failure, "; ")
            }
            Request::LeaseGrant { ttl_s, id } => write!(f, "lease_grant ttl {ttl_s} s id {id}"),
            Request::LeaseRevoke { id } => write!(f, "lease_revoke {id}"),
            Request::LeaseKeepalive { id } => write!(f, "lease_keepalive {id}"),
            Request::LeaseExpire { id } => write!(f, "(lease {id} expires)"),
            Request::Compact { revision, .. } => write!(f, "compact {revision}"),
            Request::Watch(w) => {
                write!(f, "watch #{} ", w.watcher)?;
                fmt_range(f, &w.key, &w.range_end)?;
                write!(f, " from {}", w.start_revision)
            }
            Request::WatchResponse { watcher } => write!(f, "watch_response #{watcher}"),
            Request::ListTxn { ops } => {
                f.write_str("list_txn [")?;
                fmt_list(f, ops, ", ")?;
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for ListOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListOp::Append { key, value } => write!(f, "append {key} {value}"),
            ListOp::Read { key } => write!(f, "read {key}"),
        }
    }
}

impl fmt::Display for TxnOpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnOpResponse::Range { kvs } => fmt_kvs(f, kvs),
            TxnOpResponse::Put { prev_kv: None } => f.write_str("ok"),
            TxnOpResponse::Put { prev_kv: Some(kv) } => write!(f, "prev {kv}"),
            TxnOpResponse::Delete { deleted, .. } => write!(f, "deleted {deleted}"),
        }
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rev {} ", self.header_revision())?;
        match self {
            Response::Range { kvs, .. } => fmt_kvs(f, kvs),
            Response::Put { prev_kv: None, .. } => f.write_str("ok"),
            Response::Put { prev_kv: Some(kv), .. } => write!(f, "prev {kv}"),
            Response::Delete { deleted, .. } => write!(f, "deleted {deleted}"),
            Response::Txn { succeeded, responses, .. } => {
                f.write_str(if *succeeded { "succeeded: " } else { "failed compare: " })?;
                fmt_list(f, responses, "; ")
            }
            Response::LeaseGrant { id, ttl_s, .. } => write!(f, "lease {id} ttl {ttl_s} s"),
            Response::LeaseKeepalive { ttl_s, .. } => write!(f, "ttl {ttl_s} s"),
            Response::LeaseRevoke { .. } | Response::Compact { .. } => f.write_str("ok"),
            Response::Watch { watch_id, .. } => write!(f, "watch id {watch_id}"),
            Response::WatchResponse { watch_id, events, .. } => {
                write!(f, "watch id {watch_id}, {} events", events.len())
            }
            Response::ListTxn { results, .. } => {
                let shown: Vec<String> = results
                    .iter()
                    .map(|r| match r {
                        None => "ok".to_string(),
                        Some(list) => format!("{list:?}"),
                    })
                    .collect();
                write!(f, "[{}]", shown.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = r#"{"client":1,"call_ns":100,"return_ns":900,"op":{"type":"put","key":"a","value":"1","prev_kv":true},"outcome":"ok","output":{"type":"put","header_revision":2}}
{"client":2,"call_ns":200,"return_ns":700,"op":{"type":"range","key":"a"},"outcome":"ok","output":{"type":"range","header_revision":2,"kvs":[{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}]}}
{"client":3,"call_ns":300,"return_ns":5000,"op":{"type":"put","key":"b","value":"x"},"outcome":"indeterminate","error":"deadline exceeded"}
{"client":2,"call_ns":1000,"return_ns":1400,"op":{"type":"txn","compare":[{"key":"a","result":"equal","target":{"mod_revision":2}}],"success":[{"type":"put","key":"a","value":"2"}],"failure":[{"type":"range","key":"a"}]},"outcome":"ok","output":{"type":"txn","header_revision":3,"succeeded":true,"responses":[{"type":"put"}]}}
{"client":1,"call_ns":1000,"return_ns":1100,"op":{"type":"delete","key":"a","range_end":"\u0000"},"outcome":"failed","error":"etcdserver: too many requests"}
{"client":4,"call_ns":50,"return_ns":60,"op":{"type":"watch","watcher":1,"key":"a","start_revision":1},"outcome":"ok","output":{"type":"watch","header_revision":1,"watch_id":0}}
{"client":4,"call_ns":950,"return_ns":950,"op":{"type":"watch_response","watcher":1},"outcome":"ok","output":{"type":"watch_response","header_revision":2,"watch_id":0,"events":[{"type":"put","kv":{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}}]}}
{"client":5,"call_ns":2000,"return_ns":2500,"op":{"type":"list_txn","ops":[{"f":"append","key":"x","value":3},{"f":"read","key":"y"}]},"outcome":"ok","output":{"type":"list_txn","header_revision":4,"results":[null,[1,2]]}}
"#;

    /// The examples of the module docs (kept in step by hand) read, and write back identically.
    #[test]
    fn doc_examples_round_trip() {
        let ops = parse_history(EXAMPLES).unwrap();
        assert_eq!(ops.len(), 8);
        assert_eq!(ops[2].outcome, Outcome::Indeterminate);
        assert_eq!(
            ops[4].op,
            Request::Delete(DeleteRequest { key: "a".into(), range_end: Bytes::from(vec![0]), prev_kv: false })
        );
        let mut out = Vec::new();
        write_history(&mut out, &ops).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), EXAMPLES);
    }

    #[test]
    fn the_other_ops_round_trip() {
        let lines = [
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"lease_grant","ttl_s":10},"outcome":"ok","output":{"type":"lease_grant","header_revision":1,"id":7,"ttl_s":10}}"#,
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"lease_revoke","id":7},"outcome":"ok","output":{"type":"lease_revoke","header_revision":1}}"#,
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"lease_keepalive","id":7},"outcome":"ok","output":{"type":"lease_keepalive","header_revision":1,"ttl_s":0}}"#,
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"compact","revision":5,"physical":true},"outcome":"ok","output":{"type":"compact","header_revision":9}}"#,
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"put","key":[255,0],"value":"v","lease":7},"outcome":"ok","output":{"type":"put","header_revision":9,"prev_kv":{"key":[255,0],"value":"u","create_revision":2,"mod_revision":3,"version":2,"lease":7}}}"#,
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"txn","compare":[{"key":"a","range_end":"b","result":"not_equal","target":{"value":"x"}},{"key":"a","result":"less","target":{"version":3}},{"key":"a","result":"greater","target":{"create_revision":1}},{"key":"a","result":"equal","target":{"lease":0}}],"success":[{"type":"delete","key":"a","prev_kv":true}],"failure":[]},"outcome":"ok","output":{"type":"txn","header_revision":4,"succeeded":true,"responses":[{"type":"delete","deleted":1,"prev_kvs":[{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}]}]}}"#,
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"watch","watcher":3,"key":"a","range_end":"\u0000","prev_kv":true,"progress_notify":true,"filters":["no_put","no_delete"]},"outcome":"indeterminate"}"#,
            r#"{"client":1,"call_ns":2,"return_ns":2,"op":{"type":"watch_response","watcher":3},"outcome":"ok","output":{"type":"watch_response","header_revision":5,"watch_id":1,"events":[{"type":"delete","kv":{"key":"a","value":"","create_revision":0,"mod_revision":5,"version":0},"prev_kv":{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}}],"compact_revision":2,"canceled":true,"fragment":true}}"#,
        ];
        for line in lines {
            let op = parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(op.to_json_line(), line);
        }
    }

    #[test]
    fn errors_name_the_line() {
        let good = r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"range","key":"a"},"outcome":"failed"}"#;
        let cases = [
            (format!("{good}\n{{not json\n"), 2, "key must be a string"),
            (format!("{good}\n\n{good}\n"), 2, "empty line"),
            (
                format!("{good}\n{}\n", good.replace("\"key\":\"a\"", "\"key\":\"a\",\"rang_end\":\"b\"")),
                2,
                "unknown field",
            ),
            (format!("{}\n", good.replace("\"return_ns\":2", "\"return_ns\":0")), 1, "before call_ns"),
            (format!("{}\n", good.replace("failed", "ok")), 1, "needs an output"),
            (
                format!(
                    "{}\n",
                    good.replace("\"failed\"", "\"ok\",\"output\":{\"type\":\"put\",\"header_revision\":1}")
                ),
                1,
                "a range request has a put output",
            ),
            (format!("{}\n", good.replace("range", "scan")), 1, "unknown variant"),
            (format!("{}\n", good.replace("\"key\":\"a\"", "\"key\":[256]")), 1, "invalid value"),
            (format!("{}\n", good.replace("\"call_ns\":1", "\"call_ns\":-1")), 1, "invalid value"),
        ];
        for (text, line, needle) in cases {
            match parse_history(&text) {
                Err(ReadError::Line { line: l, message }) => {
                    assert_eq!(l, line, "{text}: {message}");
                    assert!(message.contains(needle), "{text}: {message:?} lacks {needle:?}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Trailing empty lines are fine.
        assert_eq!(parse_history(&format!("{good}\n\n\r\n")).unwrap().len(), 1);
    }

    #[test]
    fn txn_responses_must_answer_the_branch() {
        let line = r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"txn","compare":[],"success":[{"type":"put","key":"a","value":"1"}],"failure":[]},"outcome":"ok","output":{"type":"txn","header_revision":2,"succeeded":true,"responses":[]}}"#;
        assert!(parse_line(line).unwrap_err().contains("1 requests but the output 0"));
        let line = line.replace("\"responses\":[]", "\"responses\":[{\"type\":\"range\"}]");
        assert!(parse_line(&line).unwrap_err().contains("is a range but request 0"));
    }

    #[test]
    fn bytes_display_escapes() {
        assert_eq!(Bytes::from("a\"b\n").to_string(), r#""a\"b\n""#);
        assert_eq!(Bytes::from(vec![b'a', 0xff, 0]).to_string(), r#""a\xff\0""#);
    }
}
