//! Watch checks: what each watcher received (`watch` and `watch_response` lines) against etcd's
//! watch guarantees, the other watchers and the acknowledged writes of the history.
//!
//! The truth about revision `r` is the union of what every watcher saw at `r` and what the
//! acknowledged writes imply (an `ok` put answered at header revision `r` wrote its value at `r`;
//! a delete of one key that deleted 1, or any delete with `prev_kvs`, deleted those keys at `r`).
//! It is partial — a range delete without `prev_kvs` or a lease expiry that no watcher saw is
//! unknown — so every check below only flags what the known part proves wrong.
//!
//! Per watcher, responses taken in arrival order (`call_ns`, then line order):
//!
//! - **ordered**: event revisions strictly increase from one response to the next (equal only
//!   when the earlier response is a `fragment`) and never decrease within a response;
//! - **unique**: no (revision, key) event twice;
//! - **atomic**: the events of one revision come in one response (unless fragmented), and a
//!   watcher that got some events of a revision got all of those in its range;
//! - **bookmarkable**: a progress notification (no events, not canceled) is never behind an event
//!   already delivered, and no later event has a revision at or below it;
//! - **reliable**: every known event in the watcher's range (and not filtered) with a revision
//!   from its start up to the last revision it was told about — its last event or its latest
//!   progress notification, whichever is later — was delivered (header revisions of event
//!   responses are not used: etcd may send them ahead of events it still owes);
//! - **resumable**: with a `start_revision`, no event below it; without, no event at or below the
//!   creation's header revision; a cancellation for compaction only when the next revision the
//!   watcher needed is below the `compact_revision` (etcd's rule), and nothing after a cancel;
//! - **prev_kv**: present only when asked; when present it is the key's previous version: below
//!   the event, equal to the known event at its revision (which is a put), with no known event on
//!   the key in between; when absent although asked, it is a violation if this watcher itself
//!   delivered the key's previous put;
//! - **filters**: no event outside the watched range, no put with `no_put`, no delete with
//!   `no_delete`;
//! - **agreement**: two watchers, or a watcher and an acknowledged write, never disagree on an
//!   event of a revision.
//!
//! Not checked: whether a cancellation for compaction matches a `compact` request of the history
//! (the cluster may compact on its own).
//!
//! Answers to a progress *request* (`watch_id` -1, for the whole stream) are by default neither
//! bookmarks nor "told about": etcd 3.4 reads the store's revision when the request arrives and
//! sends the answer on its control channel, unordered with the events still queued for the
//! stream (etcd issue #15220, fixed in later releases), so a correct 3.4 may send one behind an
//! event already delivered, or before events at or below it. [`WatchOptions::ordered_progress_requests`]
//! checks them like the watcher's own progress notifications (which etcd sends in order).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::history::{
    Bytes, Event, EventType, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResponse, WatchFilter,
    WatchRequest,
};

/// Which guarantee a [`WatchViolation`] breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guarantee {
    Ordered,
    Unique,
    Atomic,
    Bookmarkable,
    Reliable,
    Resumable,
    PrevKv,
    Filter,
    Agreement,
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::Ordered => "ordered",
            Guarantee::Unique => "unique",
            Guarantee::Atomic => "atomic",
            Guarantee::Bookmarkable => "bookmarkable",
            Guarantee::Reliable => "reliable",
            Guarantee::Resumable => "resumable",
            Guarantee::PrevKv => "prev_kv",
            Guarantee::Filter => "filter",
            Guarantee::Agreement => "agreement",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchViolation {
    pub watcher: u64,
    pub guarantee: Guarantee,
    /// The lines involved (operation ids): the watch, the responses, the writes.
    pub ops: Vec<usize>,
    pub message: String,
}

impl fmt::Display for WatchViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: Vec<String> = self.ops.iter().map(|o| o.to_string()).collect();
        write!(f, "watcher {}: {}: {} (ops {})", self.watcher, self.guarantee, self.message, ops.join(", "))
    }
}

