//! Elle-style transaction checks over `list_txn` lines (list-append transactions), for strict
//! serializability.
//!
//! Each key holds a list; transactions append unique values and read whole lists. Since a list
//! shows every append that went before, reads reveal the order of the writes:
//!
//! 1. **Version orders.** For each key, the longest list read is its order of appends; every
//!    other read of the key must be a prefix of it, else the key has an **incompatible order**
//!    (and gives no edges). A list with a value twice is a **duplicate**.
//! 2. **Non-cycle anomalies.** **G1a** (aborted read): a read shows a value appended by a failed
//!    transaction. **G1b** (intermediate read): a read ends with a value that its writer followed
//!    by another append to the same key. **Internal**: a transaction's read disagrees with its own
//!    earlier reads and appends of the key. **Garbage**: a read shows a value nobody appended.
//! 3. **Dependency graph.** Nodes are the `ok` transactions and the indeterminate ones (which may
//!    have committed: their appends are placed where reads show them; they read nothing known).
//!    Edges: **ww** from the writer of a value to the writer of the next value of the order;
//!    **wr** from the writer of the last value of a transaction's external read (its first read
//!    of a key, before it appends to it) to the reader; **rw** from the reader to the writer of
//!    the value right after what it read; **realtime** from a transaction to each one called
//!    after it returned (only the transitive reduction: from the latest completed ones); and
//!    **process** between consecutive `ok` transactions of one client.
//! 4. **Cycles.** Tarjan's strongly connected components over the edges allowed, then the shortest
//!    cycle by breadth-first search within a component, searched in this order: **G0** (ww only),
//!    **G1c** (ww and wr), **G-single** (exactly one rw), **G2-item** (several rw); if the graph
//!    without realtime and process edges has no cycle, the same four with them (the `-realtime`
//!    variants, violations of strict serializability only). The first class with a cycle is
//!    reported (a cycle counts as its least severe anomaly), with the smallest cycle found and
//!    the operations on it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use crate::history::{Bytes, ListOp, Operation, Outcome, Request, Response};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    G0,
    G1c,
    GSingle,
    G2Item,
    G0Realtime,
    G1cRealtime,
    GSingleRealtime,
    G2ItemRealtime,
    G1a,
    G1b,
    Internal,
    Duplicate,
    IncompatibleOrder,
    Garbage,
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnomalyKind::G0 => "G0",
            AnomalyKind::G1c => "G1c",
            AnomalyKind::GSingle => "G-single",
            AnomalyKind::G2Item => "G2-item",
            AnomalyKind::G0Realtime => "G0-realtime",
            AnomalyKind::G1cRealtime => "G1c-realtime",
            AnomalyKind::GSingleRealtime => "G-single-realtime",
            AnomalyKind::G2ItemRealtime => "G2-item-realtime",
            AnomalyKind::G1a => "G1a",
            AnomalyKind::G1b => "G1b",
            AnomalyKind::Internal => "internal",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::IncompatibleOrder => "incompatible-order",
            AnomalyKind::Garbage => "garbage-read",
        })
    }
}

/// Kinds of dependency edges, as bits.
pub const WW: u8 = 1;
pub const WR: u8 = 2;
pub const RW: u8 = 4;
pub const REALTIME: u8 = 8;
pub const PROCESS: u8 = 16;

fn edge_name(bit: u8) -> &'static str {
    match bit {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        REALTIME => "realtime",
        _ => "process",
    }
}

/// One step of a cycle: op `from` → op `to` by an edge of kind `kind`, because of `why`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleStep {
    pub from: usize,
    pub to: usize,
    pub kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// The operations involved (ids); for a cycle, in cycle order.
    pub ops: Vec<usize>,
    /// For a cycle: its steps.
    pub cycle: Vec<CycleStep>,
    pub message: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if !self.cycle.is_empty() {
            let steps: Vec<String> =
                self.cycle.iter().map(|s| format!("op {} -{}-> op {}", s.from, s.kind, s.to)).collect();
            write!(f, " [{}]", steps.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElleReport {
    pub txns: usize,
    /// Errors that make the history uncheckable (a value appended twice to a key).
    pub errors: Vec<String>,
    pub anomalies: Vec<Anomaly>,
}

impl ElleReport {
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.anomalies.is_empty()
    }
}

/// Caps the start nodes of the shortest-cycle search in one component, and the rw edges tried
/// for G-single, so that a huge component costs a bounded number of breadth-first searches.
const CYCLE_STARTS_MAX: usize = 64;
const RW_EDGES_TRIED_MAX: usize = 2_048;

struct Txn<'h> {
    id: usize,
    client: u64,
    call_ns: u64,
    /// `None`: indeterminate.
    return_ns: Option<u64>,
    ops: &'h [ListOp],
    results: Option<&'h [Option<Vec<u64>>]>,
}

