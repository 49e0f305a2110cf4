//! # detcd-checks
//!
//! Jepsen-like checkers over recorded histories of etcd v3 clients. Of detcd it uses only
//! `detcd-proto` (and the recorder talks plain etcd v3 gRPC), so it can record and check
//! histories of any etcd, not just detcd.
//!
//! - [`history`]: the history format — JSON lines, one client operation per line, documented
//!   with examples — with its reader and writer.
//! - [`linearizability`]: a Wing–Gong/Lowe search (porcupine's algorithm: memoisation of
//!   (linearized set, model state), P-compositionality, indeterminate operations, a time
//!   budget whose exhaustion gives `Unknown`), generic over a [`linearizability::Model`].
//! - [`models`]: a per-key register model and an etcd model with the global revision (range,
//!   put, delete, txn; header revisions checked), leases (with a sound treatment of time-driven
//!   expiry), compaction and ranges at past revisions.
//! - [`check`]: history → linearizability verdict.
//! - [`watch`]: the watch guarantees (ordered, unique, atomic, bookmarkable, reliable,
//!   resumable, prev_kv, filters, agreement).
//! - [`elle`]: Elle-style anomaly detection on list-append transactions (`list_txn` lines).
//! - [`suite`]: [`check_all`], every checker that applies, one verdict each; [`report`]: text
//!   and a self-contained HTML page. The binary `detcd-check check FILE…` runs these.
//! - [`workload`]: seeded clients of the etcd v3 gRPC API that record histories (register, txn,
//!   list-append, watch, lease workloads); the same code runs under tokio and in the simulator.
//! - `record` (not in a `--cfg madsim` build): runs workload clients against a live cluster,
//!   behind `detcd-check record`.

pub mod check;
pub mod elle;
pub mod history;
pub mod linearizability;
pub mod models;
#[cfg(not(madsim))]
pub mod record;
pub mod report;
pub mod suite;
pub mod watch;
pub mod workload;

pub use check::{check_history, CheckError, HistoryCheck, ModelKind};
pub use linearizability::{CheckOptions, Verdict};
pub use suite::{check_all, SuiteOptions, Verdicts};
