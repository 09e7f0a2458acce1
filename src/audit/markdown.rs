//! The audit as Markdown, rendered from the JSON's types alone.

use std::fmt::Write as _;

use crate::units::utc_seconds as t;
use chrono::{DateTime, Utc};

use super::{bytes_text, Audit, Check, CheckStatus, SourceAudit};

fn opt(at: Option<DateTime<Utc>>) -> String {
    at.map(t).unwrap_or_else(|| "-".into())
}

/// A table cell: no pipe or line break ends it early.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn status(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "PASS",
        CheckStatus::Fail => "FAIL",
        CheckStatus::NotAsked => "N/A",
    }
}

/// The whole audit, as one Markdown document.
pub fn render(audit: &Audit) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_audit(&mut out, audit);
    out
}

fn write_audit(out: &mut String, a: &Audit) -> std::fmt::Result {
    writeln!(out, "# Retention audit\n")?;
    writeln!(
        out,
        "As of {}, by heirloom-backup {}. Repository `{}` (format version {}).\n",
        t(a.at),
        a.tool_version,
        a.repository.location,
        a.repository.format_version
    )?;
    if a.passed {
        writeln!(out, "**Result: PASSED.** Every check passed.\n")?;
    } else {
        writeln!(
            out,
            "**Result: FAILED.** {} check{} failed: {}.\n",
            a.failed.len(),
            if a.failed.len() == 1 { "" } else { "s" },
            a.failed
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    writeln!(out, "| source | engine | policy | backups | checks |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    for s in &a.sources {
        let failed = s.checks.iter().filter(|c| c.failed()).count();
        writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            cell(&s.source),
            s.engine,
            cell(&s.policy.name),
            s.backups.len(),
            if failed == 0 {
                "all passed".to_owned()
            } else {
                format!("{failed} failed")
            }
        )?;
    }
    writeln!(out)?;

    let r = &a.repository;
    writeln!(out, "## Repository\n")?;
    write_checks(out, &r.checks)?;
    let st = &r.storage;
    writeln!(out, "### Storage\n")?;
    writeln!(out, "| objects | stored | backups restore to | distinct chunks | chunks stored | packs | log | deduplication | compression |")?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x |\n",
        st.objects,
        bytes_text(st.bytes),
        bytes_text(st.logical_bytes),
        bytes_text(st.unique_bytes),
        bytes_text(st.stored_chunk_bytes),
        bytes_text(st.pack_bytes),
        bytes_text(st.log_bytes),
        st.dedup_ratio,
        st.compression_ratio
    )?;
    writeln!(out, "### Verifies\n")?;
    match &r.verifies.last_full_read {
        Some(f) => writeln!(
            out,
            "Every stored byte was last read back from {} to {} ({}).\n",
            t(f.since),
            t(f.completed),
            f.how
        )?,
        None => writeln!(out, "No verify has read every stored byte back.\n")?,
    }
    if r.verifies.history.is_empty() {
        writeln!(out, "No verify is recorded.\n")?;
    } else {
        writeln!(
            out,
            "| finished | read back | backups | packs | packs read | bytes read | log objects | problems |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|")?;
        for v in &r.verifies.history {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                t(v.finished),
                v.read_data.as_deref().unwrap_or("structure only"),
                v.backups,
                v.packs,
                v.packs_read,
                bytes_text(v.bytes_read),
                v.log_objects,
                v.problems
            )?;
        }
        writeln!(out)?;
    }
    for s in &a.sources {
        write_source(out, s)?;
    }
    writeln!(out, "## How this report is judged\n")?;
    writeln!(
        out,
        "PASS: the promise holds, FAIL: it does not (exit code 4), N/A: the policy asks nothing of it. Every check lists what it was judged on. The JSON form of this report is the source of truth (schema `{}` version {}); this text is rendered from it.\n",
        a.schema, a.version
    )?;
    for (id, what) in super::checks::DEFINITIONS {
        writeln!(out, "- `{id}`: {what}.")?;
    }
    Ok(())
}

fn write_checks(out: &mut String, checks: &[Check]) -> std::fmt::Result {
    writeln!(out, "### Checks\n")?;
    for c in checks {
        writeln!(out, "- **{}** {} (`{}`)", status(c.status), c.title, c.id)?;
        for e in &c.evidence {
            writeln!(out, "  - {e}")?;
        }
    }
    writeln!(out)
}