/// Checks the `list_txn` lines of `ops` (operation `i` has id `i`).
pub fn check_list_append(ops: &[Operation]) -> ElleReport {
    let mut report = ElleReport::default();
    let mut txns: Vec<Txn<'_>> = Vec::new();
    // (key, value) → (appending op id, node index if it is a node, whether failed).
    let mut writers: BTreeMap<(&Bytes, u64), (usize, Option<usize>)> = BTreeMap::new();
    let mut failed_writes: BTreeMap<(&Bytes, u64), usize> = BTreeMap::new();
    for (id, op) in ops.iter().enumerate() {
        let Request::ListTxn { ops: micro } = &op.op else { continue };
        let node = match op.outcome {
            Outcome::Failed => None,
            Outcome::Ok | Outcome::Indeterminate => {
                let results = match &op.output {
                    Some(Response::ListTxn { results, .. }) => Some(results.as_slice()),
                    _ => None,
                };
                let return_ns = (op.outcome == Outcome::Ok).then_some(op.return_ns);
                txns.push(Txn { id, client: op.client, call_ns: op.call_ns, return_ns, ops: micro, results });
                Some(txns.len() - 1)
            }
        };
        for m in micro {
            if let ListOp::Append { key, value } = m {
                let slot = (key, *value);
                if writers.contains_key(&slot) || failed_writes.contains_key(&slot) {
                    report.errors.push(format!("op {id}: value {value} is appended to {key} twice in the history"));
                }
                match node {
                    Some(n) => {
                        writers.insert(slot, (id, Some(n)));
                    }
                    None => {
                        failed_writes.insert(slot, id);
                    }
                }
            }
        }
    }
    report.txns = txns.len();

    // Reads, internal consistency, duplicates, aborted and garbage reads.
    let mut reads_by_key: BTreeMap<&Bytes, Vec<(usize, &Vec<u64>)>> = BTreeMap::new();
    for t in &txns {
        let Some(results) = t.results else { continue };
        // Per key: the list as last read (if read) and the values appended since.
        let mut known: BTreeMap<&Bytes, (Option<Vec<u64>>, Vec<u64>)> = BTreeMap::new();
        for (m, result) in t.ops.iter().zip(results) {
            match (m, result) {
                (ListOp::Append { key, value }, _) => known.entry(key).or_default().1.push(*value),
                (ListOp::Read { key }, Some(list)) => {
                    reads_by_key.entry(key).or_default().push((t.id, list));
                    let (read, own) = known.entry(key).or_default();
                    let consistent = match read {
                        Some(before) => {
                            list.len() == before.len() + own.len() && list.starts_with(before) && list.ends_with(own)
                        }
                        None => list.ends_with(own),
                    };
                    if !consistent {
                        report.anomalies.push(Anomaly {
                            kind: AnomalyKind::Internal,
                            ops: vec![t.id],
                            cycle: Vec::new(),
                            message: format!(
                                "op {} read {key} = {list:?}, but its own earlier reads and appends imply {}{:?}",
                                t.id,
                                match read {
                                    Some(before) => format!("{before:?} followed by "),
                                    None => "a list ending with ".into(),
                                },
                                own
                            ),
                        });
                    }
                    *read = Some(list.clone());
                    own.clear();
                }
                (ListOp::Read { .. }, None) => {}
            }
        }
        for (m, result) in t.ops.iter().zip(results) {
            let (ListOp::Read { key }, Some(list)) = (m, result) else { continue };
            let mut seen = BTreeSet::new();
            if let Some(dup) = list.iter().find(|v| !seen.insert(**v)) {
                report.anomalies.push(Anomaly {
                    kind: AnomalyKind::Duplicate,
                    ops: vec![t.id],
                    cycle: Vec::new(),
                    message: format!("op {} read {key} = {list:?}: value {dup} twice", t.id),
                });
            }
            for v in list {
                if let Some(&failed) = failed_writes.get(&(key, *v)) {
                    report.anomalies.push(Anomaly {
                        kind: AnomalyKind::G1a,
                        ops: vec![failed, t.id],
                        cycle: Vec::new(),
                        message: format!("op {} read {key} = {list:?}, with {v} appended by failed op {failed}", t.id),
                    });
                } else if !writers.contains_key(&(key, *v)) {
                    report.anomalies.push(Anomaly {
                        kind: AnomalyKind::Garbage,
                        ops: vec![t.id],
                        cycle: Vec::new(),
                        message: format!("op {} read {key} = {list:?}: nobody appended {v}", t.id),
                    });
                }
            }
            // G1b: the last value read is not its writer's last append to the key.
            if let Some(&last) = list.last() {
                if let Some(&(writer_id, Some(w))) = writers.get(&(key, last)) {
                    let final_append = txns[w].ops.iter().rev().find_map(|m| match m {
                        ListOp::Append { key: k, value } if k == key => Some(*value),
                        _ => None,
                    });
                    if writer_id != t.id && final_append != Some(last) {
                        report.anomalies.push(Anomaly {
                            kind: AnomalyKind::G1b,
                            ops: vec![writer_id, t.id],
                            cycle: Vec::new(),
                            message: format!(
                                "op {} read {key} = {list:?}, ending with {last}, an intermediate append of op \
                                 {writer_id} (its last to {key} is {})",
                                t.id,
                                final_append.map_or("?".into(), |v| v.to_string())
                            ),
                        });
                    }
                }
            }
        }
    }

    // Version orders.
    let mut orders: BTreeMap<&Bytes, &Vec<u64>> = BTreeMap::new();
    for (key, reads) in &reads_by_key {
        let &(longest_id, longest) = reads.iter().max_by_key(|(id, l)| (l.len(), std::cmp::Reverse(*id))).unwrap();
        match reads.iter().find(|(_, l)| !longest.starts_with(l)) {
            Some(&(other_id, other)) => report.anomalies.push(Anomaly {
                kind: AnomalyKind::IncompatibleOrder,
                ops: vec![longest_id, other_id],
                cycle: Vec::new(),
                message: format!(
                    "{key}: op {other_id} read {other:?}, which is not a prefix of {longest:?} read by op {longest_id}"
                ),
            }),
            None => {
                orders.insert(key, longest);
            }
        }
    }

    // The dependency graph.
    let mut edges: BTreeMap<(usize, usize), u8> = BTreeMap::new();
    let mut add = |from: usize, to: usize, bit: u8| {
        if from != to {
            *edges.entry((from, to)).or_default() |= bit;
        }
    };
    let node_of = |key: &Bytes, v: u64| writers.get(&(key, v)).and_then(|&(_, n)| n);
    for (key, order) in &orders {
        for pair in order.windows(2) {
            if let (Some(a), Some(b)) = (node_of(key, pair[0]), node_of(key, pair[1])) {
                add(a, b, WW);
            }
        }
    }
    for (n, t) in txns.iter().enumerate() {
        let Some(results) = t.results else { continue };
        let mut appended: BTreeSet<&Bytes> = BTreeSet::new();
        let mut read: BTreeSet<&Bytes> = BTreeSet::new();
        for (m, result) in t.ops.iter().zip(results) {
            match (m, result) {
                (ListOp::Append { key, .. }, _) => {
                    appended.insert(key);
                }
                (ListOp::Read { key }, Some(list)) if !appended.contains(key) && read.insert(key) => {
                    let Some(order) = orders.get(key) else { continue };
                    if let Some(w) = list.last().and_then(|&v| node_of(key, v)) {
                        add(w, n, WR);
                    }
                    if let Some(w) = order.get(list.len()).and_then(|&v| node_of(key, v)) {
                        add(n, w, RW);
                    }
                }
                _ => {}
            }
        }
    }
    // Realtime: the transitive reduction, via the frontier of latest completed transactions.
    let mut moments: Vec<(u64, bool, usize)> = Vec::new();
    for (n, t) in txns.iter().enumerate() {
        moments.push((t.call_ns, false, n));
        if let Some(r) = t.return_ns {
            moments.push((r, true, n));
        }
    }
    // Calls before returns at the same instant: touching operations are concurrent.
    moments.sort_by_key(|&(t, is_return, n)| (t, is_return, n));
    let mut frontier: BTreeSet<usize> = BTreeSet::new();
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); txns.len()];
    for (_, is_return, n) in moments {
        if is_return {
            for p in &preds[n] {
                frontier.remove(p);
            }
            frontier.insert(n);
        } else {
            preds[n] = frontier.iter().copied().collect();
            for &p in &preds[n] {
                add(p, n, REALTIME);
            }
        }
    }
    let mut by_client: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (n, t) in txns.iter().enumerate() {
        if t.return_ns.is_some() {
            by_client.entry(t.client).or_default().push(n);
        }
    }
    for nodes in by_client.values_mut() {
        nodes.sort_by_key(|&n| (txns[n].call_ns, txns[n].id));
        for pair in nodes.windows(2) {
            add(pair[0], pair[1], PROCESS);
        }
    }

    let graph = Graph::new(txns.len(), &edges);
    let plain = [
        (AnomalyKind::G0, WW, None),
        (AnomalyKind::G1c, WW | WR, None),
        (AnomalyKind::GSingle, WW | WR, Some(RW)),
        (AnomalyKind::G2Item, WW | WR | RW, None),
    ];
    let timed = [
        (AnomalyKind::G0Realtime, WW | REALTIME | PROCESS, None),
        (AnomalyKind::G1cRealtime, WW | WR | REALTIME | PROCESS, None),
        (AnomalyKind::GSingleRealtime, WW | WR | REALTIME | PROCESS, Some(RW)),
        (AnomalyKind::G2ItemRealtime, WW | WR | RW | REALTIME | PROCESS, None),
    ];
    let cycle = find_cycle(&graph, &plain).or_else(|| find_cycle(&graph, &timed));
    if let Some((kind, cycle)) = cycle {
        let ids: Vec<usize> = cycle.iter().map(|&(from, _, _)| txns[from].id).collect();
        let steps: Vec<CycleStep> = cycle
            .iter()
            .map(|&(from, bit, to)| CycleStep { from: txns[from].id, to: txns[to].id, kind: edge_name(bit) })
            .collect();
        report.anomalies.push(Anomaly {
            kind,
            message: format!("a cycle of {} transactions", ids.len()),
            ops: ids,
            cycle: steps,
        });
    }
    report
}

