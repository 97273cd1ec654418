//! Tests of the plot: both files written for a synthetic record with a kill and a stall,
//! and the SVG still written (with a clear error) when no font is available.

use super::*;

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Writes a results dir whose record has two spaces, a leader kill at 2000 ms and an
/// 870 ms stall of both spaces (2030..2900), plus a 40 ms stall of space 1 only.
fn results_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join(RECOVERY_DIR);
    std::fs::create_dir(&rec).unwrap();
    let mut contig = String::from("t_ms,s0,s1\n");
    for i in 0..=400u64 {
        let t = i * 10;
        let s0 = if (2030..2900).contains(&t) { 2030 } else { t };
        let s1 = if (3500..3540).contains(&t) {
            1750
        } else {
            s0 / 2
        };
        contig.push_str(&format!("{t},{s0},{s1}\n"));
    }
    std::fs::write(rec.join("contig.csv"), contig).unwrap();
    std::fs::write(rec.join("kills.csv"), "t_ms,what\n2000,leader\n").unwrap();
    dir
}

fn svg_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Whether the SVG has a `<text>` element reading exactly `text` (plotters writes its
/// content on a line of its own).
fn has_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

#[test]
fn plot_writes_svg_and_png() {
    let dir = results_dir();
    let paths = match plot_recovery(dir.path()) {
        Ok(paths) => paths,
        Err(e) => panic!("plot_recovery failed: {e}"),
    };
    let rec = dir.path().join(RECOVERY_DIR);
    assert_eq!(paths, vec![rec.join(SVG_FILE), rec.join(PNG_FILE)]);

    let svg = svg_text(&paths[0]);
    assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
    for text in [
        TITLE, "leader", "870 ms", "40 ms", "space 0", "space 1", "time (s)",
    ] {
        assert!(has_text(&svg, text), "SVG lacks {text:?}");
    }
    // Both spaces stall over the kill, so "870 ms" appears twice; no other gap exists.
    assert_eq!(svg.matches(" ms\n</text>").count(), 3);

    let png = std::fs::read(&paths[1]).unwrap();
    assert!(png.starts_with(PNG_MAGIC));
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(&png[16..24], &[0, 0, 5, 0, 0, 0, 2, 208]);
}

#[test]
fn without_a_font_the_svg_is_still_written() {
    let dir = results_dir();
    let record = read_record(dir.path()).unwrap();
    let out = dir.path().join(RECOVERY_DIR);
    let tried = vec![PathBuf::from("/nonexistent/DejaVuSans.ttf")];
    let err = write_plots(&record, &out, Err(FontProblem::Missing { tried })).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, PlotError::Font { svg, .. } if svg == &out.join(SVG_FILE)));
    assert!(msg.contains("/nonexistent/DejaVuSans.ttf"), "{msg}");
    assert!(msg.contains("fonts-dejavu-core"), "{msg}");
    assert!(
        msg.contains(&out.join(SVG_FILE).display().to_string()),
        "{msg}"
    );

    let svg = svg_text(&out.join(SVG_FILE));
    for text in [TITLE, "leader", "870 ms", "40 ms", "space 1"] {
        assert!(has_text(&svg, text), "SVG lacks {text:?}");
    }
    assert!(!out.join(PNG_FILE).exists());
}
