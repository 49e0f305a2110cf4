//! Sequential models of etcd for the linearizability checker, over the history's own
//! [`Request`] and [`Response`] types.
//!
//! - [`RegisterModel`]: each key is an independent register (value and version); histories of
//!   single-key ranges, puts, deletes and single-key compare-and-set txns. Partitioned by key,
//!   so large histories check fast. It knows nothing of revisions and checks none.
//! - [`EtcdModel`]: the whole key space with etcd's global revision; ranges over key ranges,
//!   puts, deletes, txns; every field of every response checked, header revisions included. One
//!   partition.
//!
//! The etcd model also holds leases (with a sound treatment of expiry), compaction and the
//! store's past revisions; the register model has none of them: [`HistoryModel::supports`]
//! refuses such operations, so that a history containing them is an error rather than a silent
//! pass.

mod etcd;
mod register;

use std::cmp::Ordering;

pub use etcd::{ClockJump, EtcdModel, EtcdState, KeyFacts, KeyState, LeaseClockSlack, LeaseState, Snapshot};
pub use register::{RegisterModel, RegisterState, RegisterValue};

use crate::history::{CompareResult, Request, Response};
use crate::linearizability::Model;

/// A [`Model`] of etcd requests that says which requests it can judge.
pub trait HistoryModel: Model<Input = Request, Output = Response> {
    /// `Err(why)` when the model cannot judge `request`; the checker then refuses the history.
    fn supports(&self, request: &Request) -> Result<(), String>;
}

/// Whether `ordering` (of the key's field against the compare's operand) satisfies `result`.
fn compare_holds(result: CompareResult, ordering: Ordering) -> bool {
    match result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// Registers hold no leases (a lease spans keys): a put with one is refused, never judged without.
fn check_put(p: &crate::history::PutRequest) -> Result<(), String> {
    if p.lease != 0 {
        return Err("a put with a lease: leases span keys: use the etcd model".into());
    }
    Ok(())
}