struct Graph {
    out: Vec<Vec<(usize, u8)>>,
}

impl Graph {
    fn new(nodes: usize, edges: &BTreeMap<(usize, usize), u8>) -> Graph {
        let mut out = vec![Vec::new(); nodes];
        for (&(a, b), &mask) in edges {
            out[a].push((b, mask));
        }
        Graph { out }
    }

    /// Strongly connected components (with more than one node) of the edges within `allowed`;
    /// iterative Tarjan, so that long chains do not overflow the stack.
    fn components(&self, allowed: u8) -> Vec<Vec<usize>> {
        let n = self.out.len();
        const UNSEEN: usize = usize::MAX;
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut next_index = 0;
        let mut result = Vec::new();
        for root in 0..n {
            if index[root] != UNSEEN {
                continue;
            }
            // (node, position in its edge list)
            let mut calls = vec![(root, 0usize)];
            index[root] = next_index;
            low[root] = next_index;
            next_index += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
                if let Some(&(w, mask)) = self.out[v].get(*pos) {
                    *pos += 1;
                    if mask & allowed == 0 {
                        continue;
                    }
                    if index[w] == UNSEEN {
                        index[w] = next_index;
                        low[w] = next_index;
                        next_index += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        calls.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                } else {
                    calls.pop();
                    if let Some(&(parent, _)) = calls.last() {
                        low[parent] = low[parent].min(low[v]);
                    }
                    if low[v] == index[v] {
                        let mut component = Vec::new();
                        loop {
                            let w = stack.pop().expect("v is on the stack");
                            on_stack[w] = false;
                            component.push(w);
                            if w == v {
                                break;
                            }
                        }
                        if component.len() > 1 {
                            component.sort_unstable();
                            result.push(component);
                        }
                    }
                }
            }
        }
        result
    }

