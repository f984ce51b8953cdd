//! SVG charts drawn with plotters: bars per phase (median, with a min–max whisker) for one
//! N, and throughput against N on log–log axes for `--scale`.
//!
//! plotters is built without its font features: the SVG backend writes text as `<text>`
//! elements in a generic `sans-serif` family that the viewer renders, so no font file is
//! read at build or run time (plotters only estimates text extents for layout).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::engines::{EngineInfo, Family};
use crate::report::rate;
use crate::results::{Phase, Spread};
use crate::run::RunResults;

const FONT: &str = "sans-serif";
/// Panels per row of the multi-panel charts.
const COLUMNS: usize = 2;

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a chart: {e}")
}

/// A fixed colour per engine: warm for ours, cool for peers, grey for the std ceilings.
fn colour(e: &EngineInfo) -> RGBColor {
    match e.name {
        "oncemap" => RGBColor(217, 72, 1),
        "content" => RGBColor(253, 141, 60),
        "logstore" => RGBColor(203, 24, 29),
        "redb" => RGBColor(33, 113, 181),
        "lmdb" => RGBColor(107, 174, 214),
        "fjall" => RGBColor(35, 139, 69),
        "candystore" => RGBColor(116, 196, 118),
        "sled" => RGBColor(117, 107, 177),
        "hashmap" => RGBColor(82, 82, 82),
        "btreemap" => RGBColor(150, 150, 150),
        "hashmap-tight" => RGBColor(37, 37, 37),
        "btreemap-tight" => RGBColor(115, 115, 115),
        _ => match e.family {
            Family::Ours => RGBColor(166, 54, 3),
            Family::Peer => RGBColor(8, 81, 156),
            Family::Ceiling(_) => RGBColor(0, 0, 0),
        },
    }
}

/// One bar chart per phase for the (last) N of the run, in a grid, written to `path`.
///
/// # Errors
/// A message if the SVG cannot be drawn or written.
pub fn phases(run: &RunResults, path: &Path) -> Result<(), String> {
    let Some(size) = run.sizes.last() else {
        return Ok(());
    };
    let engines: Vec<&EngineInfo> = run
        .engines
        .iter()
        .copied()
        .filter(|e| size.engines.contains_key(e.name))
        .collect();
    let rows = Phase::ALL.len().div_ceil(COLUMNS);
    let root = SVGBackend::new(path, (1200, 320 * rows as u32 + 60)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "Throughput by phase, N = {} (median of {}; whiskers: min–max)",
        size.workload.n, run.reps
    );
    let root = root.titled(&title, (FONT, 24)).map_err(err)?;
    let panels = root.split_evenly((rows, COLUMNS));
    for (phase, area) in Phase::ALL.into_iter().zip(panels.iter()) {
        let values: Vec<Option<Spread>> = engines
            .iter()
            .map(|e| size.engines[e.name].phases.get(&phase).copied())
            .collect();
        let top = values
            .iter()
            .flatten()
            .map(|s| s.max)
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.12;
        let mut chart = ChartBuilder::on(area)
            .caption(
                match phase {
                    // Their labels give the unit (keys/s).
                    Phase::ReopenHints | Phase::ReopenNoHints => phase.label().to_string(),
                    _ => format!("{} (ops/s)", phase.label()),
                },
                (FONT, 17),
            )
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(62)
            // Integer ranges are inclusive once segmented: n engines are 0..n-1.
            .build_cartesian_2d(
                (0..engines.len().saturating_sub(1)).into_segmented(),
                0.0..top,
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(engines.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => engines
                    .get(*i)
                    .map_or(String::new(), |e| e.name.to_string()),
                _ => String::new(),
            })
            .y_labels(5)
            .y_label_formatter(&|v| rate(*v))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for (i, (e, value)) in engines.iter().zip(&values).enumerate() {
            let Some(sp) = value else {
                chart
                    .draw_series(std::iter::once(Text::new(
                        "n/a",
                        (SegmentValue::CenterOf(i), top * 0.03),
                        (FONT, 12)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )))
                    .map_err(err)?;
                continue;
            };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), sp.median),
                ],
                colour(e).filled(),
            );
            bar.set_margin(0, 0, 6, 6);
            chart.draw_series(std::iter::once(bar)).map_err(err)?;
            if sp.count > 1 {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![
                            (SegmentValue::CenterOf(i), sp.min),
                            (SegmentValue::CenterOf(i), sp.max),
                        ],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(err)?;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    rate(sp.median),
                    (
                        SegmentValue::CenterOf(i),
                        sp.max.max(sp.median) + top * 0.01,
                    ),
                    (FONT, 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// Throughput against N, one panel per phase, log–log, one line per engine.
///
/// # Errors
/// A message if the SVG cannot be drawn or written.
pub fn scale(run: &RunResults, path: &Path) -> Result<(), String> {
    let ns: Vec<u64> = run.sizes.iter().map(|s| s.workload.n).collect();
    let (Some(&lo), Some(&hi)) = (ns.first(), ns.last()) else {
        return Ok(());
    };
    let rows = Phase::ALL.len().div_ceil(COLUMNS);
    let root = SVGBackend::new(path, (1200, 340 * rows as u32 + 60)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!("Throughput (ops/s, median of {}) against N", run.reps);
    let root = root.titled(&title, (FONT, 24)).map_err(err)?;
    let panels = root.split_evenly((rows, COLUMNS));
    for (p, (phase, area)) in Phase::ALL.into_iter().zip(panels.iter()).enumerate() {
        let points = |e: &EngineInfo| -> Vec<(f64, f64)> {
            run.sizes
                .iter()
                .filter_map(|s| {
                    Some((
                        s.workload.n as f64,
                        s.engines.get(e.name)?.phases.get(&phase)?.median,
                    ))
                })
                .collect()
        };
        let all: Vec<f64> = run
            .engines
            .iter()
            .flat_map(|e| points(e))
            .map(|(_, y)| y)
            .collect();
        let (ymin, ymax) = all
            .iter()
            .fold((f64::MAX, 0.0f64), |(a, b), &y| (a.min(y), b.max(y)));
        let (ymin, ymax) = if all.is_empty() {
            (1.0, 10.0)
        } else {
            (ymin / 2.0, ymax * 2.0)
        };
        let x_range = (lo as f64 / 1.5)..(hi as f64 * 1.5);
        let mut chart = ChartBuilder::on(area)
            .caption(phase.label(), (FONT, 17))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(62)
            .build_cartesian_2d(x_range.log_scale(), (ymin..ymax).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            // Log axes get a label per key point otherwise, which crowds each decade.
            .x_labels(ns.len())
            .y_labels(6)
            .light_line_style(WHITE)
            .x_label_formatter(&|v| rate(*v))
            .y_label_formatter(&|v| rate(*v))
            .label_style((FONT, 12))
            .x_desc("N")
            .draw()
            .map_err(err)?;
        for e in &run.engines {
            let pts = points(e);
            if pts.is_empty() {
                continue;
            }
            let c = colour(e);
            let series = chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?;
            if p == 0 {
                series.label(e.name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
            }
            chart
                .draw_series(pts.into_iter().map(|xy| Circle::new(xy, 3, c.filled())))
                .map_err(err)?;
        }
        if p == 0 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 12))
                .position(SeriesLabelPosition::LowerLeft)
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}
