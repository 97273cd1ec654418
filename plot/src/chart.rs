//! Drawing the recovery plot: `<dir>/recovery/recovery.svg` and `recovery.png`, the
//! contiguous prefix of every space over time, with the kills as dashed vertical markers
//! and every stall of at least [`MIN_GAP_MS`] annotated with its duration.
//!
//! The same drawing code runs on both backends (wrapped in [`Metrics`]). The SVG needs no
//! font; the PNG does (see [`crate::font`]), so without one the SVG is still written and
//! the PNG is reported as a [`PlotError::Font`].

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::{gaps_with_value, space_series, MIN_GAP_MS};
use crate::backend::Metrics;
use crate::error::{FontProblem, PlotError};
use crate::font::{self, FAMILY};
use crate::record::{read_record, Record, RECOVERY_DIR};

/// The plot's title.
pub const TITLE: &str = "contiguous progress per space";
/// File name of the SVG plot.
pub const SVG_FILE: &str = "recovery.svg";
/// File name of the PNG plot.
pub const PNG_FILE: &str = "recovery.png";
/// Size of both images, in pixels.
pub const SIZE: (u32, u32) = (1280, 720);

/// Reads the record in `dir` and writes `<dir>/recovery/recovery.svg` and
/// `<dir>/recovery/recovery.png`; returns their paths. Without a usable font the SVG is
/// still written and the error ([`PlotError::Font`]) names the font paths tried, the
/// Debian package that provides one, and the SVG.
pub fn plot_recovery(dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let record = read_record(dir)?;
    let font = font::ensure_registered().map(|_| ());
    write_plots(&record, &dir.join(RECOVERY_DIR), font)
}

/// Writes both plots of `record` into `out`; `font` says whether a font is registered.
pub(crate) fn write_plots(
    record: &Record,
    out: &Path,
    font: Result<(), FontProblem>,
) -> Result<Vec<PathBuf>, PlotError> {
    let svg = out.join(SVG_FILE);
    let backend = Metrics {
        inner: SVGBackend::new(&svg, SIZE),
        naive: font.is_err(),
    };
    render(backend.into_drawing_area(), record, &svg)?;
    if let Err(problem) = font {
        return Err(PlotError::Font { problem, svg });
    }
    let png = out.join(PNG_FILE);
    let backend = Metrics {
        inner: BitMapBackend::new(&png, SIZE),
        naive: false,
    };
    render(backend.into_drawing_area(), record, &png)?;
    Ok(vec![svg, png])
}

fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    record: &Record,
    path: &Path,
) -> Result<(), PlotError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| PlotError::Draw {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    draw(&root, record).map_err(err)?;
    root.present().map_err(err)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn secs(t_ms: u64) -> f64 {
    t_ms as f64 / 1000.0
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, record: &Record) -> DrawResult<DB> {
    let last_t = record.samples.last().map_or(0, |(t, _)| *t);
    let last_kill = record.kills.iter().map(|(t, _)| *t).max().unwrap_or(0);
    let x_max = secs(last_t.max(last_kill)).max(0.1);
    let top = record
        .samples
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .max();
    let y_max = (top.unwrap_or(0) as f64 * 1.1).max(1.0);

    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(TITLE, (FAMILY, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(100)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("highest contiguous number (prefix length)")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;

    for space in 0..record.spaces {
        let color = Palette99::pick(space).to_rgba();
        let values = space_series(record, space);
        let points = record
            .samples
            .iter()
            .zip(values)
            .map(|((t, _), v)| (secs(*t), v as f64));
        chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
    }

    for (t, what) in &record.kills {
        let x = secs(*t);
        let style = ShapeStyle::from(&BLACK).stroke_width(2);
        chart.draw_series(DashedLineSeries::new([(x, 0.0), (x, y_max)], 8, 6, style))?;
        let label = Text::new(what.clone(), (5, 5), (FAMILY, 16).into_font().color(&BLACK));
        chart.draw_series(std::iter::once(EmptyElement::at((x, y_max)) + label))?;
    }

    for (gap, value) in gaps_with_value(record, MIN_GAP_MS) {
        let color = Palette99::pick(gap.space).to_rgba();
        let (x0, x1, y) = (secs(gap.start_ms), secs(gap.end_ms), value as f64);
        let mark = PathElement::new([(x0, y), (x1, y)], color.stroke_width(6));
        chart.draw_series(std::iter::once(mark))?;
        // Stack the labels of different spaces so that simultaneous gaps stay readable.
        let dy = -18 - 16 * (gap.space % 6) as i32;
        let text = format!("{} ms", gap.duration_ms());
        let label = Text::new(text, (2, dy), (FAMILY, 14).into_font().color(&color));
        chart.draw_series(std::iter::once(EmptyElement::at((x0, y)) + label))?;
    }

    legend(&chart.plotting_area().strip_coord_spec(), record.spaces)
}

/// A box in the upper-left corner of the plotting area with one entry per space. Drawn by
/// hand: plotters' series labels measure text through the font even for the SVG.
fn legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, spaces: usize) -> DrawResult<DB> {
    if spaces == 0 {
        return Ok(());
    }
    let style = TextStyle::from((FAMILY, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let labels: Vec<String> = (0..spaces).map(|s| format!("space {s}")).collect();
    let mut width = 0;
    for label in &labels {
        width = width.max(area.estimate_text_size(label, &style)?.0);
    }
    let (x0, y0, row) = (12, 12, 20);
    let x1 = x0 + 54 + width as i32;
    let y1 = y0 + 10 + row * spaces as i32;
    area.draw(&Rectangle::new(
        [(x0, y0), (x1, y1)],
        WHITE.mix(0.9).filled(),
    ))?;
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))?;
    for (s, label) in labels.iter().enumerate() {
        let y = y0 + 15 + row * s as i32;
        let color = Palette99::pick(s).to_rgba();
        area.draw(&PathElement::new(
            [(x0 + 8, y), (x0 + 36, y)],
            color.stroke_width(3),
        ))?;
        area.draw(&Text::new(label.as_str(), (x0 + 44, y), style.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