    /// The shortest path from `from` to `to` over edges within `allowed` and nodes in `inside`,
    /// as (from, edge bit, to) steps.
    fn shortest_path(&self, from: usize, to: usize, allowed: u8, inside: &[bool]) -> Option<Vec<(usize, u8, usize)>> {
        let mut came_from: BTreeMap<usize, (usize, u8)> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        let mut reached = BTreeSet::from([from]);
        while let Some(v) = queue.pop_front() {
            for &(w, mask) in &self.out[v] {
                if mask & allowed == 0 || !inside[w] {
                    continue;
                }
                if w == to || reached.insert(w) {
                    came_from.entry(w).or_insert((v, mask & allowed));
                    if w == to {
                        let mut path = Vec::new();
                        let mut at = to;
                        loop {
                            let (prev, mask) = came_from[&at];
                            path.push((prev, least_severe(mask), at));
                            at = prev;
                            if at == from {
                                break;
                            }
                        }
                        path.reverse();
                        return Some(path);
                    }
                    queue.push_back(w);
                }
            }
        }
        None
    }
}

/// The edge kind a step is read as: the least severe one it has.
fn least_severe(mask: u8) -> u8 {
    [WW, WR, PROCESS, REALTIME, RW].into_iter().find(|b| mask & b != 0).expect("an allowed edge")
}

