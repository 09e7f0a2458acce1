//! The audit as one self-contained HTML file (inline style, no script, no external asset), with
//! an SVG timeline per source: backups by status, the log's runs and windows, its gaps, holds and
//! drills, along the time from the source's first backup to the audit's instant. The tables are
//! the Markdown report's, rendered from the same JSON types.

use std::fmt::Write as _;

use crate::units::utc_seconds as t;
use chrono::{DateTime, Datelike, Utc};

use super::{bytes_text, Audit, Check, CheckStatus, SourceAudit};

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2430;max-width:1200px}\
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}\
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}\
th{background:#f3f5f8}code{font-size:.85em}.result{font-size:1.2rem;padding:.6rem 1rem;border-radius:6px;display:inline-block}\
.passed{background:#dff5e3;color:#14532d}.failed{background:#fde2e1;color:#7f1d1d}\
.check{margin:.3rem 0}.badge{display:inline-block;min-width:3.2rem;text-align:center;border-radius:4px;font-weight:600;font-size:.8rem;padding:.1rem .3rem;margin-right:.4rem}\
.pass{background:#16a34a;color:#fff}.fail{background:#dc2626;color:#fff}.na{background:#9ca3af;color:#fff}\
.check ul{margin:.2rem 0 .6rem 4rem;font-size:.85rem;color:#374151}svg.timeline{width:100%;height:auto;border:1px solid #d0d7de;border-radius:6px;background:#fbfcfd}\
.legend span{margin-right:1rem;font-size:.8rem}.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}";

/// The whole audit, as one HTML document.
pub fn render(audit: &Audit) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_audit(&mut out, audit);
    out
}

fn write_audit(out: &mut String, a: &Audit) -> std::fmt::Result {
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    )?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(out, "<title>Retention audit as of {}</title>", t(a.at))?;
    writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>")?;
    writeln!(out, "<h1>Retention audit</h1>")?;
    writeln!(
        out,
        "<p>As of <time datetime=\"{0}\">{0}</time>, by heirloom-backup {1}. Repository <code>{2}</code> (format version {3}).</p>",
        t(a.at),
        esc(&a.tool_version),
        esc(&a.repository.location),
        a.repository.format_version
    )?;
    if a.passed {
        writeln!(
            out,
            "<p class=\"result passed\" id=\"result\">PASSED: every check passed.</p>"
        )?;
    } else {
        writeln!(
            out,
            "<p class=\"result failed\" id=\"result\">FAILED: {}</p>",
            a.failed
                .iter()
                .map(|f| format!("<code>{}</code>", esc(f)))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    writeln!(out, "<h2>Repository</h2>")?;
    write_checks(out, &a.repository.checks)?;
    let st = &a.repository.storage;
    writeln!(out, "<table><tr><th>objects</th><th>stored</th><th>backups restore to</th><th>distinct chunks</th><th>chunks stored</th><th>log</th><th>deduplication</th><th>compression</th></tr>")?;
    writeln!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}x</td><td>{:.2}x</td></tr></table>",
        st.objects,
        bytes_text(st.bytes),
        bytes_text(st.logical_bytes),
        bytes_text(st.unique_bytes),
        bytes_text(st.stored_chunk_bytes),
        bytes_text(st.log_bytes),
        st.dedup_ratio,
        st.compression_ratio
    )?;
    if !a.repository.verifies.history.is_empty() {
        writeln!(out, "<table><tr><th>verify finished</th><th>read back</th><th>backups</th><th>packs read</th><th>bytes read</th><th>problems</th></tr>")?;
        for v in &a.repository.verifies.history {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td>{}</td><td>{}</td></tr>",
                t(v.finished),
                esc(v.read_data.as_deref().unwrap_or("structure only")),
                v.backups,
                v.packs_read,
                v.packs,
                bytes_text(v.bytes_read),
                v.problems
            )?;
        }
        writeln!(out, "</table>")?;
    }
    for s in &a.sources {
        write_source(out, s, a.at)?;
    }
    writeln!(out, "<h2>How this report is judged</h2>")?;
    writeln!(
        out,
        "<p>PASS: the promise holds, FAIL: it does not (exit code 4), N/A: the policy asks nothing of it. Every check lists what it was judged on. The JSON form of this report is the source of truth (schema <code>{}</code> version {}); this page is rendered from it.</p><ul>",
        esc(&a.schema),
        a.version
    )?;
    for (id, what) in super::checks::DEFINITIONS {
        writeln!(out, "<li><code>{id}</code>: {}.</li>", esc(what))?;
    }
    writeln!(out, "</ul>\n</body>\n</html>")
}

fn write_checks(out: &mut String, checks: &[Check]) -> std::fmt::Result {
    for c in checks {
        let (class, label) = match c.status {
            CheckStatus::Pass => ("pass", "PASS"),
            CheckStatus::Fail => ("fail", "FAIL"),
            CheckStatus::NotAsked => ("na", "N/A"),
        };
        writeln!(
            out,
            "<div class=\"check\" data-check=\"{}\" data-status=\"{class}\"><span class=\"badge {class}\">{label}</span>{} <code>{}</code><ul>",
            esc(&c.id),
            esc(&c.title),
            esc(&c.id)
        )?;
        for e in &c.evidence {
            writeln!(out, "<li>{}</li>", esc(e))?;
        }
        writeln!(out, "</ul></div>")?;
    }
    Ok(())
}

