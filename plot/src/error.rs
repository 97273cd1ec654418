//! The error type of the crate: I/O, malformed input (file, line and field), drawing, and a
//! missing or unusable font for the PNG.

use std::path::PathBuf;

/// Everything that can go wrong while reading a recovery record or plotting it.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input file does not have the expected shape. `line` is 1-based and `field` names
    /// the column (`t_ms`, `s3`, `what`, or `header` for a file without one).
    #[error("{}:{line}: field `{field}`: {reason}", file.display())]
    Malformed {
        file: PathBuf,
        line: usize,
        field: String,
        reason: String,
    },
    /// plotters failed while drawing `path`.
    #[error("drawing {}: {msg}", path.display())]
    Draw { path: PathBuf, msg: String },
    /// The SVG was written, but the PNG could not be, for want of a usable font.
    #[error("cannot write the PNG: {problem}; the SVG was still written to {}", svg.display())]
    Font { problem: FontProblem, svg: PathBuf },
}

/// Why no font could be registered for drawing PNG text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FontProblem {
    /// None of the well-known font paths exists.
    #[error(
        "no font file found (tried {}); on Debian/Ubuntu install the `fonts-dejavu-core` \
         package, or set MASON_PLOT_FONT to a .ttf file",
        list(tried)
    )]
    Missing { tried: Vec<PathBuf> },
    /// The font file exists but could not be read.
    #[error("font {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// The font file is not a TrueType/OpenType font.
    #[error("font {}: not a TrueType/OpenType font", path.display())]
    Invalid { path: PathBuf },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}
