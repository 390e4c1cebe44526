//! PNG charts of a report: throughput by path, scale, ns/packet.
//!
//! Text is drawn with plotters' `ab_glyph` backend from a TTF read at run
//! time (DejaVu Sans from Debian's fonts-dejavu-core, or `$HAVIP_BENCH_FONT`),
//! so no system font library is linked.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::{
    coord::ranged1d::SegmentValue,
    prelude::*,
    style::{
        text_anchor::{HPos, Pos, VPos},
        FontStyle,
    },
};
use serde_json::Value;

use super::{cost, paths::PathSet, report::Report, throughput::Path as TPath};

const FONT_CANDIDATES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];
const FONT: &str = "sans-serif";
const HAVIP_COLOR: RGBColor = RGBColor(0x1f, 0x6f, 0xc4);
const OTHER_COLOR: RGBColor = RGBColor(0x9a, 0xa3, 0xad);
const SKETCH_COLOR: RGBColor = RGBColor(0x9e, 0xc5, 0xec);
const CEILING_COLOR: RGBColor = RGBColor(0x5c, 0x66, 0x70);

fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::var("HAVIP_BENCH_FONT")
            .ok()
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(|s| (*s).to_owned()))
            .find(|p| Path::new(p).is_file())
            .ok_or_else(|| {
                "no TTF font found (install fonts-dejavu-core or set HAVIP_BENCH_FONT)".to_owned()
            })?;
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {path}: {e}"))?;
        // One font for the life of the process: plotters wants it 'static.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable TTF font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

struct Bar {
    label: String,
    value: f64,
    range: Option<(f64, f64)>,
    color: RGBColor,
    text: String,
}

fn bar_chart(
    file: &Path,
    title: &str,
    y_desc: &str,
    bars: &[Bar],
    hline: Option<(f64, String)>,
) -> Result<()> {
    let n = bars.len();
    if n == 0 {
        return Err(anyhow!("nothing to plot"));
    }
    let high = |b: &Bar| b.range.map_or(b.value, |r| r.1.max(b.value));
    // One bar far above the rest (e.g. a claim that wakes the ring-buffer
    // reader) would flatten every other bar: draw it clipped, labelled.
    let mut highs: Vec<f64> = bars.iter().map(high).collect();
    highs.sort_by(f64::total_cmp);
    let scale_max = match highs.as_slice() {
        [.., second, first] if *first > 5.0 * *second && *second > 0.0 => *second,
        _ => highs.last().copied().unwrap_or(1.0),
    };
    let top = hline.iter().map(|h| h.0).fold(scale_max, f64::max) * 1.18;
    let root = BitMapBackend::new(file, (1100, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(18)
        .x_label_area_size(56)
        .y_label_area_size(72)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..top.max(1e-9))
        .map_err(|e| anyhow!("{e}"))?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let formatter = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&formatter)
        .x_label_style((FONT, 15))
        .y_label_style((FONT, 14))
        .y_label_formatter(&|v| {
            if top >= 20.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .y_desc(y_desc)
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), b.value),
                ],
                b.color.filled(),
            );
            r.set_margin(0, 0, 18, 18);
            r
        }))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .filter(|(_, b)| high(b) < top)
                .filter_map(|(i, b)| {
                    b.range.map(|(lo, hi)| {
                        PathElement::new(
                            vec![
                                (SegmentValue::CenterOf(i), lo),
                                (SegmentValue::CenterOf(i), hi),
                            ],
                            BLACK.stroke_width(2),
                        )
                    })
                }),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let text_style =
        TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    // Off-scale bars are labelled inside, in white, below the clip.
    let inside_style = TextStyle::from((FONT, 16).into_font())
        .color(&WHITE)
        .pos(Pos::new(HPos::Center, VPos::Top));
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            if high(b) >= top {
                Text::new(
                    format!("{} ↑", b.text),
                    (SegmentValue::CenterOf(i), top * 0.93),
                    inside_style.clone(),
                )
            } else {
                Text::new(
                    b.text.clone(),
                    (SegmentValue::CenterOf(i), high(b) + top * 0.01),
                    text_style.clone(),
                )
            }
        }))
        .map_err(|e| anyhow!("{e}"))?;
    if let Some((y, label)) = hline {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(SegmentValue::Exact(0), y), (SegmentValue::Last, y)],
                RED.stroke_width(2),
            )))
            .map_err(|e| anyhow!("{e}"))?;
        let style = TextStyle::from((FONT, 15).into_font())
            .color(&RED)
            .pos(Pos::new(HPos::Left, VPos::Bottom));
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (SegmentValue::Exact(0), y + top * 0.01),
                style,
            )))
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present()
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

