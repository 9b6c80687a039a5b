//! Collects the children's outcomes and prints one markdown table per workload, with ratios to
//! tierlog and a check of the targets.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::workloads::{Outcome, Params};

/// Outcomes per (workload, peer), with failures.
#[derive(Default)]
pub struct Results {
    runs: BTreeMap<(String, String), Vec<Outcome>>,
    errors: BTreeMap<(String, String), String>,
}

impl Results {
    /// Records one child's result.
    pub fn add(&mut self, workload: &str, peer: &str, r: Result<Outcome, String>) {
        let key = (workload.to_string(), peer.to_string());
        match r {
            Ok(o) => self.runs.entry(key).or_default().push(o),
            Err(e) => {
                self.errors.insert(key, e);
            }
        }
    }

    /// Field-wise median over the rounds.
    fn median(&self, workload: &str, peer: &str) -> Option<Outcome> {
        let runs = self.runs.get(&(workload.to_string(), peer.to_string()))?;
        let med = |f: fn(&Outcome) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Some(Outcome {
            peer: peer.to_string(),
            workload: workload.to_string(),
            entries: runs[0].entries,
            entries_per_sec: med(|o| o.entries_per_sec),
            p50_us: med(|o| o.p50_us),
            p99_us: med(|o| o.p99_us),
            hot_range_ms: med(|o| o.hot_range_ms),
            hot_range_p99_ms: med(|o| o.hot_range_p99_ms),
            cold_range_ms: med(|o| o.cold_range_ms),
            cold_range_p99_ms: med(|o| o.cold_range_p99_ms),
            cold_repeat_ms: med(|o| o.cold_repeat_ms),
            reopen_ms: med(|o| o.reopen_ms),
            disk_bytes: med(|o| o.disk_bytes as f64) as u64,
            logical_bytes: runs[0].logical_bytes,
            peak_rss: med(|o| o.peak_rss as f64) as u64,
            groups: runs[0].groups,
            concurrency: runs[0].concurrency,
            syncs_per_sec: if runs.iter().all(|o| o.syncs_per_sec.is_some()) {
                Some(med(|o| o.syncs_per_sec.unwrap_or(0.0)))
            } else {
                None
            },
            budget: runs[0].budget,
            entries_read: runs[0].entries_read,
            lag_read_p50_us: med(|o| o.lag_read_p50_us),
            lag_read_p99_us: med(|o| o.lag_read_p99_us),
        })
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn ratio(x: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => format!("{:.2}x", x / b),
        _ => "-".into(),
    }
}

fn per_logical(o: &Outcome) -> f64 {
    o.disk_bytes as f64 / o.logical_bytes.max(1) as f64
}

/// The report: one table per workload, then the targets.
pub fn render(r: &Results, p: &Params, peers: &[String], group_counts: &[u64]) -> String {
    let mut s = String::new();
    let base = |w: &str| r.median(w, "tierlog");
    let rows = |w: &str| -> Vec<(String, Outcome)> {
        peers
            .iter()
            .filter_map(|peer| r.median(w, peer).map(|o| (peer.clone(), o)))
            .collect()
    };
    let errors = |s: &mut String, w: &str| {
        for ((ew, peer), e) in &r.errors {
            if ew == w {
                let _ = writeln!(s, "| {peer} | failed: {e} |");
            }
        }
    };

    if let Some(t) = base("leader-append").or_else(|| rows("leader-append").into_iter().next().map(|x| x.1)) {
        let _ = writeln!(
            s,
            "\n### leader-append: {} x {} B batches, each durable before the next ({} entries)\n",
            p.batch, p.entry_size, t.entries
        );
        let _ = writeln!(
            s,
            "| store | entries/s | p50 µs/batch | p99 µs/batch | batch / p50 (entries/s) | disk / logical byte | peak RSS | entries/s vs tierlog | p50 vs tierlog |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        let b = base("leader-append");
        for (peer, o) in rows("leader-append") {
            let _ = writeln!(
                s,
                "| {peer} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} | {} |",
                o.entries_per_sec,
                o.p50_us,
                o.p99_us,
                p.batch as f64 * 1e6 / o.p50_us.max(1e-3),
                per_logical(&o),
                mib(o.peak_rss),
                ratio(o.entries_per_sec, b.as_ref().map(|b| b.entries_per_sec)),
                ratio(o.p50_us, b.as_ref().map(|b| b.p50_us)),
            );
        }
        errors(&mut s, "leader-append");
    }

    if !rows("follower-catchup").is_empty() {
        let _ = writeln!(
            s,
            "\n### follower-catchup: {} entries, {}-entry range reads; hot = newest range x{}, cold = {} disjoint ranges from index 1 after reopen + page-cache drop (then the same ranges again)\n",
            p.catchup_entries, p.range, p.range_calls, p.range_calls
        );
        let _ = writeln!(
            s,
            "| store | write entries/s | hot ms p50 / p99 | cold ms p50 / p99 | cold again ms | reopen ms | disk / logical byte | peak RSS | cold time vs tierlog | hot time vs tierlog |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        let b = base("follower-catchup");
        for (peer, o) in rows("follower-catchup") {
            let _ = writeln!(
                s,
                "| {peer} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} | {:.1} | {:.2} | {} | {} | {} |",
                o.entries_per_sec,
                o.hot_range_ms,
                o.hot_range_p99_ms,
                o.cold_range_ms,
                o.cold_range_p99_ms,
                o.cold_repeat_ms,
                o.reopen_ms,
                per_logical(&o),
                mib(o.peak_rss),
                ratio(o.cold_range_ms, b.as_ref().map(|b| b.cold_range_ms)),
                ratio(o.hot_range_ms, b.as_ref().map(|b| b.hot_range_ms)),
            );
        }
        errors(&mut s, "follower-catchup");
    }

    if !rows("long-retention").is_empty() {
        let _ = writeln!(
            s,
            "\n### long-retention: {} entries written, newest 3/4 retained (prefix purges), 16 random point reads per 16 batches; tierlog budget {}\n",
            p.retention_entries,
            mib(p.tierlog_budget)
        );
        let _ = writeln!(
            s,
            "| store | write entries/s | point read p50 / p99 µs | disk | disk / retained logical byte | peak RSS | disk vs tierlog | RSS vs tierlog |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        let b = base("long-retention");
        for (peer, o) in rows("long-retention") {
            let _ = writeln!(
                s,
                "| {peer} | {:.0} | {:.1} / {:.1} | {} | {:.3} | {} | {} | {} |",
                o.entries_per_sec,
                o.p50_us,
                o.p99_us,
                mib(o.disk_bytes),
                per_logical(&o),
                mib(o.peak_rss),
                ratio(o.disk_bytes as f64, b.as_ref().map(|b| b.disk_bytes as f64)),
                ratio(o.peak_rss as f64, b.as_ref().map(|b| b.peak_rss as f64)),
            );
        }
        errors(&mut s, "long-retention");
    }
    let single = ["leader-append", "follower-catchup", "long-retention"];
    if single.iter().any(|w| !rows(w).is_empty()) {
        s.push_str(&targets(r, p));
    }
    let many: Vec<(u64, String)> = group_counts
        .iter()
        .map(|g| (*g, format!("many-groups-{g}")))
        .filter(|(_, w)| !rows(w).is_empty() || r.errors.keys().any(|(ew, _)| ew == w))
        .collect();
    if !many.is_empty() {
        s.push_str(&many_groups(r, p, &many, &rows));
    }
    s
}

/// The many-groups table (one row per group count and store) and issue 11's targets.
fn many_groups(
    r: &Results,
    p: &Params,
    many: &[(u64, String)],
    rows: &dyn Fn(&str) -> Vec<(String, Outcome)>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### many-groups: G groups on one node, {} x {} B batches each durable before the group's next, {} batches in all (at least {} per group), {} writer threads; 1 group in {} has a lagging follower reading old ranges; every group purges behind a window of half its writes\n",
        p.batch,
        p.entry_size,
        p.group_batches,
        crate::groups::MIN_GROUP_BATCHES,
        p.concurrency,
        10,
    );
    let _ = writeln!(
        s,
        "| groups | store | entries/s | fdatasyncs/s | append p50 / p99 µs | lag read p50 µs | peak RSS | budget | RSS / budget | disk / retained logical byte | reopen ms | entries/s vs tierlog |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (g, w) in many {
        let base = r.median(w, "tierlog");
        for (peer, o) in rows(w) {
            let budget = if o.budget > 0 { mib(o.budget) } else { "-".into() };
            let to_budget = if o.budget > 0 {
                format!("{:.2}", o.peak_rss as f64 / o.budget as f64)
            } else {
                "-".into()
            };
            let _ = writeln!(
                s,
                "| {g} | {peer} | {:.0} | {} | {:.0} / {:.0} | {:.0} | {} | {budget} | {to_budget} | {:.3} | {:.1} | {} |",
                o.entries_per_sec,
                o.syncs_per_sec
                    .map_or_else(|| "not counted".to_string(), |v| format!("{v:.0}")),
                o.p50_us,
                o.p99_us,
                o.lag_read_p50_us,
                mib(o.peak_rss),
                per_logical(&o),
                o.reopen_ms,
                ratio(o.entries_per_sec, base.as_ref().map(|b| b.entries_per_sec)),
            );
        }
        for ((ew, peer), e) in &r.errors {
            if ew == w {
                let _ = writeln!(s, "| {g} | {peer} | failed: {e} |");
            }
        }
    }

    let _ = writeln!(s, "\n### targets (issue 11)\n");
    let div = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let eps = |w: &str, peer: &str| r.median(w, peer).map(|o| o.entries_per_sec);
    let at = |g: u64| format!("many-groups-{g}");
    if many.iter().any(|(g, _)| *g == 1000) {
        let w = at(1000);
        check(
            &mut s,
            "1,000 groups aggregate durable entries/s, tierlog / raft-engine",
            div(eps(&w, "tierlog"), eps(&w, "raft-engine")),
            ">= 1.5",
            |v| v >= 1.5,
            &[],
        );
        check(
            &mut s,
            "1,000 groups aggregate durable entries/s, tierlog / tierlog-dirs (one directory per group)",
            div(eps(&w, "tierlog"), eps(&w, "tierlog-dirs")),
            ">= 10",
            |v| v >= 10.0,
            &[],
        );
    } else {
        let _ = writeln!(s, "- 1,000 groups entries/s: not run (add 1000 to --groups)");
    }
    for (g, w) in many {
        let rss = r
            .median(w, "tierlog")
            .filter(|o| o.budget > 0)
            .map(|o| o.peak_rss as f64 / o.budget as f64);
        check(
            &mut s,
            &format!("{g} groups peak RSS / memory budget, tierlog"),
            rss,
            "<= 1.10",
            |v| v <= 1.10,
            &[],
        );
    }
    s
}

/// `"; label value, label value"` for the peers a target figure is shown beside.
fn beside(peers: &[(&str, Option<f64>)]) -> String {
    if peers.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = peers
        .iter()
        .map(|(label, v)| match v {
            Some(v) => format!("{label} {v:.2}"),
            None => format!("{label} not measured"),
        })
        .collect();
    format!("; {}", shown.join(", "))
}

/// One target line: the measured value, the goal, MET / NOT MET, then the same figure for
/// `peers`.
fn check(
    s: &mut String,
    what: &str,
    value: Option<f64>,
    goal: &str,
    ok: impl Fn(f64) -> bool,
    peers: &[(&str, Option<f64>)],
) {
    let beside = beside(peers);
    let _ = match value {
        Some(v) => writeln!(
            s,
            "- {what}: {v:.2} (target {goal}) {}{beside}",
            if ok(v) { "MET" } else { "NOT MET" }
        ),
        None => writeln!(s, "- {what}: not measured{beside}"),
    };
}

/// The two engines every target is shown against.
const RIVALS: [&str; 2] = ["raft-engine", "raft-log"];

/// The targets of issue 9 that the peers run measures, each computed from this run's medians.
fn targets(r: &Results, p: &Params) -> String {
    let mut s = String::from("\n### targets (issue 9)\n\n");
    let div = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let rivals = |f: &dyn Fn(&str) -> Option<f64>| -> Vec<(&str, Option<f64>)> {
        RIVALS.iter().map(|&peer| (peer, f(peer))).collect()
    };

    let lr = |peer: &str| r.median("long-retention", peer);
    let per_retained = |peer: &str| lr(peer).map(|o| per_logical(&o));
    check(
        &mut s,
        "long-retention disk / retained logical byte, tierlog",
        per_retained("tierlog"),
        "<= 0.40",
        |v| v <= 0.40,
        &rivals(&per_retained),
    );
    let disk = |peer: &str| lr(peer).map(|o| o.disk_bytes as f64);
    let disk_vs_redb = |peer: &str| div(disk(peer), disk("redb"));
    check(
        &mut s,
        "long-retention disk / redb's disk, tierlog",
        disk_vs_redb("tierlog"),
        "<= 0.3",
        |v| v <= 0.3,
        &rivals(&disk_vs_redb),
    );

    let cold = |peer: &str| r.median("follower-catchup", peer).map(|o| o.cold_range_ms);
    for rival in RIVALS {
        check(
            &mut s,
            &format!(
                "follower-catchup cold {}-entry range, first read after reopen: tierlog time / {rival} time",
                p.range
            ),
            div(cold("tierlog"), cold(rival)),
            "<= 0.5",
            |v| v <= 0.5,
            &[],
        );
    }

    let point = |peer: &str| lr(peer).map(|o| o.p50_us);
    check(
        &mut s,
        "long-retention random point read p50 µs, tierlog",
        point("tierlog"),
        "<= 20",
        |v| v <= 20.0,
        &rivals(&point),
    );

    let p50 = |peer: &str| r.median("leader-append", peer).map(|o| o.p50_us);
    let vs_prealloc = |peer: &str| div(p50(peer), p50("raw-prealloc"));
    check(
        &mut s,
        "leader-append durable p50 / raw-prealloc's p50, tierlog",
        vs_prealloc("tierlog"),
        "<= 1.25",
        |v| v <= 1.25,
        &rivals(&vs_prealloc),
    );

    // The issue asks for "no slower than before": the earlier figure comes from a run of main,
    // not from this run, so this line shows the figures and judges nothing.
    let hot = |peer: &str| r.median("follower-catchup", peer).map(|o| o.hot_range_ms);
    let _ = match hot("tierlog") {
        Some(v) => writeln!(
            s,
            "- follower-catchup hot {}-entry range p50 ms, tierlog: {v:.2} (target: no slower than main in a run beside it){}",
            p.range,
            beside(&rivals(&hot))
        ),
        None => writeln!(
            s,
            "- follower-catchup hot range: not measured{}",
            beside(&rivals(&hot))
        ),
    };

    // Kept from the earlier issue: the RSS the long-retention run already wins on.
    let limit = (p.tierlog_budget + (32 << 20)) as f64 / (1024.0 * 1024.0);
    let rss = |peer: &str| lr(peer).map(|o| o.peak_rss as f64 / (1024.0 * 1024.0));
    check(
        &mut s,
        "long-retention peak RSS MiB, tierlog",
        rss("tierlog"),
        &format!("<= budget + 32 MiB = {limit:.0}"),
        |v| v <= limit,
        &rivals(&rss),
    );
    s
}
