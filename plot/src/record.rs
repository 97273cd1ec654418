//! Reading a recovery record: `<dir>/recovery/contig.csv` (the contiguous prefix of every
//! sequence space over time) and `<dir>/recovery/kills.csv` (what was killed when).
//!
//! Parsing is strict: a bad header, a field that is not a number, a wrong column count, a
//! time that goes back or a prefix that goes down is a [`PlotError::Malformed`] naming the
//! file, the 1-based line and the field. Blank lines (and a trailing `\r`) are ignored.

use std::path::{Path, PathBuf};

use crate::error::PlotError;

/// Name of the sub-directory of a results dir that holds the record.
pub const RECOVERY_DIR: &str = "recovery";
/// File name of the prefix samples.
pub const CONTIG_FILE: &str = "contig.csv";
/// File name of the kill times.
pub const KILLS_FILE: &str = "kills.csv";

/// One run's recovery record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Number of sequence spaces (columns `s0..sN-1`).
    pub spaces: usize,
    /// `(t_ms, prefix per space)`, in file order: `t_ms` is non-decreasing and every
    /// space's prefix is non-decreasing; each inner vector has `spaces` entries.
    pub samples: Vec<(u64, Vec<u64>)>,
    /// `(t_ms, what)` for every kill, in file order.
    pub kills: Vec<(u64, String)>,
}

/// `(t_ms, prefix per space)` rows, as in [`Record::samples`].
pub(crate) type Samples = Vec<(u64, Vec<u64>)>;

/// Reads `<dir>/recovery/contig.csv` and `<dir>/recovery/kills.csv`.
pub fn read_record(dir: &Path) -> Result<Record, PlotError> {
    let rec_dir = dir.join(RECOVERY_DIR);
    let contig = rec_dir.join(CONTIG_FILE);
    let (spaces, samples) = parse_contig(&contig, &read(&contig)?)?;
    let kills_path = rec_dir.join(KILLS_FILE);
    let kills = parse_kills(&kills_path, &read(&kills_path)?)?;
    Ok(Record {
        spaces,
        samples,
        kills,
    })
}

fn read(path: &Path) -> Result<String, PlotError> {
    std::fs::read_to_string(path).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The non-blank lines of `text` with their 1-based line numbers, `\r` and spaces trimmed.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, line: usize, field: &str, reason: impl Into<String>) -> PlotError {
        PlotError::Malformed {
            file: PathBuf::from(self.file),
            line,
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    fn num(&self, line: usize, field: &str, text: &str) -> Result<u64, PlotError> {
        text.trim().parse::<u64>().map_err(|_| {
            self.err(
                line,
                field,
                format!("`{}` is not a non-negative integer", text.trim()),
            )
        })
    }

    /// Checks that `fields` are exactly `expected`, in order.
    fn header(&self, line: usize, fields: &[&str], expected: &[String]) -> Result<(), PlotError> {
        for (i, want) in expected.iter().enumerate() {
            match fields.get(i).map(|f| f.trim()) {
                Some(got) if got == want => {}
                Some(got) => {
                    return Err(self.err(line, want, format!("expected `{want}`, found `{got}`")))
                }
                None => return Err(self.err(line, want, "missing from the header")),
            }
        }
        if let Some(extra) = fields.get(expected.len()) {
            let field = format!("column {}", expected.len() + 1);
            return Err(self.err(line, &field, format!("unexpected `{}`", extra.trim())));
        }
        Ok(())
    }
}

/// Parses the text of `contig.csv`; `file` only names it in errors.
pub(crate) fn parse_contig(file: &Path, text: &str) -> Result<(usize, Samples), PlotError> {
    let ctx = Ctx { file };
    let mut it = lines(text);
    let Some((hline, header)) = it.next() else {
        return Err(ctx.err(1, "header", "file is empty, expected `t_ms,s0,...`"));
    };
    let fields: Vec<&str> = header.split(',').collect();
    if fields.len() < 2 {
        ctx.header(hline, &fields, &["t_ms".to_string()])?;
        return Err(ctx.err(hline, "s0", "missing: need at least one space column"));
    }
    let spaces = fields.len() - 1;
    let names: Vec<String> = std::iter::once("t_ms".to_string())
        .chain((0..spaces).map(|s| format!("s{s}")))
        .collect();
    ctx.header(hline, &fields, &names)?;

    let mut samples: Samples = Vec::new();
    for (line, row) in it {
        let fields: Vec<&str> = row.split(',').collect();
        if fields.len() < names.len() {
            let reason = format!(
                "missing (row has {} fields, header has {})",
                fields.len(),
                names.len()
            );
            return Err(ctx.err(line, &names[fields.len()], reason));
        }
        if fields.len() > names.len() {
            let field = format!("column {}", names.len() + 1);
            let reason = format!(
                "unexpected (row has {} fields, header has {})",
                fields.len(),
                names.len()
            );
            return Err(ctx.err(line, &field, reason));
        }
        let t = ctx.num(line, "t_ms", fields[0])?;
        let mut values = Vec::with_capacity(spaces);
        for (s, f) in fields[1..].iter().enumerate() {
            values.push(ctx.num(line, &names[s + 1], f)?);
        }
        if let Some((pt, pv)) = samples.last() {
            if t < *pt {
                return Err(ctx.err(line, "t_ms", format!("goes back from {pt} to {t}")));
            }
            for (s, (old, new)) in pv.iter().zip(&values).enumerate() {
                if new < old {
                    let reason = format!("prefix goes down from {old} to {new}");
                    return Err(ctx.err(line, &names[s + 1], reason));
                }
            }
        }
        samples.push((t, values));
    }
    Ok((spaces, samples))
}

/// Parses the text of `kills.csv`; `file` only names it in errors. `what` is everything
/// after the first comma, trimmed, and must not be empty.
pub(crate) fn parse_kills(file: &Path, text: &str) -> Result<Vec<(u64, String)>, PlotError> {
    let ctx = Ctx { file };
    let mut it = lines(text);
    let Some((hline, header)) = it.next() else {
        return Err(ctx.err(1, "header", "file is empty, expected `t_ms,what`"));
    };
    let fields: Vec<&str> = header.split(',').collect();
    ctx.header(hline, &fields, &["t_ms".to_string(), "what".to_string()])?;
    let mut kills = Vec::new();
    for (line, row) in it {
        let Some((t, what)) = row.split_once(',') else {
            return Err(ctx.err(line, "what", "missing (row has 1 field, header has 2)"));
        };
        let t = ctx.num(line, "t_ms", t)?;
        let what = what.trim();
        if what.is_empty() {
            return Err(ctx.err(line, "what", "empty"));
        }
        kills.push((t, what.to_string()));
    }
    Ok(kills)
}

#[cfg(test)]
mod tests;