fn write_source(out: &mut String, s: &SourceAudit) -> std::fmt::Result {
    writeln!(out, "## Source `{}` ({})\n", s.source, s.engine)?;
    let p = &s.policy;
    writeln!(
        out,
        "Policy `{}`{}: keep {}; point-in-time window {}; zone {}; immutability {}. Audited: newest backup at most {} old, a verify within {}, a drill within {}, the newest log {}.\n",
        p.name,
        p.description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
        p.keep,
        p.point_in_time.as_deref().unwrap_or("none"),
        p.zone,
        p.immutability.as_deref().unwrap_or("not asked"),
        p.max_backup_age,
        p.verify_within,
        p.drill_within,
        p.max_log_age
            .as_deref()
            .map(|m| format!("at most {m} old"))
            .unwrap_or_else(|| "reported only".into())
    )?;
    write_checks(out, &s.checks)?;

    writeln!(out, "### Recoverable windows\n")?;
    if let (Some(first), Some(last)) = (s.windows.first(), s.windows.last()) {
        writeln!(
            out,
            "Restorable at any instant of {} window{}, the earliest from {}, the latest to {}.\n",
            s.windows.len(),
            if s.windows.len() == 1 { "" } else { "s" },
            t(first.from),
            t(last.to)
        )?;
    }
    if s.windows.is_empty() {
        writeln!(
            out,
            "No point-in-time window: only the backups' own instants can be restored.\n"
        )?;
    } else {
        writeln!(out, "| from | to | log from | log to |")?;
        writeln!(out, "|---|---|---|---|")?;
        for w in &s.windows {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                t(w.from),
                t(w.to),
                cell(&w.first),
                cell(&w.last)
            )?;
        }
        writeln!(out)?;
    }
    if let Some(log) = &s.log {
        writeln!(
            out,
            "The {} holds {} objects ({}) in {} run{}.",
            log.log,
            log.objects,
            bytes_text(log.bytes),
            log.runs.len(),
            if log.runs.len() == 1 { "" } else { "s" }
        )?;
        match &log.newest {
            Some(n) => writeln!(
                out,
                "Data-loss window: the newest stored log, `{}`, is from {} ({} old).\n",
                n.object,
                t(n.at),
                super::checks::age(chrono::Duration::seconds(n.age_seconds))
            )?,
            None => writeln!(out, "Data-loss window: no log is stored.\n")?,
        }
        if log.gaps.is_empty() {
            writeln!(out, "No gap in the log.\n")?;
        } else {
            writeln!(out, "| gap from | to | after | before | missing | cause |")?;
            writeln!(out, "|---|---|---|---|---|---|")?;
            for g in &log.gaps {
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    opt(g.from),
                    opt(g.to),
                    cell(&g.gap.after),
                    cell(&g.gap.before),
                    cell(&g.gap.missing),
                    cell(&g.gap.cause)
                )?;
            }
            writeln!(out)?;
        }
    }

    writeln!(out, "### Backups\n")?;
    if s.backups.is_empty() {
        writeln!(out, "None.\n")?;
    } else {
        writeln!(
            out,
            "| backup | kind | consistent at | restores to | stored | added | status | kept by | holds | last verified |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|")?;
        for b in &s.backups {
            let holds: Vec<String> = b
                .holds
                .iter()
                .map(|h| {
                    format!(
                        "{}{}{}",
                        h.reason,
                        h.until
                            .map(|u| format!(" until {}", t(u)))
                            .unwrap_or_default(),
                        match (h.active, h.released) {
                            (true, _) => String::new(),
                            (false, Some(r)) => format!(" (released {})", t(r)),
                            (false, None) => " (ended)".into(),
                        }
                    )
                })
                .collect();
            writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                b.id,
                b.kind,
                t(b.consistent_at),
                bytes_text(b.logical_bytes),
                bytes_text(b.stored_bytes),
                bytes_text(b.added_bytes),
                b.status,
                cell(&b.kept_by.join("; ")),
                cell(&holds.join("; ")),
                opt(b.last_verified)
            )?;
        }
        writeln!(out)?;
    }

    writeln!(out, "### Drills\n")?;
    match &s.drills.last_passed {
        Some(d) => writeln!(
            out,
            "Last passing drill: {}, restoring {} in {:.1} s (RTO).\n",
            t(d.finished),
            d.point,
            d.restore_seconds
        )?,
        None => writeln!(out, "No drill has passed.\n")?,
    }
    if !s.drills.history.is_empty() {
        writeln!(
            out,
            "| finished | point | backup | reached | RTO | checks took | tables | rows | result |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
        for d in &s.drills.history {
            writeln!(
                out,
                "| {} | {} | {} | {} | {:.1} s | {:.1} s | {} | {} | {} |",
                t(d.finished),
                d.point,
                d.backup
                    .as_deref()
                    .map(|b| format!("`{b}`"))
                    .unwrap_or_else(|| "-".into()),
                opt(d.reached),
                d.restore_seconds,
                d.check_seconds,
                d.tables,
                d.rows,
                if d.passed {
                    "passed".to_owned()
                } else {
                    cell(&format!(
                        "failed: {}",
                        d.failure.as_deref().unwrap_or("a check failed")
                    ))
                }
            )?;
        }
        writeln!(out)?;
    }

    writeln!(out, "### Growth\n")?;
    if s.growth.is_empty() {
        writeln!(out, "No backups.\n")?;
    } else {
        writeln!(out, "| month | backups | restore to | added to the store |")?;
        writeln!(out, "|---|---|---|---|")?;
        for g in &s.growth {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                g.month,
                g.backups,
                bytes_text(g.logical_bytes),
                bytes_text(g.added_bytes)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}