type Cycle = Vec<(usize, u8, usize)>;

/// The first class (kind, edges allowed, an extra edge kind that must appear exactly once) with a
/// cycle, and its shortest cycle found: classes go from the least severe, so that a cycle is
/// reported as its least severe anomaly.
fn find_cycle(graph: &Graph, classes: &[(AnomalyKind, u8, Option<u8>)]) -> Option<(AnomalyKind, Cycle)> {
    let n = graph.out.len();
    for &(kind, allowed, once) in classes {
        let mut best: Option<Cycle> = None;
        let mut consider = |c: Cycle| {
            if best.as_ref().is_none_or(|b| c.len() < b.len()) {
                best = Some(c);
            }
        };
        match once {
            None => {
                for component in graph.components(allowed) {
                    let mut inside = vec![false; n];
                    for &v in &component {
                        inside[v] = true;
                    }
                    for &start in component.iter().take(CYCLE_STARTS_MAX) {
                        if let Some(c) = graph.shortest_path(start, start, allowed, &inside) {
                            consider(c);
                        }
                    }
                }
            }
            Some(extra) => {
                // One `extra` edge u → v, and a path back from v to u without it: both ends in one
                // component of the graph with `extra` edges too.
                let mut tried = 0;
                'components: for component in graph.components(allowed | extra) {
                    let mut inside = vec![false; n];
                    for &v in &component {
                        inside[v] = true;
                    }
                    for &u in &component {
                        for &(v, mask) in &graph.out[u] {
                            if mask & extra == 0 || mask & allowed != 0 || !inside[v] {
                                continue;
                            }
                            tried += 1;
                            if tried > RW_EDGES_TRIED_MAX {
                                break 'components;
                            }
                            if let Some(mut path) = graph.shortest_path(v, u, allowed, &inside) {
                                path.insert(0, (u, extra, v));
                                consider(path);
                            }
                        }
                    }
                }
            }
        }
        if let Some(c) = best {
            // A G2-item search that found a single rw (the G-single search stops at a bound).
            let rws = c.iter().filter(|s| s.1 == RW).count();
            let kind = match kind {
                AnomalyKind::G2Item if rws < 2 => AnomalyKind::GSingle,
                AnomalyKind::G2ItemRealtime if rws < 2 => AnomalyKind::GSingleRealtime,
                k => k,
            };
            return Some((kind, c));
        }
    }
    None
}
