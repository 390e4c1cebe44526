//! Sections that measure a set of paths through the host side by side: each
//! path once per repetition, interleaved (so drift hits them all alike),
//! then one table row and one report key per path, and the section's ratios.

use std::{collections::BTreeMap, marker::PhantomData};

use anyhow::Result;

use super::{
    env::{Env, Sample},
    report::{PathThroughput, Report},
    Bench, Params, Section,
};

/// The paths of one section.
pub trait PathSet: Copy + Ord + 'static {
    /// The section's name (`--only`) and progress label.
    const SECTION: &'static str;
    /// The markdown section's title.
    const TITLE: &'static str;
    /// The table's columns after `| path | median Mpps | min | max |`.
    const COLUMNS: &'static [Column];
    /// One measurement: sets the path up, measures, takes it down.
    const MEASURE: Measure<Self>;
    /// In measuring order.
    const ALL: &'static [Self];
    /// The report key.
    fn key(self) -> &'static str;
    fn label(self) -> &'static str;
    /// What the path is, for the table.
    fn description(self) -> &'static str;
    /// The section's ratios and other keys, from the median pps by path.
    fn conclude(medians: &BTreeMap<Self, f64>, report: &mut Report);
}

/// Measures one path: sets it up, measures, takes it down.
pub type Measure<P> = fn(&mut Env, P, &Params) -> Result<Sample>;

/// A column of a path table.
#[derive(Clone, Copy, Debug)]
pub enum Column {
    /// 1 / median pps.
    NsPerPacket,
    /// Delivered ÷ sent.
    Delivered,
    /// How busy the CPUs other than the generator's were.
    OthersBusy,
}

impl Column {
    fn header(self) -> &'static str {
        match self {
            Column::NsPerPacket => "ns/packet end to end",
            Column::Delivered => "delivered",
            Column::OthersBusy => "other CPU busy",
        }
    }

    fn cell(self, t: &PathThroughput) -> String {
        match self {
            Column::NsPerPacket => format!("{:.0} |", 1e9 / t.pps.median),
            Column::Delivered => format!("{:.1} % |", 100.0 * t.delivered),
            Column::OthersBusy => format!("{:.0} % |", 100.0 * t.others_busy),
        }
    }
}

/// The table's header and separator lines for `columns`.
fn table_head(columns: &[Column]) -> String {
    let mut names = vec!["path", "median Mpps", "min", "max"];
    names.extend(columns.iter().map(|c| c.header()));
    names.push("what");
    format!(
        "| {} |\n|{}\n",
        names.join(" | "),
        " --- |".repeat(names.len())
    )
}

/// The section measuring the paths `P` (its samples live only in `run`).
pub struct Interleaved<P>(PhantomData<P>);

impl<P> Default for Interleaved<P> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<P: PathSet> Section for Interleaved<P> {
    fn name(&self) -> &'static str {
        P::SECTION
    }

    fn steps(&self, params: &Params) -> u64 {
        (params.reps * P::ALL.len()) as u64
    }

    fn run(&mut self, bench: &mut Bench, report: &mut Report) -> Result<()> {
        let (env, progress, params) = bench.env_and_progress()?;
        let params = params.clone();
        env.configure(1)?;
        let labels: Vec<(P, &str)> = P::ALL.iter().map(|&p| (p, p.label())).collect();
        let samples = progress.interleaved(P::SECTION, params.reps, &labels, |p| {
            (P::MEASURE)(env, p, &params)
        })?;
        let mut table = table_head(P::COLUMNS);
        let rows: Vec<_> = P::ALL
            .iter()
            .map(|&p| (p, p.key(), p.label(), p.description()))
            .collect();
        let cells = |t: &PathThroughput| {
            let cells: Vec<String> = P::COLUMNS.iter().map(|c| c.cell(t)).collect();
            cells.join(" ")
        };
        let medians = report.throughputs(&mut table, &samples, &rows, cells);
        P::conclude(&medians, report);
        report.md(P::TITLE, table);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_head_has_a_separator_per_column() {
        assert_eq!(
            table_head(&[Column::Delivered]),
            "| path | median Mpps | min | max | delivered | what |\n\
             | --- | --- | --- | --- | --- | --- |\n"
        );
    }
}
