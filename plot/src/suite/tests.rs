//! Tests of the suite plot: both files written for two series of three points, the SVG
//! still written without a font, bad values skipped, an empty suite drawn as empty axes.

use super::*;

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const SMALL: &str = "1 space x 1 group";
const LARGE: &str = "4 spaces x 2 groups";

fn point(series: &str, concurrency: u32, mops: f64, p50_us: f64, p99_us: f64) -> SuitePoint {
    SuitePoint {
        series: series.to_string(),
        concurrency,
        mops,
        p50_us,
        p99_us,
    }
}

/// Two series of three points each, given out of concurrency order; the p99 values span
/// more than [`LOG_SPAN`], the p50 values do not.
fn suite() -> Vec<SuitePoint> {
    vec![
        point(SMALL, 16, 1.9, 80.0, 900.0),
        point(SMALL, 1, 0.4, 30.0, 40.0),
        point(LARGE, 1, 0.5, 25.0, 35.0),
        point(SMALL, 4, 1.2, 40.0, 120.0),
        point(LARGE, 4, 1.8, 30.0, 60.0),
        point(LARGE, 16, 4.5, 45.0, 300.0),
    ]
}

/// Whether the SVG has a `<text>` element reading exactly `text` (plotters writes its
/// content on a line of its own).
fn has_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

#[test]
fn plot_writes_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("suite");
    let paths = match plot_suite(&suite(), &out) {
        Ok(paths) => paths,
        Err(e) => panic!("plot_suite failed: {e}"),
    };
    assert_eq!(paths, vec![out.join(SUITE_SVG), out.join(SUITE_PNG)]);

    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
    for text in [
        SUITE_TITLE,
        SMALL,
        LARGE,
        "throughput (Mops/s)",
        "p50 latency (us)",
        "p99 latency (us)",
    ] {
        assert!(has_text(&svg, text), "SVG lacks {text:?}");
    }
    // The legend is drawn once, in the p50 panel.
    assert_eq!(svg.matches(&format!(">\n{SMALL}\n</text>")).count(), 1);

    let png = std::fs::read(&paths[1]).unwrap();
    assert!(png.starts_with(PNG_MAGIC));
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(&png[16..24], &[0, 0, 5, 160, 0, 0, 2, 128]);
}

#[test]
fn without_a_font_the_svg_is_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let tried = vec![PathBuf::from("/nonexistent/DejaVuSans.ttf")];
    let font = Err(FontProblem::Missing { tried });
    let err = write_suite(&suite(), dir.path(), font).unwrap_err();
    let svg_path = dir.path().join(SUITE_SVG);
    assert!(matches!(&err, PlotError::Font { svg, .. } if svg == &svg_path));
    let msg = err.to_string();
    assert!(msg.contains("fonts-dejavu-core"), "{msg}");

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for text in [SUITE_TITLE, SMALL, LARGE] {
        assert!(has_text(&svg, text), "SVG lacks {text:?}");
    }
    assert!(!dir.path().join(SUITE_PNG).exists());
}

#[test]
fn lines_follow_concurrency_and_skip_unplottable_points() {
    let mut points = suite();
    points.push(point(SMALL, 8, f64::NAN, 50.0, 60.0));
    points.push(point(LARGE, 8, 0.0, 50.0, 60.0));
    points.push(point("idle", 1, f64::INFINITY, 1.0, 1.0));
    points.push(point(LARGE, 64, 6.0, f64::NAN, 0.0));
    let lines = lines(&points);
    let names: Vec<&str> = lines.iter().map(|l| l.name).collect();
    assert_eq!(names, [SMALL, LARGE]);
    for line in &lines {
        let order: Vec<u32> = line.points.iter().map(|p| p.concurrency).collect();
        assert_eq!(order, [1, 4, 16], "{}", line.name);
    }
}

#[test]
fn bad_latencies_and_empty_suites_still_plot() {
    let mut points = suite();
    points.push(point(SMALL, 32, 2.0, f64::NAN, 0.0));
    points.push(point(LARGE, 32, 5.0, -1.0, f64::INFINITY));
    let dir = tempfile::tempdir().unwrap();
    for (name, points) in [("bad", points), ("empty", Vec::new())] {
        let out = dir.path().join(name);
        let paths = plot_suite(&points, &out).unwrap();
        assert_eq!(paths, vec![out.join(SUITE_SVG), out.join(SUITE_PNG)]);
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(has_text(&svg, "p99 latency (us)"), "{name}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{name}");
    }
}

#[test]
fn tick_labels_and_log_ticks() {
    assert_eq!(short(0.0), "0");
    assert_eq!(short(0.5), "0.5");
    assert_eq!(short(2.0), "2");
    assert_eq!(short(12.5), "12.5");
    assert_eq!(short(300.0), "300");
    // Small throughputs keep their significant digits (0.01 and 0.015 differ).
    assert_eq!(short(0.015), "0.015");
    assert_eq!(short(0.0052), "0.0052");
    let (bold, light) = log_ticks(15.0, 1500.0);
    assert_eq!(bold, [20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
    assert_eq!(light.len(), 8 + 9 + 1);
    let (bold, _) = log_ticks(0.5, 2e5);
    assert_eq!(bold, [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]);
}
