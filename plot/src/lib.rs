//! mason-plot: the recovery experiment's analysis and plot.
//!
//! `mason local` records, under `<dir>/recovery/`, the contiguous prefix of every sequence
//! space about every 10 ms (`contig.csv`) and the time of every kill (`kills.csv`). This
//! crate reads that record ([`read_record`]), measures how progress recovered after each
//! kill ([`recovery`], [`gaps`], [`summary_lines`]) and draws it ([`plot_recovery`]) as
//! SVG and PNG with plotters; [`plot_suite`] draws an experiment suite's throughput against
//! its latency the same way. The PNG's text needs a TrueType font at runtime (Debian:
//! `fonts-dejavu-core`); nothing beyond Rust crates is needed to build.

mod analysis;
mod backend;
mod chart;
mod error;
mod font;
mod record;
mod suite;

pub use analysis::{
    gaps, recovery, summary_lines, Gap, KillRecovery, MIN_GAP_MS, PRE_WINDOW_MS, RATE_WINDOW_MS,
    STALL_ONSET_MS,
};
pub use chart::{plot_recovery, PNG_FILE, SIZE, SVG_FILE, TITLE};
pub use error::{FontProblem, PlotError};
pub use font::{FONT_ENV, FONT_PATHS};
pub use record::{read_record, Record, CONTIG_FILE, KILLS_FILE, RECOVERY_DIR};
pub use suite::{plot_suite, SuitePoint, LOG_SPAN, SUITE_PNG, SUITE_SIZE, SUITE_SVG, SUITE_TITLE};
