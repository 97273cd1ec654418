//! `mason experiment suite`: Mason's run_suite.sh. Sweeps spaces x groups x concurrency,
//! runs each point `--trials` times (a run that fails to complete is retried once, as
//! Mason's suite did, and then recorded as failed; a failed verification is recorded at
//! once), and writes:
//! - `trials.csv`: every run's figures;
//! - `suite.csv`: every point, with the median of its trials;
//! - `tput-latency.svg` / `.png`: throughput against p50 and p99 latency, one line per
//!   (spaces, groups) series.

use super::args::SuiteArgs;
use super::run::{self, Outcome};
use anyhow::Context;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The five figures of an aggregate line: Mops/s, p50, p99, p99.9, p99.99 (us).
pub fn parse_aggregate(line: &str) -> Option<[f64; 5]> {
    let v: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(a: &SuiteArgs) -> anyhow::Result<i32> {
    let name = a.suite_name.clone().unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("suite-{}-{t}", a.run.system.name())
    });
    let dir = a.run.results.join(&name);
    if dir.join("trials.csv").exists() {
        anyhow::bail!(
            "{} already holds a suite; remove it or choose another --suite-name",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Check the machines and every point's plan before the first run.
    let machines = run::load_machines(&a.run.machine_info)?;
    let mut points = Vec::new();
    for &s in &a.spaces_list {
        for &g in &a.groups_list {
            for &c in &a.concurrency_list {
                let mut r = a.run.clone();
                (r.spaces, r.groups, r.concurrency) = (s, g, c);
                super::plan::build(&machines, &r).map_err(|e| {
                    anyhow::anyhow!("point spaces={s} groups={g} concurrency={c}: {e}")
                })?;
                points.push(r);
            }
        }
    }
    let total = points.len() * a.trials as usize;
    eprintln!(
        "suite {name}: {} point(s) x {} trial(s) = {total} run(s); results in {}",
        points.len(),
        a.trials,
        dir.display()
    );
    let mut trials_csv = String::from(
        "spaces,groups,concurrency,trial,mops,p50_us,p99_us,p999_us,p9999_us,verdict\n",
    );
    let mut suite_csv = String::from(
        "spaces,groups,concurrency,trials_ok,mops,p50_us,p99_us,p999_us,p9999_us,mops_per_trial\n",
    );
    let mut plot_points = Vec::new();
    let mut failures = 0;
    let mut done = 0;
    for r in &points {
        let mut figures: Vec<[f64; 5]> = Vec::new();
        for t in 0..a.trials {
            done += 1;
            let mut ra = r.clone();
            ra.results = dir.clone();
            let base = format!("s{}-g{}-c{}-t{t}", r.spaces, r.groups, r.concurrency);
            eprintln!("suite: run {done}/{total}: {base}");
            let mut outcome = None;
            for attempt in 0..2 {
                if run::interrupted() {
                    anyhow::bail!("interrupted; the figures so far are in {}", dir.display());
                }
                ra.name = Some(if attempt == 0 {
                    base.clone()
                } else {
                    format!("{base}-retry")
                });
                match run::run(&ra) {
                    Ok(o) if o.code == 0 && o.aggregate.is_some() => {
                        outcome = Some(o);
                        break;
                    }
                    Ok(o) => {
                        // A violated invariant is a finding, not a flake: no retry.
                        eprintln!(
                            "suite: {base}: verification failed (see {})",
                            o.dir.display()
                        );
                        break;
                    }
                    Err(e) => eprintln!("suite: {base}: {e:#}"),
                }
            }
            let fig = outcome
                .as_ref()
                .and_then(|o: &Outcome| o.aggregate.as_deref())
                .and_then(parse_aggregate);
            let (verdict, f) = match fig {
                Some(f) => ("ok", f),
                None => {
                    failures += 1;
                    ("failed", [f64::NAN; 5])
                }
            };
            writeln!(
                trials_csv,
                "{},{},{},{t},{},{},{},{},{},{verdict}",
                r.spaces, r.groups, r.concurrency, f[0], f[1], f[2], f[3], f[4]
            )?;
            if fig.is_some() {
                figures.push(f);
            }
            std::fs::write(dir.join("trials.csv"), &trials_csv)?;
        }
        let col = |i: usize| median(&figures.iter().map(|f| f[i]).collect::<Vec<_>>());
        let per: Vec<String> = figures.iter().map(|f| format!("{:.6}", f[0])).collect();
        writeln!(
            suite_csv,
            "{},{},{},{},{:.6},{:.1},{:.1},{:.1},{:.1},{}",
            r.spaces,
            r.groups,
            r.concurrency,
            figures.len(),
            col(0),
            col(1),
            col(2),
            col(3),
            col(4),
            per.join(";")
        )?;
        std::fs::write(dir.join("suite.csv"), &suite_csv)?;
        if !figures.is_empty() {
            plot_points.push(mason_plot::SuitePoint {
                series: format!("spaces={} groups={}", r.spaces, r.groups),
                concurrency: r.concurrency,
                mops: col(0),
                p50_us: col(1),
                p99_us: col(2),
            });
        }
    }
    print!("{suite_csv}");
    println!("csv: {}", dir.join("suite.csv").display());
    match mason_plot::plot_suite(&plot_points, &dir) {
        Ok(paths) => {
            for p in paths {
                println!("plot: {}", p.display());
            }
        }
        Err(e) => println!("plot: not drawn: {e}"),
    }
    if failures > 0 {
        eprintln!("suite: {failures} run(s) failed twice; see trials.csv");
        return Ok(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_lines_and_medians() {
        assert_eq!(
            parse_aggregate("0.038597 2992.1 8134.7 27492.4 31948.8"),
            Some([0.038597, 2992.1, 8134.7, 27492.4, 31948.8])
        );
        assert_eq!(parse_aggregate("0.1 2 3"), None);
        assert_eq!(parse_aggregate("x 1 2 3 4"), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
        assert!(median(&[]).is_nan());
    }
}
