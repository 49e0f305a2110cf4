//! Reports of [`Verdicts`]: a text verdict per checker ([`text`]) and a self-contained HTML page
//! ([`write_html`]: inline CSS, SVG and a few lines of JS, nothing fetched) that draws the
//! history on a timeline — one row per client, one bar per operation from call to return, hover
//! for the operation and its output — marks the operations each failed checker blames, and shows
//! the model state along the longest linearizable prefix, the watch violations and the Elle
//! anomalies with their cycles.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::history::{Operation, Outcome};
use crate::linearizability::Verdict;
use crate::suite::Verdicts;

/// One line per checker that applied (more under a failure), each starting with `prefix`.
pub fn text(verdicts: &Verdicts, prefix: &str) -> String {
    let mut out = String::new();
    if verdicts.linearizability.is_none() && verdicts.watch.is_none() && verdicts.elle.is_none() {
        let _ = writeln!(out, "{prefix}nothing to check (empty history): passes");
    }
    match &verdicts.linearizability {
        None => {}
        Some(Err(e)) => {
            let _ =
                writeln!(out, "{prefix}linearizability: error: cannot check with the {} model: {e}", verdicts.model);
        }
        Some(Ok(checked)) => {
            let stats = &checked.result.stats;
            let mut counts = format!(
                "{} ops, {} searched in {} partitions, {} failed dropped",
                checked.ops_total, stats.ops, stats.partitions, checked.failed_dropped
            );
            if !checked.lease_expiries.is_empty() {
                let _ = write!(counts, ", {} possible lease expiries", checked.lease_expiries.len());
            }
            let time = format!("{} ms, {} steps", stats.elapsed.as_millis(), stats.steps);
            let model = verdicts.model;
            match &checked.result.verdict {
                Verdict::Linearizable => {
                    let _ = writeln!(out, "{prefix}linearizability: linearizable ({model} model; {counts}; {time})");
                }
                Verdict::NotLinearizable(v) => {
                    let _ =
                        writeln!(out, "{prefix}linearizability: NOT LINEARIZABLE ({model} model; {counts}; {time})");
                    for line in v.to_string().lines() {
                        let _ = writeln!(out, "{prefix}    {line}");
                    }
                }
                Verdict::Unknown { reason, .. } => {
                    let _ = writeln!(
                        out,
                        "{prefix}linearizability: UNKNOWN, counted as a failure: {reason} ({model} model; {counts}; {time})"
                    );
                }
            }
        }
    }
    if let Some(w) = &verdicts.watch {
        let counts = format!("{} watchers, {} responses, {} events", w.watchers, w.responses, w.events);
        if w.passed() {
            let _ = writeln!(out, "{prefix}watch: all guarantees hold ({counts})");
        } else {
            let _ = writeln!(
                out,
                "{prefix}watch: VIOLATED ({counts}; {} violations, {} errors)",
                w.violations.len(),
                w.errors.len()
            );
            for e in &w.errors {
                let _ = writeln!(out, "{prefix}    error: {e}");
            }
            for v in &w.violations {
                let _ = writeln!(out, "{prefix}    {v}");
            }
        }
    }
    if let Some(e) = &verdicts.elle {
        if e.passed() {
            let _ = writeln!(out, "{prefix}elle: strict serializable, no anomaly ({} transactions)", e.txns);
        } else {
            let _ = writeln!(
                out,
                "{prefix}elle: ANOMALIES ({} transactions; {} anomalies, {} errors)",
                e.txns,
                e.anomalies.len(),
                e.errors.len()
            );
            for err in &e.errors {
                let _ = writeln!(out, "{prefix}    error: {err}");
            }
            for a in &e.anomalies {
                let _ = writeln!(out, "{prefix}    {a}");
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An operation and how it ended, in one line.
pub fn describe(op: &Operation) -> String {
    match (&op.outcome, &op.output) {
        (Outcome::Ok, Some(output)) => format!("{} -> {output}", op.op),
        (Outcome::Failed, _) => {
            format!("{} -> failed{}", op.op, op.error.as_ref().map_or(String::new(), |e| format!(": {e}")))
        }
        _ => format!("{} -> indeterminate{}", op.op, op.error.as_ref().map_or(String::new(), |e| format!(": {e}"))),
    }
}

const ROW_PX: u64 = 20;
const BAR_PX: u64 = 14;
const LABEL_PX: u64 = 90;
const MIN_WIDTH_PX: u64 = 1_000;
const MAX_WIDTH_PX: u64 = 16_000;
/// Pixels per operation when the history is long: enough to tell bars apart.
const PX_PER_OP: u64 = 6;

const STYLE: &str = "
body { font-family: sans-serif; margin: 1em; color: #222; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; }
.timeline { overflow-x: auto; border: 1px solid #ccc; }
rect.ok { fill: #4a90d9; }
rect.failed { fill: #bbb; }
rect.indeterminate { fill: #f5a623; opacity: .6; }
rect.prefix { fill: #5cb85c; }
rect.blamed { fill: #e74c3c; stroke: #900; stroke-width: 2; opacity: 1; }
rect.selected { stroke: #000; stroke-width: 3; }
rect.op:hover { stroke: #000; stroke-width: 1; }
text { font-size: 11px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; text-align: left; }
#details { position: sticky; top: 0; background: #ffd; padding: .4em; border: 1px solid #cc9; min-height: 1.2em; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .5em; color: #fff; }
";

const SCRIPT: &str = "
document.querySelectorAll('rect.op').forEach(function (r) {
  r.addEventListener('click', function () {
    document.querySelectorAll('rect.selected').forEach(function (s) { s.classList.remove('selected'); });
    r.classList.add('selected');
    document.getElementById('details').textContent = r.querySelector('title').textContent;
  });
});
";

/// Writes the HTML report of `verdicts` on `ops` (the history they judged).
pub fn write_html(mut w: impl Write, title: &str, ops: &[Operation], verdicts: &Verdicts) -> io::Result<()> {
    let blamed = verdicts.blamed_ops();
    let prefix: Vec<usize> = match &verdicts.linearizability {
        Some(Ok(c)) => match &c.result.verdict {
            Verdict::NotLinearizable(v) => v.longest_prefix.clone(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut in_prefix = vec![false; ops.len()];
    for &id in &prefix {
        if id < ops.len() {
            in_prefix[id] = true;
        }
    }
    let mut is_blamed = vec![false; ops.len()];
    for &id in &blamed {
        if id < ops.len() {
            is_blamed[id] = true;
        }
    }

    writeln!(w, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>", escape(title))?;
    writeln!(w, "<style>{STYLE}</style></head><body>")?;
    writeln!(w, "<h1>{}</h1>", escape(title))?;
    writeln!(
        w,
        "<p><b>{}</b></p><pre>{}</pre>",
        if verdicts.passed() { "PASS" } else { "FAIL" },
        escape(&text(verdicts, ""))
    )?;

    // The timeline.
    let mut clients: Vec<u64> = ops.iter().map(|o| o.client).collect();
    clients.sort_unstable();
    clients.dedup();
    let start_ns = ops.iter().map(|o| o.call_ns).min().unwrap_or(0);
    let end_ns = ops.iter().map(|o| o.return_ns).max().unwrap_or(0).max(start_ns + 1);
    let width_px = (ops.len() as u64 * PX_PER_OP).clamp(MIN_WIDTH_PX, MAX_WIDTH_PX);
    let x = |t: u64| LABEL_PX as f64 + (t - start_ns) as f64 * width_px as f64 / (end_ns - start_ns) as f64;
    let height_px = clients.len() as u64 * ROW_PX + 30;
    writeln!(
        w,
        "<h2>Timeline</h2><p class=\"legend\"><span style=\"background:#4a90d9\">ok</span>\
         <span style=\"background:#5cb85c\">longest linearizable prefix</span>\
         <span style=\"background:#e74c3c\">blamed by a checker</span>\
         <span style=\"background:#f5a623\">indeterminate (drawn to the end)</span>\
         <span style=\"background:#bbb\">failed</span> time {start_ns} .. {end_ns} ns; hover or click a bar</p>"
    )?;
    writeln!(w, "<div id=\"details\"></div><div class=\"timeline\">")?;
    writeln!(
        w,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height_px}\">",
        width_px + LABEL_PX + 20
    )?;
    for (row, client) in clients.iter().enumerate() {
        let y = row as u64 * ROW_PX + 20;
        writeln!(w, "<text x=\"2\" y=\"{}\">client {client}</text>", y + BAR_PX - 3)?;
    }
    for (id, op) in ops.iter().enumerate() {
        let row = clients.binary_search(&op.client).expect("every client has a row");
        let y = row as u64 * ROW_PX + 20;
        let end = if op.outcome == Outcome::Indeterminate { end_ns } else { op.return_ns };
        let x0 = x(op.call_ns);
        let bar = (x(end) - x0).max(2.0);
        let class = if is_blamed[id] {
            "blamed"
        } else if in_prefix[id] {
            "prefix"
        } else {
            match op.outcome {
                Outcome::Ok => "ok",
                Outcome::Failed => "failed",
                Outcome::Indeterminate => "indeterminate",
            }
        };
        writeln!(
            w,
            "<rect class=\"op {class}\" x=\"{x0:.1}\" y=\"{y}\" width=\"{bar:.1}\" height=\"{BAR_PX}\"><title>op {id} \
             client {} [{} .. {}] {}</title></rect>",
            op.client,
            op.call_ns,
            op.return_ns,
            escape(&describe(op))
        )?;
    }
    writeln!(w, "</svg></div>")?;

    if let Some(Ok(checked)) = &verdicts.linearizability {
        if let Verdict::NotLinearizable(v) = &checked.result.verdict {
            writeln!(w, "<h2>Linearizability: {}</h2>", escape(&format!("not linearizable in {}", v.partition)))?;
            writeln!(w, "<p>None of these can come next after the longest linearizable prefix:</p><table>")?;
            writeln!(w, "<tr><th>op</th><th>client</th><th>call .. return</th><th>operation</th></tr>")?;
            for op in &v.involved {
                let ret = op.return_ns.map_or("indeterminate".to_string(), |r| r.to_string());
                writeln!(
                    w,
                    "<tr><td>{}</td><td>{}</td><td>{} .. {ret}</td><td>{}</td></tr>",
                    op.id,
                    op.client,
                    op.call_ns,
                    escape(&op.description)
                )?;
            }
            writeln!(w, "</table>")?;
            writeln!(
                w,
                "<h3>Model state along the longest linearizable prefix ({} operations{})</h3><table>",
                v.longest_prefix.len(),
                if v.prefix_states_from > 0 {
                    format!("; the last {} shown", v.prefix_states.len())
                } else {
                    String::new()
                }
            )?;
            writeln!(w, "<tr><th>#</th><th>operation</th><th>state after it</th></tr>")?;
            for (i, state) in v.prefix_states.iter().enumerate() {
                let index = v.prefix_states_from + i;
                let id = v.longest_prefix[index];
                let what = match ops.get(id) {
                    Some(op) => format!("op {id}: {}", describe(op)),
                    None => checked.describe_id(id),
                };
                writeln!(w, "<tr><td>{index}</td><td>{}</td><td>{}</td></tr>", escape(&what), escape(state))?;
            }
            writeln!(w, "</table>")?;
        }
    }
    if let Some(report) = &verdicts.watch {
        if !report.passed() {
            writeln!(w, "<h2>Watch violations</h2><table>")?;
            writeln!(w, "<tr><th>watcher</th><th>guarantee</th><th>ops</th><th>what</th></tr>")?;
            for e in &report.errors {
                writeln!(w, "<tr><td></td><td>error</td><td></td><td>{}</td></tr>", escape(e))?;
            }
            for v in &report.violations {
                writeln!(
                    w,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    v.watcher,
                    v.guarantee,
                    ids(&v.ops),
                    escape(&v.message)
                )?;
            }
            writeln!(w, "</table>")?;
        }
    }
    if let Some(report) = &verdicts.elle {
        if !report.passed() {
            writeln!(w, "<h2>Transaction anomalies</h2><table>")?;
            writeln!(w, "<tr><th>anomaly</th><th>ops</th><th>what</th></tr>")?;
            for e in &report.errors {
                writeln!(w, "<tr><td>error</td><td></td><td>{}</td></tr>", escape(e))?;
            }
            for a in &report.anomalies {
                let mut what = escape(&a.to_string());
                for step in &a.cycle {
                    if let Some(op) = ops.get(step.from) {
                        let _ = write!(what, "<br>op {}: {}", step.from, escape(&describe(op)));
                    }
                }
                writeln!(w, "<tr><td>{}</td><td>{}</td><td>{what}</td></tr>", a.kind, ids(&a.ops))?;
            }
            writeln!(w, "</table>")?;
        }
    }
    writeln!(w, "<script>{SCRIPT}</script></body></html>")?;
    w.flush()
}

fn ids(ops: &[usize]) -> String {
    ops.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", ")
}