fn write_source(out: &mut String, s: &SourceAudit, at: DateTime<Utc>) -> std::fmt::Result {
    writeln!(
        out,
        "<h2 id=\"source-{0}\">Source <code>{0}</code> ({1}), policy <code>{2}</code></h2>",
        esc(&s.source),
        esc(&s.engine),
        esc(&s.policy.name)
    )?;
    timeline(out, s, at)?;
    write_checks(out, &s.checks)?;
    if let Some(log) = &s.log {
        if let Some(n) = &log.newest {
            writeln!(
                out,
                "<p>Data-loss window: the newest stored log, <code>{}</code>, is from {} ({} old).</p>",
                esc(&n.object),
                t(n.at),
                super::checks::age(chrono::Duration::seconds(n.age_seconds))
            )?;
        }
        if !log.gaps.is_empty() {
            writeln!(
                out,
                "<table><tr><th>gap from</th><th>to</th><th>missing</th><th>cause</th></tr>"
            )?;
            for g in &log.gaps {
                writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    g.from.map(t).unwrap_or_else(|| "-".into()),
                    g.to.map(t).unwrap_or_else(|| "-".into()),
                    esc(&g.gap.missing),
                    esc(&g.gap.cause)
                )?;
            }
            writeln!(out, "</table>")?;
        }
    }
    writeln!(out, "<table><tr><th>backup</th><th>kind</th><th>consistent at</th><th>restores to</th><th>stored</th><th>added</th><th>status</th><th>kept by</th><th>holds</th><th>last verified</th></tr>")?;
    for b in &s.backups {
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&b.id),
            esc(&b.kind),
            t(b.consistent_at),
            bytes_text(b.logical_bytes),
            bytes_text(b.stored_bytes),
            bytes_text(b.added_bytes),
            esc(&b.status),
            esc(&b.kept_by.join("; ")),
            esc(&b
                .holds
                .iter()
                .map(|h| h.reason.clone())
                .collect::<Vec<_>>()
                .join("; ")),
            b.last_verified.map(t).unwrap_or_else(|| "-".into())
        )?;
    }
    writeln!(out, "</table>")?;
    if !s.drills.history.is_empty() {
        writeln!(out, "<table><tr><th>drill finished</th><th>point</th><th>RTO</th><th>tables</th><th>rows</th><th>result</th></tr>")?;
        for d in &s.drills.history {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t(d.finished),
                esc(&d.point),
                d.restore_seconds,
                d.tables,
                d.rows,
                if d.passed {
                    "passed".to_owned()
                } else {
                    esc(&format!(
                        "failed: {}",
                        d.failure.as_deref().unwrap_or("a check failed")
                    ))
                }
            )?;
        }
        writeln!(out, "</table>")?;
    }
    if !s.growth.is_empty() {
        writeln!(out, "<table><tr><th>month</th><th>backups</th><th>restore to</th><th>added to the store</th></tr>")?;
        for g in &s.growth {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                g.month,
                g.backups,
                bytes_text(g.logical_bytes),
                bytes_text(g.added_bytes)
            )?;
        }
        writeln!(out, "</table>")?;
    }
    Ok(())
}

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;

