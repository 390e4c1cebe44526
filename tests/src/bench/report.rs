//! `report.json` (stable keys, every measurement with its unit) and
//! `report.md` (tables, targets met or missed).

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{
    env::Sample,
    goals::{Cmp, Goal},
    stats::Summary,
};

/// A goal of [`super::goals`] and how this run did.
#[derive(Clone, Debug, Serialize)]
pub struct TargetResult {
    #[serde(flatten)]
    pub goal: Goal,
    /// `None`: not measured in this run.
    pub value: Option<f64>,
    /// `None` when not measured.
    pub met: Option<bool>,
}

/// Everything a run measured, in JSON, plus what the markdown needs.
#[derive(Debug, Default)]
pub struct Report {
    pub json: Map<String, Value>,
    pub targets: Vec<TargetResult>,
    /// Free-form lines for the markdown (method notes, warnings).
    pub notes: Vec<String>,
    /// Markdown sections, in the order they were added.
    pub md_sections: Vec<(String, String)>,
}

/// `{"unit": .., "min": .., "median": .., "max": .., "samples": [..]}`.
pub fn summary_value(unit: &str, s: &Summary) -> Value {
    json!({
        "unit": unit,
        "min": s.min,
        "median": s.median,
        "max": s.max,
        "samples": s.samples,
    })
}

/// `num`'s median ÷ `den`'s, from the medians [`Report::throughputs`]
/// returns (`None` when either was not measured).
pub fn median_ratio<P: Ord>(medians: &BTreeMap<P, f64>, num: P, den: P) -> Option<f64> {
    Some(medians.get(&num)? / medians.get(&den)?)
}

/// The packets-per-second summary of `samples` (`None` without any).
pub fn pps_summary(samples: &[Sample]) -> Option<Summary> {
    Summary::of(&samples.iter().map(Sample::pps).collect::<Vec<_>>())
}

/// One path's throughput over its samples, as the sections report it.
pub struct PathThroughput {
    /// Frames delivered per second.
    pub pps: Summary,
    /// Delivered ÷ sent, over all the samples.
    pub delivered: f64,
    /// How busy the CPUs other than the generator's were, mean over the
    /// samples (0..1).
    pub others_busy: f64,
    /// The report's value: [`summary_value`] in `pps` with
    /// `delivered_fraction`, `other_cpus_busy` (per sample), `label` and
    /// `what`.
    pub value: Value,
}

impl PathThroughput {
    /// `None` without samples.
    pub fn of(samples: &[Sample], label: &str, what: &str) -> Option<Self> {
        let pps = pps_summary(samples)?;
        let sent: u64 = samples.iter().map(|x| x.sent).sum();
        let delivered = samples.iter().map(|x| x.delivered).sum::<u64>() as f64 / sent as f64;
        let busy: Vec<f64> = samples.iter().map(|x| x.others_busy).collect();
        let others_busy = busy.iter().sum::<f64>() / busy.len() as f64;
        let mut value = summary_value("pps", &pps);
        value["delivered_fraction"] = json!(delivered);
        value["other_cpus_busy"] = json!(busy);
        value["label"] = json!(label);
        value["what"] = json!(what);
        Some(Self {
            pps,
            delivered,
            others_busy,
            value,
        })
    }

    /// The first cells of a path's table row: `| label (`key`) | **median**
    /// | min | max |`, in Mpps.
    pub fn row_start(&self, label: &str, key: &str) -> String {
        format!(
            "| {label} (`{key}`) | **{:.2}** | {:.2} | {:.2} |",
            self.pps.median / 1e6,
            self.pps.min / 1e6,
            self.pps.max / 1e6
        )
    }
}

