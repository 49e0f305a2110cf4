//! One entry point for every checker: [`check_all`] runs those that apply to a history and gives
//! one verdict per checker ([`Verdicts`]); [`crate::report`] turns them into text and HTML. The
//! CLI, the recorder and the simulator all call this, so they judge histories alike.
//!
//! - linearizability (the chosen model) when the history has KV or lease operations;
//! - the watch checks ([`crate::watch`]) when it has `watch` / `watch_response` lines;
//! - the Elle-style transaction checks ([`crate::elle`]) when it has `list_txn` lines.

use crate::check::{check_history, CheckError, HistoryCheck, ModelKind};
use crate::elle::{check_list_append, ElleReport};
use crate::history::Operation;
use crate::linearizability::{CheckOptions, Verdict};
use crate::watch::{check_watches_with, WatchOptions, WatchReport};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteOptions {
    pub model: ModelKind,
    pub linearizability: CheckOptions,
    pub watch: WatchOptions,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            model: ModelKind::Etcd,
            linearizability: CheckOptions::default(),
            watch: WatchOptions::default(),
        }
    }
}

/// The verdict of each checker that applied (`None`: the history has nothing for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdicts {
    pub model: ModelKind,
    pub ops_total: usize,
    /// `Err`: the model cannot judge the history (a failure, never a pass).
    pub linearizability: Option<Result<HistoryCheck, CheckError>>,
    pub watch: Option<WatchReport>,
    pub elle: Option<ElleReport>,
}

/// How one checker's verdict counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Violation,
    /// Out of budget, or the history could not be checked: a failure too.
    Unknown,
}

impl Verdicts {
    /// True when every checker that applied passed (and at least one applied: an empty history
    /// passes, since it shows nothing wrong).
    pub fn passed(&self) -> bool {
        [self.linearizability_outcome(), self.watch_outcome(), self.elle_outcome()]
            .into_iter()
            .all(|o| o.is_none_or(|o| o == Outcome::Pass))
    }

    pub fn linearizability_outcome(&self) -> Option<Outcome> {
        self.linearizability.as_ref().map(|r| match r {
            Ok(c) => match c.result.verdict {
                Verdict::Linearizable => Outcome::Pass,
                Verdict::NotLinearizable(_) => Outcome::Violation,
                Verdict::Unknown { .. } => Outcome::Unknown,
            },
            Err(_) => Outcome::Unknown,
        })
    }

    pub fn watch_outcome(&self) -> Option<Outcome> {
        self.watch.as_ref().map(|w| match (w.violations.is_empty(), w.errors.is_empty()) {
            (false, _) => Outcome::Violation,
            (true, false) => Outcome::Unknown,
            (true, true) => Outcome::Pass,
        })
    }

    pub fn elle_outcome(&self) -> Option<Outcome> {
        self.elle.as_ref().map(|e| match (e.anomalies.is_empty(), e.errors.is_empty()) {
            (false, _) => Outcome::Violation,
            (true, false) => Outcome::Unknown,
            (true, true) => Outcome::Pass,
        })
    }

    /// The operation ids each failed checker blames, for marking them in reports.
    pub fn blamed_ops(&self) -> Vec<usize> {
        let mut ids = Vec::new();
        if let Some(Ok(c)) = &self.linearizability {
            if let Verdict::NotLinearizable(v) = &c.result.verdict {
                ids.extend(v.involved.iter().map(|o| o.id));
            }
        }
        if let Some(w) = &self.watch {
            ids.extend(w.violations.iter().flat_map(|v| v.ops.iter().copied()));
        }
        if let Some(e) = &self.elle {
            ids.extend(e.anomalies.iter().flat_map(|a| a.ops.iter().copied()));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Runs every checker that applies to `ops` (operation `i` has id `i`).
pub fn check_all(ops: &[Operation], options: &SuiteOptions) -> Verdicts {
    let has_kv = ops.iter().any(|op| !op.op.is_watch() && !op.op.is_list_txn());
    let has_watch = ops.iter().any(|op| op.op.is_watch());
    let has_list = ops.iter().any(|op| op.op.is_list_txn());
    Verdicts {
        model: options.model,
        ops_total: ops.len(),
        linearizability: has_kv.then(|| check_history(ops, options.model, &options.linearizability)),
        watch: has_watch.then(|| check_watches_with(ops, &options.watch)),
        elle: has_list.then(|| check_list_append(ops)),
    }
}