/// The SVG timeline of one source: a lane each for the log's windows and gaps, the backups
/// (coloured by status, ringed when held) and the drills, over month ticks.
fn timeline(out: &mut String, s: &SourceAudit, at: DateTime<Utc>) -> std::fmt::Result {
    let begin = s
        .first_backup
        .into_iter()
        .chain(s.windows.iter().map(|w| w.from))
        .chain(s.drills.history.iter().map(|d| d.started))
        .min()
        .unwrap_or(at - chrono::Duration::days(30))
        .min(at - chrono::Duration::days(1));
    let span = (at - begin).num_seconds().max(1) as f64;
    let x = |when: DateTime<Utc>| -> f64 {
        let offset = (when - begin).num_seconds() as f64;
        LEFT + (offset / span).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    };
    let height = 150.0;
    writeln!(
        out,
        "<svg class=\"timeline\" data-source=\"{}\" viewBox=\"0 0 {WIDTH} {height}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"timeline of {}\">",
        esc(&s.source),
        esc(&s.source)
    )?;
    for (y, label) in [(30.0, "log"), (70.0, "backups"), (110.0, "drills")] {
        writeln!(
            out,
            "<text x=\"8\" y=\"{}\" font-size=\"12\" fill=\"#4b5563\">{label}</text>",
            y + 4.0
        )?;
        writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#e5e7eb\"/>",
            WIDTH - RIGHT
        )?;
    }
    // Month ticks (at most about 40 labelled: every month, quarter or year).
    let months = ((at - begin).num_days() / 30).max(1);
    let every = if months <= 14 {
        1
    } else if months <= 48 {
        3
    } else {
        12
    };
    let mut tick = begin.date_naive().with_day(1).unwrap_or(begin.date_naive());
    while let Some(start) = tick.and_hms_opt(0, 0, 0).map(|d| d.and_utc()) {
        if start > at {
            break;
        }
        if start >= begin && (tick.month0() % every) == 0 {
            let px = x(start);
            writeln!(
                out,
                "<line class=\"tick\" x1=\"{px:.1}\" y1=\"12\" x2=\"{px:.1}\" y2=\"128\" stroke=\"#f1f5f9\"/><text x=\"{px:.1}\" y=\"145\" font-size=\"10\" fill=\"#6b7280\" text-anchor=\"middle\">{}</text>",
                tick.format("%Y-%m")
            )?;
        }
        tick = match tick.checked_add_months(chrono::Months::new(1)) {
            Some(next) => next,
            None => break,
        };
    }
    for w in &s.windows {
        let (a, b) = (x(w.from), x(w.to));
        writeln!(
            out,
            "<rect class=\"window\" x=\"{a:.1}\" y=\"22\" width=\"{:.1}\" height=\"16\" fill=\"#60a5fa\"><title>restorable {} .. {} (log {} .. {})</title></rect>",
            (b - a).max(2.0),
            t(w.from),
            t(w.to),
            esc(&w.first),
            esc(&w.last)
        )?;
    }
    if let Some(log) = &s.log {
        for g in &log.gaps {
            let a = g.from.map(&x).unwrap_or(LEFT);
            let b = g.to.map(&x).unwrap_or(a + 4.0);
            // What a prune deleted on purpose is grey; a loss is red.
            let (class, fill) = if g.pruned {
                ("gap pruned", "#cbd5e1")
            } else {
                ("gap lost", "#dc2626")
            };
            writeln!(
                out,
                "<rect class=\"{class}\" x=\"{a:.1}\" y=\"18\" width=\"{:.1}\" height=\"24\" fill=\"{fill}\" opacity=\"0.85\"><title>gap: {} missing: {}</title></rect>",
                (b - a).max(3.0),
                esc(&g.gap.missing),
                esc(&g.gap.cause)
            )?;
        }
    }
    for b in &s.backups {
        let fill = match b.status.as_str() {
            "kept" => "#16a34a",
            "locked" => "#d97706",
            _ => "#9ca3af",
        };
        let px = x(b.consistent_at);
        writeln!(
            out,
            "<circle class=\"backup {}\" data-id=\"{}\" cx=\"{px:.1}\" cy=\"70\" r=\"4\" fill=\"{fill}\"><title>{} {} at {}: {}</title></circle>",
            esc(&b.status),
            esc(&b.id),
            esc(&b.id),
            esc(&b.kind),
            t(b.consistent_at),
            esc(&if b.kept_by.is_empty() {
                b.status.clone()
            } else {
                b.kept_by.join("; ")
            })
        )?;
        if b.holds.iter().any(|h| h.active) {
            writeln!(
                out,
                "<circle class=\"hold\" cx=\"{px:.1}\" cy=\"70\" r=\"8\" fill=\"none\" stroke=\"#7c3aed\" stroke-width=\"2\"><title>held: {}</title></circle>",
                esc(&b
                    .holds
                    .iter()
                    .filter(|h| h.active)
                    .map(|h| h.reason.clone())
                    .collect::<Vec<_>>()
                    .join("; "))
            )?;
        }
    }
    for d in &s.drills.history {
        let px = x(d.finished);
        let (class, fill) = if d.passed {
            ("passed", "#16a34a")
        } else {
            ("failed", "#dc2626")
        };
        writeln!(
            out,
            "<path class=\"drill {class}\" d=\"M{px:.1} 103 L{:.1} 110 L{px:.1} 117 L{:.1} 110 Z\" fill=\"{fill}\"><title>drill {}: {} ({:.1} s)</title></path>",
            px + 7.0,
            px - 7.0,
            t(d.finished),
            class,
            d.restore_seconds
        )?;
    }
    let now = x(at);
    writeln!(
        out,
        "<line class=\"now\" x1=\"{now:.1}\" y1=\"10\" x2=\"{now:.1}\" y2=\"130\" stroke=\"#111827\" stroke-dasharray=\"3 3\"><title>audited as of {}</title></line>",
        t(at)
    )?;
    writeln!(out, "</svg>")?;
    writeln!(
        out,
        "<p class=\"legend\"><span><i style=\"background:#60a5fa\"></i>restorable window</span><span><i style=\"background:#dc2626\"></i>log lost / failed drill</span><span><i style=\"background:#cbd5e1\"></i>log pruned</span><span><i style=\"background:#16a34a\"></i>kept backup / passed drill</span><span><i style=\"background:#d97706\"></i>locked</span><span><i style=\"background:#9ca3af\"></i>expires at the next prune</span><span><i style=\"border:2px solid #7c3aed\"></i>held</span></p>"
    )
}