impl Report {
    pub fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_owned(), value);
    }

    /// Sets each `(path, key, label, what)` of `paths` that has samples to
    /// its [`PathThroughput`] value, and adds its row to `table`:
    /// [`PathThroughput::row_start`], the cells `cells` makes, `what`.
    /// Returns the median pps by path.
    pub fn throughputs<P: Copy + Ord>(
        &mut self,
        table: &mut String,
        samples: &BTreeMap<P, Vec<Sample>>,
        paths: &[(P, &str, &str, &str)],
        cells: impl Fn(&PathThroughput) -> String,
    ) -> BTreeMap<P, f64> {
        let mut medians = BTreeMap::new();
        for &(path, key, label, what) in paths {
            let Some(t) = samples
                .get(&path)
                .and_then(|s| PathThroughput::of(s, label, what))
            else {
                continue;
            };
            medians.insert(path, t.pps.median);
            let _ = writeln!(table, "{} {} {what} |", t.row_start(label, key), cells(&t));
            self.set(key, t.value);
        }
        medians
    }

    /// A key that this run did not measure: `null`, with the reason in `notes`.
    pub fn not_measured(&mut self, key: &str, why: &str) {
        self.json.insert(key.to_owned(), Value::Null);
        let notes = self
            .json
            .entry("notes")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(notes) = notes {
            notes.insert(key.to_owned(), Value::String(why.to_owned()));
        }
        self.notes.push(format!("`{key}`: {why}"));
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    pub fn md(&mut self, title: impl Into<String>, body: impl Into<String>) {
        self.md_sections.push((title.into(), body.into()));
    }

    /// Records how this run did against `goal`; returns whether it was met.
    pub fn target(&mut self, goal: Goal, value: Option<f64>) -> Option<bool> {
        let met = value.map(|v| goal.met_by(v));
        self.targets.push(TargetResult { goal, value, met });
        met
    }

    /// `{"unit": "ratio", "value": .., "target": .., "met": ..}` under the
    /// goal's key, recorded as a target too.
    pub fn ratio(&mut self, goal: Goal, value: Option<f64>) {
        let met = self.target(goal, value);
        self.set(
            goal.key,
            json!({
                "unit": goal.unit,
                "value": value,
                "target": goal.target,
                "cmp": goal.cmp,
                "met": met,
            }),
        );
    }

    pub fn to_json(&self) -> Value {
        let mut out = self.json.clone();
        out.insert(
            "targets".into(),
            serde_json::to_value(&self.targets).unwrap_or(Value::Null),
        );
        Value::Object(out)
    }

    pub fn to_markdown(&self, header: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "{header}");
        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(md, "| target | required | measured | |");
        let _ = writeln!(md, "| --- | --- | --- | --- |");
        for t in &self.targets {
            let op = match t.goal.cmp {
                Cmp::AtLeast => "≥",
                Cmp::AtMost => "≤",
            };
            let value = t
                .value
                .map_or_else(|| "not measured".to_owned(), |v| fmt_measured(v, &t.goal));
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "**MISSED**",
                None => "not measured",
            };
            let _ = writeln!(
                md,
                "| {} (`{}`) | {op} {} | {value} | {verdict} |",
                t.goal.description,
                t.goal.key,
                fmt_num(t.goal.target, t.goal.unit)
            );
        }
        let missed: Vec<&TargetResult> = self
            .targets
            .iter()
            .filter(|t| t.met == Some(false))
            .collect();
        let _ = writeln!(md);
        if self.targets.iter().all(|t| t.met.is_none()) {
            let _ = writeln!(md, "No target was measured in this run.");
        } else if missed.is_empty() {
            let _ = writeln!(md, "Every measured target was met.");
        } else {
            for t in missed {
                let op = match t.goal.cmp {
                    Cmp::AtLeast => "at least",
                    Cmp::AtMost => "at most",
                };
                let _ = writeln!(
                    md,
                    "- **Missed:** {} is {}, the target is {op} {}.",
                    t.goal.description,
                    t.value
                        .map_or_else(String::new, |v| fmt_measured(v, &t.goal)),
                    fmt_num(t.goal.target, t.goal.unit)
                );
            }
        }
        for t in self.targets.iter().filter(|t| t.met.is_none()) {
            let _ = writeln!(
                md,
                "- Not measured in this run: {} (`{}`).",
                t.goal.description, t.goal.key
            );
        }
        for (title, body) in &self.md_sections {
            let _ = writeln!(md, "\n## {title}\n\n{body}");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }
}

/// A measured value beside its goal: with more digits where the unit's
/// usual ones would show the target itself (1.302× misses "at most 1.30×"
/// and must not read 1.30×; likewise 50.04 µs against 50.0 µs).
fn fmt_measured(v: f64, goal: &Goal) -> String {
    let shown = fmt_num(v, goal.unit);
    if v == goal.target || shown != fmt_num(goal.target, goal.unit) {
        return shown;
    }
    for extra in 1..=6 {
        let value = fmt_digits(v, goal.unit, extra);
        if value != fmt_digits(goal.target, goal.unit, extra) {
            return value;
        }
    }
    shown
}

/// A number with its unit, compactly.
pub fn fmt_num(v: f64, unit: &str) -> String {
    fmt_digits(v, unit, 0)
}

/// `v` in `unit` with `extra` decimals more than the unit's usual.
fn fmt_digits(v: f64, unit: &str, extra: usize) -> String {
    let (scaled, digits, suffix) = match unit {
        "ratio" => (v, 2, "×"),
        "pps" => (v / 1e6, 2, " Mpps"),
        "ns" => (v, 1, " ns"),
        "us" => (v, 1, " µs"),
        "ms" => (v, 0, " ms"),
        "s" => (v, 2, " s"),
        "ops/s" => (v, 0, " ops/s"),
        _ => return format!("{v} {unit}"),
    };
    format!("{scaled:.prec$}{suffix}", prec = digits + extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::goals;

    #[test]
    fn targets_and_missed_lines() {
        let mut r = Report::default();
        r.ratio(goals::VS_TC, Some(3.0));
        r.ratio(goals::VS_BRIDGE, Some(7.0));
        r.target(goals::FAILOVER_P99, None);
        r.not_measured("control_plane", "not measured in this run");
        let j = r.to_json();
        assert_eq!(j["ratio_vs_tc"]["met"], json!(false));
        assert_eq!(j["ratio_vs_bridge"]["met"], json!(true));
        assert_eq!(j["control_plane"], Value::Null);
        assert_eq!(
            j["notes"]["control_plane"],
            json!("not measured in this run")
        );
        let md = r.to_markdown("# t");
        assert!(md.contains(
            "**Missed:** havip ÷ tc clsact redirect (throughput) is 3.00×, the target is at least 3.50×."
        ));
        assert!(md.contains("Not measured in this run: data-plane failover p99"));
        let mut near = Report::default();
        near.ratio(goals::FORWARD_NS_VS_BARE, Some(1.3023));
        near.target(goals::FAILOVER_P99, Some(50.04));
        let md = near.to_markdown("# t");
        assert!(
            md.contains("is 1.302×, the target is at most 1.30×."),
            "{md}"
        );
        assert!(
            md.contains("is 50.04 µs, the target is at most 50.0 µs."),
            "{md}"
        );
        assert_eq!(fmt_num(3.5e6, "pps"), "3.50 Mpps");
        assert_eq!(fmt_num(7.0, "widgets"), "7 widgets");
        let targets = &j["targets"];
        assert_eq!(targets[0]["key"], json!("ratio_vs_tc"));
        assert_eq!(targets[0]["cmp"], json!("at_least"));
        assert_eq!(targets[0]["target"], json!(3.5));
        assert_eq!(targets[2]["value"], Value::Null);
    }
}