/// The result of [`check_watches`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchReport {
    pub watchers: usize,
    pub responses: usize,
    pub events: usize,
    /// Lines that cannot be checked (a response of a watcher with no `watch` line): the history is
    /// then not passed.
    pub errors: Vec<String>,
    pub violations: Vec<WatchViolation>,
}

impl WatchReport {
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.violations.is_empty()
    }
}

/// Caps the events listed in one violation message.
const EVENTS_LISTED: usize = 8;

/// An event of the truth: what is known to have happened to a key at a revision.
#[derive(Clone, Debug)]
struct Known {
    kind: EventType,
    /// The full key-value, when a watcher delivered it.
    kv: Option<KeyValue>,
    /// The value written, when only an acknowledged put is known.
    value: Option<Bytes>,
    /// Who told: a watcher (`Some`) or a write.
    watcher: Option<u64>,
    op: usize,
}

fn in_range(key: &Bytes, start: &Bytes, end: &Bytes) -> bool {
    if end.is_empty() {
        key == start
    } else if end.as_slice() == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

fn event_revision(e: &Event) -> i64 {
    e.kv.mod_revision
}

fn describe_event(rev: i64, key: &Bytes, kind: EventType) -> String {
    format!("{} {key} @{rev}", if kind == EventType::Put { "put" } else { "delete" })
}

struct Watcher<'h> {
    create: Option<(usize, &'h Operation, &'h WatchRequest)>,
    responses: Vec<(usize, &'h Operation)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// Hold answers to progress requests (`watch_id` -1) to the bookmark guarantees too: right
    /// for etcd releases that order them with the events, not for etcd 3.4 (see the module docs).
    pub ordered_progress_requests: bool,
}

/// The `watch_id` of etcd's answer to a progress request, which is for the whole stream.
const STREAM_WATCH_ID: i64 = -1;

/// [`check_watches_with`] the default options.
pub fn check_watches(ops: &[Operation]) -> WatchReport {
    check_watches_with(ops, &WatchOptions::default())
}

/// Runs every watch check over the `watch` / `watch_response` lines of `ops` (operation `i` has
/// id `i`).
pub fn check_watches_with(ops: &[Operation], options: &WatchOptions) -> WatchReport {
    let mut report = WatchReport::default();
    let mut watchers: BTreeMap<u64, Watcher<'_>> = BTreeMap::new();
    for (id, op) in ops.iter().enumerate() {
        match &op.op {
            Request::Watch(w) => {
                let entry = watchers.entry(w.watcher).or_insert(Watcher { create: None, responses: Vec::new() });
                if entry.create.is_some() {
                    report.errors.push(format!("op {id}: watcher {} is created twice", w.watcher));
                }
                entry.create = Some((id, op, w));
            }
            Request::WatchResponse { watcher } => {
                watchers
                    .entry(*watcher)
                    .or_insert(Watcher { create: None, responses: Vec::new() })
                    .responses
                    .push((id, op));
            }
            _ => {}
        }
    }
    report.watchers = watchers.len();
    let mut truth: BTreeMap<(i64, Bytes), Known> = BTreeMap::new();
    learn_from_writes(ops, &mut truth);
    for (&watcher, w) in &mut watchers {
        w.responses.sort_by_key(|&(id, op)| (op.call_ns, id));
        report.responses += w.responses.len();
        if w.create.is_none() && !w.responses.is_empty() {
            report.errors.push(format!(
                "watcher {watcher} has responses (first op {}) but no watch line: its range is unknown",
                w.responses[0].0
            ));
        }
        for &(id, op) in &w.responses {
            for e in events_of(op) {
                report.events += 1;
                learn_from_watcher(watcher, id, e, &mut truth, &mut report.violations);
            }
        }
    }
    for (&watcher, w) in &watchers {
        if let Some(create) = w.create {
            check_watcher(watcher, create, &w.responses, &truth, options, &mut report.violations);
        }
    }
    report
}

fn events_of(op: &Operation) -> &[Event] {
    match &op.output {
        Some(Response::WatchResponse { events, .. }) => events,
        _ => &[],
    }
}

/// Records what acknowledged writes imply.
fn learn_from_writes(ops: &[Operation], truth: &mut BTreeMap<(i64, Bytes), Known>) {
    for (id, op) in ops.iter().enumerate() {
        let (Outcome::Ok, Some(output)) = (op.outcome, &op.output) else { continue };
        let rev = output.header_revision();
        let mut note = |key: &Bytes, kind: EventType, value: Option<&Bytes>| {
            truth.insert((rev, key.clone()), Known { kind, kv: None, value: value.cloned(), watcher: None, op: id });
        };
        match (&op.op, output) {
            (Request::Put(p), Response::Put { .. }) => note(&p.key, EventType::Put, Some(&p.value)),
            (Request::Delete(d), Response::Delete { deleted, prev_kvs, .. }) => {
                if d.range_end.is_empty() && *deleted == 1 {
                    note(&d.key, EventType::Delete, None);
                }
                for kv in prev_kvs {
                    note(&kv.key, EventType::Delete, None);
                }
            }
            (Request::Txn(t), Response::Txn { succeeded, responses, .. }) => {
                let branch = if *succeeded { &t.success } else { &t.failure };
                for (request, response) in branch.iter().zip(responses) {
                    match (request, response) {
                        (TxnOp::Put(p), _) => note(&p.key, EventType::Put, Some(&p.value)),
                        (TxnOp::Delete(d), TxnOpResponse::Delete { deleted, prev_kvs }) => {
                            if d.range_end.is_empty() && *deleted == 1 {
                                note(&d.key, EventType::Delete, None);
                            }
                            for kv in prev_kvs {
                                note(&kv.key, EventType::Delete, None);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// Adds a delivered event to the truth, or checks it against what is known.
fn learn_from_watcher(
    watcher: u64,
    id: usize,
    e: &Event,
    truth: &mut BTreeMap<(i64, Bytes), Known>,
    violations: &mut Vec<WatchViolation>,
) {
    let key = (event_revision(e), e.kv.key.clone());
    let Some(known) = truth.get_mut(&key) else {
        truth.insert(key, Known { kind: e.kind, kv: Some(e.kv.clone()), value: None, watcher: Some(watcher), op: id });
        return;
    };
    let disagrees = known.kind != e.kind
        || known.kv.as_ref().is_some_and(|kv| *kv != e.kv)
        || (e.kind == EventType::Put && known.value.as_ref().is_some_and(|v| *v != e.kv.value));
    if disagrees {
        let who = match known.watcher {
            Some(other) => format!("watcher {other} got {}", describe_known(known)),
            None => format!("the acknowledged write op {} did {}", known.op, describe_known(known)),
        };
        violations.push(WatchViolation {
            watcher,
            guarantee: Guarantee::Agreement,
            ops: vec![known.op, id],
            message: format!(
                "delivered {} {}={} at revision {} but {who}",
                if e.kind == EventType::Put { "put" } else { "delete" },
                e.kv.key,
                e.kv.value,
                key.0
            ),
        });
    } else if known.kv.is_none() {
        known.kv = Some(e.kv.clone());
    }
}

fn describe_known(k: &Known) -> String {
    match (&k.kind, &k.kv, &k.value) {
        (EventType::Put, Some(kv), _) => format!("put {kv}"),
        (EventType::Put, None, Some(v)) => format!("put value {v}"),
        (EventType::Put, None, None) => "a put".into(),
        (EventType::Delete, _, _) => "a delete".into(),
    }
}

fn violation(watcher: u64, guarantee: Guarantee, ops: Vec<usize>, message: String) -> WatchViolation {
    WatchViolation { watcher, guarantee, ops, message }
}

fn check_watcher(
    watcher: u64,
    (create_id, create_op, request): (usize, &Operation, &WatchRequest),
    responses: &[(usize, &Operation)],
    truth: &BTreeMap<(i64, Bytes), Known>,
    options: &WatchOptions,
    out: &mut Vec<WatchViolation>,
) {
    let wants = |kind: EventType| match kind {
        EventType::Put => !request.filters.contains(&WatchFilter::NoPut),
        EventType::Delete => !request.filters.contains(&WatchFilter::NoDelete),
    };
    let matches = |key: &Bytes, kind: EventType| in_range(key, &request.key, &request.range_end) && wants(kind);
    // Where the watcher starts: the first revision it must deliver; None if unknown.
    let created_at = match (&create_op.outcome, &create_op.output) {
        (Outcome::Ok, Some(Response::Watch { header_revision, .. })) => Some(*header_revision),
        _ => None,
    };
    let start = if request.start_revision > 0 { Some(request.start_revision) } else { created_at.map(|h| h + 1) };

    // Delivered (revision, key) → (response index, event).
    let mut delivered: BTreeMap<(i64, Bytes), (usize, &Event)> = BTreeMap::new();
    let mut last_rev: Option<i64> = None;
    let mut last_fragment = false;
    let mut last_event_response: Option<usize> = None;
    let mut progress: Option<(usize, i64)> = None;
    let mut canceled_by: Option<usize> = None;
    let mut compacted = false;
    let mut last_put_by_key: BTreeMap<&Bytes, (i64, &KeyValue)> = BTreeMap::new();
    for (index, &(id, op)) in responses.iter().enumerate() {
        let Some(Response::WatchResponse { header_revision, watch_id, events, compact_revision, canceled, fragment }) =
            &op.output
        else {
            continue;
        };
        if events.is_empty() && !canceled && *watch_id == STREAM_WATCH_ID && !options.ordered_progress_requests {
            continue;
        }
        if let Some(cancel) = canceled_by {
            out.push(violation(
                watcher,
                Guarantee::Resumable,
                vec![cancel, id],
                format!("a response after the watch was canceled by op {cancel}"),
            ));
        }
        let mut previous_in_response: Option<i64> = None;
        for e in events {
            let rev = event_revision(e);
            let key = &e.kv.key;
            if !in_range(key, &request.key, &request.range_end) {
                out.push(violation(
                    watcher,
                    Guarantee::Filter,
                    vec![create_id, id],
                    format!("event on {key} @{rev} is outside the watched range"),
                ));
            } else if !wants(e.kind) {
                out.push(violation(
                    watcher,
                    Guarantee::Filter,
                    vec![create_id, id],
                    format!("{} though the watch filters them out", describe_event(rev, key, e.kind)),
                ));
            }
            if let Some(p) = previous_in_response {
                if rev < p {
                    out.push(violation(
                        watcher,
                        Guarantee::Ordered,
                        vec![id],
                        format!("within one response, event @{rev} comes after event @{p}"),
                    ));
                }
            } else if let Some(l) = last_rev {
                if rev < l || (rev == l && !last_fragment) {
                    let prev = last_event_response.map(|i| responses[i].0).unwrap_or(id);
                    out.push(violation(
                        watcher,
                        Guarantee::Ordered,
                        vec![prev, id],
                        format!("event @{rev} comes in a response after one with an event @{l}"),
                    ));
                }
            }
            previous_in_response = Some(rev);
            if let Some((pi, ph)) = progress {
                if rev <= ph {
                    out.push(violation(
                        watcher,
                        Guarantee::Bookmarkable,
                        vec![responses[pi].0, id],
                        format!(
                            "{} arrives after a progress notification at revision {ph}",
                            describe_event(rev, key, e.kind)
                        ),
                    ));
                }
            }
            if let Some(s) = start {
                if rev < s {
                    out.push(violation(
                        watcher,
                        Guarantee::Resumable,
                        vec![create_id, id],
                        format!("{} is before the watch's start revision {s}", describe_event(rev, key, e.kind)),
                    ));
                }
            }
            match delivered.get(&(rev, key.clone())) {
                Some(&(first, _)) => out.push(violation(
                    watcher,
                    Guarantee::Unique,
                    vec![responses[first].0, id],
                    format!("{} delivered twice", describe_event(rev, key, e.kind)),
                )),
                None => {
                    delivered.insert((rev, key.clone()), (index, e));
                }
            }
            // Atomic: the revision's other events, already delivered, must be in this response
            // or in fragments just before it.
            let split = delivered
                .range((rev, Bytes::default())..)
                .take_while(|((r, _), _)| *r == rev)
                .find(|(_, &(i, _))| i != index && !fragment_chain(responses, i, index));
            if let Some((_, &(i, _))) = split {
                out.push(violation(
                    watcher,
                    Guarantee::Atomic,
                    vec![responses[i].0, id],
                    format!("the events of revision {rev} are split over several responses (not fragments)"),
                ));
            }
            check_prev_kv(watcher, request, (create_id, id), e, truth, &last_put_by_key, out);
            match e.kind {
                EventType::Put => {
                    last_put_by_key.insert(key, (rev, &e.kv));
                }
                EventType::Delete => {
                    last_put_by_key.remove(key);
                }
            }
            last_rev = Some(last_rev.map_or(rev, |l| l.max(rev)));
            last_event_response = Some(index);
        }
        if !events.is_empty() {
            last_fragment = *fragment;
        }
        if *canceled {
            canceled_by = Some(id);
            if *compact_revision > 0 {
                compacted = true;
                let needed = last_rev.map(|l| l + 1).or(start);
                if let Some(n) = needed.filter(|&n| n >= *compact_revision) {
                    out.push(violation(
                        watcher,
                        Guarantee::Resumable,
                        vec![create_id, id],
                        format!(
                            "canceled for compaction at revision {compact_revision}, but the next revision it \
                             needed, {n}, was not compacted"
                        ),
                    ));
                }
            }
        } else if events.is_empty() {
            // A progress notification: never behind what was delivered.
            if let Some(l) = last_rev.filter(|&l| *header_revision < l) {
                let prev = last_event_response.map(|i| responses[i].0).unwrap_or(id);
                out.push(violation(
                    watcher,
                    Guarantee::Bookmarkable,
                    vec![prev, id],
                    format!(
                        "progress notification at revision {header_revision} is behind event @{l} already delivered"
                    ),
                ));
            }
            if progress.is_none_or(|(_, h)| *header_revision > h) {
                progress = Some((index, *header_revision));
            }
        }
    }

    // Atomic (whole revisions) and reliable (no gap), against the known events.
    let revisions_seen: BTreeSet<i64> = delivered.keys().map(|(r, _)| *r).collect();
    for &rev in &revisions_seen {
        let missing: Vec<(&(i64, Bytes), &Known)> = truth
            .range((rev, Bytes::default())..)
            .take_while(|((r, _), _)| *r == rev)
            .filter(|((_, k), known)| matches(k, known.kind) && !delivered.contains_key(&(rev, k.clone())))
            .collect();
        if !missing.is_empty() {
            let (some_response, _) = delivered.range((rev, Bytes::default())..).next().map(|(_, v)| *v).unwrap();
            let mut ops = vec![responses[some_response].0];
            ops.extend(missing.iter().map(|(_, k)| k.op));
            let names: Vec<String> = missing.iter().map(|((r, k), known)| describe_event(*r, k, known.kind)).collect();
            out.push(violation(
                watcher,
                Guarantee::Atomic,
                ops,
                format!("got part of revision {rev} but not {}", names.join(", ")),
            ));
        }
    }
    let last_told = match (last_rev, progress.map(|(_, h)| h)) {
        (Some(l), Some(p)) if !compacted => Some(l.max(p)),
        (l, p) => l.or(if compacted { None } else { p }),
    };
    if let (Some(from), Some(to)) = (start.or(revisions_seen.first().copied()), last_told) {
        let missing: Vec<(&(i64, Bytes), &Known)> = truth
            .range((from, Bytes::default())..)
            .take_while(|((r, _), _)| *r <= to)
            .filter(|((r, k), known)| {
                matches(k, known.kind) && !revisions_seen.contains(r) && !delivered.contains_key(&(*r, k.clone()))
            })
            .collect();
        if !missing.is_empty() {
            let mut ops = vec![create_id];
            ops.extend(missing.iter().take(EVENTS_LISTED).map(|(_, k)| k.op));
            let names: Vec<String> =
                missing.iter().take(EVENTS_LISTED).map(|((r, k), known)| describe_event(*r, k, known.kind)).collect();
            out.push(violation(
                watcher,
                Guarantee::Reliable,
                ops,
                format!(
                    "{} events in its range between revisions {from} and {to} (the last it was told about) were \
                     never delivered: {}{}",
                    missing.len(),
                    names.join(", "),
                    if missing.len() > EVENTS_LISTED { ", …" } else { "" }
                ),
            ));
        }
    }
}

/// Whether responses `first..last` (indices) are all fragments, so that one revision may span them.
fn fragment_chain(responses: &[(usize, &Operation)], first: usize, last: usize) -> bool {
    first < last
        && responses[first..last]
            .iter()
            .all(|(_, op)| matches!(&op.output, Some(Response::WatchResponse { fragment: true, .. })))
}

fn check_prev_kv(
    watcher: u64,
    request: &WatchRequest,
    (create_id, id): (usize, usize),
    e: &Event,
    truth: &BTreeMap<(i64, Bytes), Known>,
    last_put_by_key: &BTreeMap<&Bytes, (i64, &KeyValue)>,
    out: &mut Vec<WatchViolation>,
) {
    let rev = event_revision(e);
    let key = &e.kv.key;
    let what = describe_event(rev, key, e.kind);
    let Some(prev) = &e.prev_kv else {
        // A put that created the key (version 1, created at its own revision) had no previous
        // version to show: the key was deleted in between, maybe by a lease's expiry, which no
        // history line records (and a `no_delete` filter hides).
        let created_here = e.kind == EventType::Put && e.kv.version == 1 && e.kv.create_revision == rev;
        if request.prev_kv && !created_here {
            if let Some((prev_rev, _)) = last_put_by_key.get(key) {
                let between =
                    truth.range((prev_rev + 1, Bytes::default())..(rev, Bytes::default())).any(|((_, k), _)| k == key);
                if !between {
                    out.push(violation(
                        watcher,
                        Guarantee::PrevKv,
                        vec![create_id, id],
                        format!("{what} has no prev_kv, but this watcher delivered the key's put @{prev_rev} before"),
                    ));
                }
            }
        }
        return;
    };
    if !request.prev_kv {
        out.push(violation(
            watcher,
            Guarantee::PrevKv,
            vec![create_id, id],
            format!("{what} has a prev_kv not asked for"),
        ));
        return;
    }
    if prev.key != *key || prev.mod_revision >= rev {
        out.push(violation(
            watcher,
            Guarantee::PrevKv,
            vec![id],
            format!("{what} has prev_kv {prev}, not an earlier version of the key"),
        ));
        return;
    }
    if let Some(known) = truth.get(&(prev.mod_revision, key.clone())) {
        let wrong = known.kind == EventType::Delete
            || known.kv.as_ref().is_some_and(|kv| kv != prev)
            || known.value.as_ref().is_some_and(|v| *v != prev.value);
        if wrong {
            out.push(violation(
                watcher,
                Guarantee::PrevKv,
                vec![known.op, id],
                format!(
                    "{what} has prev_kv {prev}, but at revision {} the key had {}",
                    prev.mod_revision,
                    describe_known(known)
                ),
            ));
            return;
        }
    }
    let newer =
        truth.range((prev.mod_revision + 1, Bytes::default())..(rev, Bytes::default())).find(|((_, k), _)| k == key);
    if let Some(((r, _), known)) = newer {
        out.push(violation(
            watcher,
            Guarantee::PrevKv,
            vec![known.op, id],
            format!(
                "{what} has prev_kv {prev} from revision {}, but the key changed at revision {r}",
                prev.mod_revision
            ),
        ));
    }
}
