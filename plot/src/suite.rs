//! Drawing the throughput-vs-latency plot of an experiment suite: `<dir>/tput-latency.svg`
//! and `tput-latency.png`, two panels side by side (p50 and p99 latency against throughput),
//! one line per (spaces, groups) series through its points in concurrency order.
//!
//! As for the recovery plot, the same drawing code runs on both backends (wrapped in
//! [`Metrics`]); without a font the SVG is still written and the PNG is reported as a
//! [`PlotError::Font`]. Points with a non-finite or non-positive value are left out, and an
//! empty suite gives empty panels with axes.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::backend::Metrics;
use crate::error::{FontProblem, PlotError};
use crate::font::{self, FAMILY};

/// The plot's title.
pub const SUITE_TITLE: &str = "throughput vs latency";
/// File name of the SVG plot.
pub const SUITE_SVG: &str = "tput-latency.svg";
/// File name of the PNG plot.
pub const SUITE_PNG: &str = "tput-latency.png";
/// Size of both images, in pixels.
pub const SUITE_SIZE: (u32, u32) = (1440, 640);
/// A latency panel gets a log-scale y axis when its largest value exceeds its smallest by
/// more than this factor.
pub const LOG_SPAN: f64 = 20.0;

/// One point of a suite: a (spaces, groups) series at one client concurrency, medians of
/// its trials.
#[derive(Debug, Clone, PartialEq)]
pub struct SuitePoint {
    /// The series' label, e.g. `2 spaces x 3 groups`; points with equal labels form a line.
    pub series: String,
    /// Number of concurrent clients; orders the points along the line.
    pub concurrency: u32,
    /// Throughput, in millions of operations per second.
    pub mops: f64,
    /// Median latency, in microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency, in microseconds.
    pub p99_us: f64,
}

/// Writes `<dir>/tput-latency.svg` and `.png` (creating `dir` if needed): median latency,
/// p50 and p99 in two panels, against throughput, one line per series with its points
/// marked, a legend, and the title [`SUITE_TITLE`]. Returns the paths written. Without a
/// usable font the SVG is still written and the error is [`PlotError::Font`].
pub fn plot_suite(points: &[SuitePoint], dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let font = font::ensure_registered().map(|_| ());
    write_suite(points, dir, font)
}

/// Writes both plots of `points` into `dir`; `font` says whether a font is registered.
pub(crate) fn write_suite(
    points: &[SuitePoint],
    dir: &Path,
    font: Result<(), FontProblem>,
) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let lines = lines(points);
    let svg = dir.join(SUITE_SVG);
    let backend = Metrics {
        inner: SVGBackend::new(&svg, SUITE_SIZE),
        naive: font.is_err(),
    };
    render(backend.into_drawing_area(), &lines, &svg)?;
    if let Err(problem) = font {
        return Err(PlotError::Font { problem, svg });
    }
    let png = dir.join(SUITE_PNG);
    let backend = Metrics {
        inner: BitMapBackend::new(&png, SUITE_SIZE),
        naive: false,
    };
    render(backend.into_drawing_area(), &lines, &png)?;
    Ok(vec![svg, png])
}

/// One series: its label and its points with a usable throughput and at least one usable
/// latency, in concurrency order.
struct Line<'a> {
    name: &'a str,
    points: Vec<&'a SuitePoint>,
}

fn usable(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// The series in order of first appearance.
fn lines(points: &[SuitePoint]) -> Vec<Line<'_>> {
    let mut out: Vec<Line<'_>> = Vec::new();
    let plottable = |p: &&SuitePoint| usable(p.mops) && (usable(p.p50_us) || usable(p.p99_us));
    for p in points.iter().filter(plottable) {
        match out.iter_mut().find(|l| l.name == p.series) {
            Some(line) => line.points.push(p),
            None => out.push(Line {
                name: &p.series,
                points: vec![p],
            }),
        }
    }
    for line in &mut out {
        line.points.sort_by_key(|p| p.concurrency);
    }
    out
}

fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    lines: &[Line<'_>],
    path: &Path,
) -> Result<(), PlotError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| PlotError::Draw {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    draw(&root, lines).map_err(err)?;
    root.present().map_err(err)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// The latency each panel shows, left to right.
const PANELS: [(&str, Latency); 2] = [("p50", p50), ("p99", p99)];

type Latency = fn(&SuitePoint) -> f64;

fn p50(p: &SuitePoint) -> f64 {
    p.p50_us
}

fn p99(p: &SuitePoint) -> f64 {
    p.p99_us
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, lines: &[Line<'_>]) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let body = root.titled(SUITE_TITLE, (FAMILY, 26))?;
    let panels = body.split_evenly((1, 2));
    let top = lines.iter().flat_map(|l| &l.points).map(|p| p.mops);
    let x_max = top.fold(0.0, f64::max) * 1.1;
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let names: Vec<&str> = lines.iter().map(|l| l.name).collect();
    for (i, (area, (name, value))) in panels.iter().zip(PANELS).enumerate() {
        let data: Vec<Vec<(f64, f64)>> = lines
            .iter()
            .map(|l| {
                let usable_y = |p: &&SuitePoint| usable(value(p)).then(|| (p.mops, value(p)));
                l.points.iter().filter_map(usable_y).collect()
            })
            .collect();
        let legend = if i == 0 { names.as_slice() } else { &[] };
        panel(area, &data, x_max, name, legend)?;
    }
    Ok(())
}

/// One latency panel; `data` holds one line per series, `legend` the names to list.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &[Vec<(f64, f64)>],
    x_max: f64,
    name: &str,
    legend: &[&str],
) -> DrawResult<DB> {
    let ys = data.iter().flatten().map(|&(_, y)| y);
    let lo = ys.clone().fold(f64::INFINITY, f64::min);
    let hi = ys.fold(0.0, f64::max);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(format!("{name} latency (median of trials)"), (FAMILY, 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70);
    let y_desc = format!("{name} latency (us)");
    if hi > 0.0 && hi / lo > LOG_SPAN {
        let (lo, hi) = (lo / 1.5, hi * 1.5);
        let (bold, light) = log_ticks(lo, hi);
        let y = (lo..hi).log_scale().with_key_points(bold);
        let chart = builder.build_cartesian_2d(0.0..x_max, y.with_light_points(light))?;
        finish(chart, data, &y_desc, legend)
    } else {
        let y_max = if hi > 0.0 { hi * 1.1 } else { 1.0 };
        let chart = builder.build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        finish(chart, data, &y_desc, legend)
    }
}

/// Axes, lines, markers and legend of a panel, whichever the y scale.
fn finish<DB, Y>(
    mut chart: ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    data: &[Vec<(f64, f64)>],
    y_desc: &str,
    legend: &[&str],
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("throughput (Mops/s)")
        .y_desc(y_desc)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    for (i, points) in data.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line = LineSeries::new(points.iter().copied(), color.stroke_width(2));
        chart.draw_series(line)?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    draw_legend(&chart.plotting_area().strip_coord_spec(), legend)
}

/// Ticks of a log axis over `lo..hi`: labelled at 1, 2 and 5 times a power of ten (only
/// the powers over more than four decades), light lines at 1 to 9 times one.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let labelled: &[f64] = if last - first > 4 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    for k in first..=last {
        for m in 1..=9 {
            let v = f64::from(m) * 10f64.powi(k);
            if (lo..=hi).contains(&v) {
                light.push(v);
                if labelled.contains(&f64::from(m)) {
                    bold.push(v);
                }
            }
        }
    }
    (bold, light)
}

/// A tick label with three significant digits and no trailing zeros.
fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() {
        return "0".to_string();
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A box in the upper-left corner of the plotting area with one entry per series. Drawn by
/// hand, as in the recovery plot: plotters' series labels measure text through the font.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: &[&str],
) -> DrawResult<DB> {
    if names.is_empty() {
        return Ok(());
    }
    let style = TextStyle::from((FAMILY, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let mut width = 0;
    for name in names {
        width = width.max(area.estimate_text_size(name, &style)?.0);
    }
    let (x0, y0, row) = (12, 12, 20);
    let x1 = x0 + 54 + width as i32;
    let y1 = y0 + 10 + row * names.len() as i32;
    let corners = [(x0, y0), (x1, y1)];
    area.draw(&Rectangle::new(corners, WHITE.mix(0.9).filled()))?;
    area.draw(&Rectangle::new(corners, BLACK.stroke_width(1)))?;
    for (i, name) in names.iter().enumerate() {
        let y = y0 + 15 + row * i as i32;
        let color = Palette99::pick(i).to_rgba();
        let stroke = [(x0 + 8, y), (x0 + 36, y)];
        area.draw(&PathElement::new(stroke, color.stroke_width(2)))?;
        area.draw(&Circle::new((x0 + 22, y), 4, color.filled()))?;
        area.draw(&Text::new(*name, (x0 + 44, y), style.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