fn triple(v: &Value) -> Option<(f64, f64, f64)> {
    Some((
        v["min"].as_f64()?,
        v["median"].as_f64()?,
        v["max"].as_f64()?,
    ))
}

/// Draws every chart the report has data for into `dir`; returns the names
/// of the files written.
pub fn render_all(dir: &Path, report: &Report) -> Result<Vec<String>> {
    register_font()?;
    let j = &report.json;
    let mut written = Vec::new();
    // Draws `file` when there are bars and records it.
    let mut chart = |file: &str, title: &str, y_desc: &str, bars: &[Bar], hline| -> Result<()> {
        if !bars.is_empty() {
            let f = dir.join(file);
            bar_chart(&f, title, y_desc, bars, hline)?;
            // Named as the report sees it: next to it.
            written.push(file.to_owned());
        }
        Ok(())
    };

    let bars: Vec<Bar> = TPath::ALL
        .iter()
        .filter_map(|p| {
            let (lo, med, hi) = triple(j.get(p.key())?)?;
            Some(Bar {
                label: p.label().to_owned(),
                value: med / 1e6,
                range: Some((lo / 1e6, hi / 1e6)),
                color: match p {
                    TPath::Havip => HAVIP_COLOR,
                    TPath::Sketch => SKETCH_COLOR,
                    TPath::DropCeiling => CEILING_COLOR,
                    _ => OTHER_COLOR,
                },
                text: format!("{:.2}", med / 1e6),
            })
        })
        .collect();
    chart(
        "throughput.png",
        "Throughput through the host: one core, 106-byte frames (median, min-max)",
        "Mpps delivered",
        &bars,
        None,
    )?;

    if let Some(scale) = j.get("scale_pps").and_then(Value::as_object) {
        let mut counts: Vec<(u64, (f64, f64, f64))> = scale
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, triple(v)?)))
            .collect();
        counts.sort_by_key(|c| c.0);
        let bars: Vec<Bar> = counts
            .iter()
            .map(|(n, (lo, med, hi))| Bar {
                label: format!("{n} HaVip{}", if *n == 1 { "" } else { "s" }),
                value: med / 1e6,
                range: Some((lo / 1e6, hi / 1e6)),
                color: HAVIP_COLOR,
                text: format!("{:.2}", med / 1e6),
            })
            .collect();
        let target = counts
            .first()
            .map(|c| (c.1 .1 * 0.9 / 1e6, "target: 90 % of 1 HaVip".to_owned()));
        chart(
            "scale.png",
            "havip throughput with traffic spread over N configured HaVips",
            "Mpps delivered",
            &bars,
            target,
        )?;
    }

    if let Some(ns) = j.get("ns_per_pkt") {
        let bars: Vec<Bar> = cost::PATHS
            .iter()
            .filter_map(|(key, label)| {
                let (lo, med, hi) = triple(ns.get(*key)?)?;
                let short = label.trim_start_matches("havip: ");
                Some(Bar {
                    label: short.split(" (").next().unwrap_or(short).to_owned(),
                    value: med,
                    range: Some((lo, hi)),
                    color: if key.starts_with("havip") {
                        HAVIP_COLOR
                    } else {
                        OTHER_COLOR
                    },
                    text: format!("{med:.0}"),
                })
            })
            .collect();
        chart(
            "ns_per_pkt.png",
            "Program cost per packet (non-live test_run; havip in blue; ↑ = off scale)",
            "ns per packet",
            &bars,
            None,
        )?;
    }
    Ok(written)
}
