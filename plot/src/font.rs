//! The font for PNG text: plotters' `ab_glyph` backend draws glyphs from a font registered
//! at runtime, so we load a TrueType file from a well-known path (Debian's
//! `fonts-dejavu-core` package provides the first one) and register it once per process as
//! the `sans-serif` family. No system library is needed at build time.

use std::path::PathBuf;
use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::error::FontProblem;

/// The family every text of the plot uses.
pub const FAMILY: &str = "sans-serif";

/// Environment variable naming a .ttf file to use instead of the well-known paths.
pub const FONT_ENV: &str = "MASON_PLOT_FONT";

/// Where distributions put DejaVu Sans: Debian/Ubuntu (`fonts-dejavu-core`), Fedora, Arch,
/// Alpine.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

static REGISTERED: OnceLock<Result<PathBuf, FontProblem>> = OnceLock::new();

/// Registers the font (once per process) and returns its path, or why there is none.
pub fn ensure_registered() -> Result<PathBuf, FontProblem> {
    REGISTERED.get_or_init(register).clone()
}

fn candidates() -> Vec<PathBuf> {
    match std::env::var_os(FONT_ENV) {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => FONT_PATHS.iter().map(PathBuf::from).collect(),
    }
}

fn register() -> Result<PathBuf, FontProblem> {
    let tried = candidates();
    let Some(path) = tried.iter().find(|p| p.is_file()).cloned() else {
        return Err(FontProblem::Missing { tried });
    };
    let bytes = std::fs::read(&path).map_err(|e| FontProblem::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // plotters keeps a `&'static [u8]`; this runs at most once per process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| FontProblem::Invalid { path: path.clone() })?;
    Ok(path)
}
