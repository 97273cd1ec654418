//! `mason sim`: replay one seed of a scenario, or sweep many, and report each verdict.
//! Standard output is a function of the arguments alone (byte-identical for the same
//! seeds); wall-clock figures go to standard error with `--timing`.

use crate::args::SimArgs;
use mason_sim::{find, run_seed, Options, Outcome, Scenario, SimMutant, SCENARIOS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub fn run(a: SimArgs) -> anyhow::Result<i32> {
    if a.list {
        for s in SCENARIOS {
            println!("{:<16} {}", s.name, s.about);
        }
        return Ok(0);
    }
    let mutant: Option<SimMutant> = match &a.mutant {
        Some(m) => match m.parse() {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("error: --mutant: {e}");
                return Ok(2);
            }
        },
        None => None,
    };
    let scenarios: Vec<&Scenario> = if a.scenario == "all" {
        SCENARIOS.iter().filter(|s| s.in_all).collect()
    } else {
        match find(&a.scenario) {
            Some(s) => vec![s],
            None => {
                eprintln!(
                    "error: --scenario: no scenario '{}' (see mason sim --list)",
                    a.scenario
                );
                return Ok(2);
            }
        }
    };
    let seeds = match (a.seed, a.seeds.clone()) {
        (Some(s), _) => s..s + 1,
        (None, Some(r)) => r,
        (None, None) => 0..1,
    };
    let opts = Options {
        mutant,
        verbose: a.trace,
    };
    let mut failed = 0u64;
    for sc in scenarios {
        let started = Instant::now();
        let outcomes = sweep(sc, seeds.clone(), &opts, a.jobs as usize);
        let mut events = 0u64;
        let mut virt = 0u64;
        for o in &outcomes {
            println!("{}", o.render(sc.name, a.mutant.as_deref()));
            events += o.events;
            virt += o.virtual_us;
            if o.result.is_err() {
                failed += 1;
            }
        }
        let bad = outcomes.iter().filter(|o| o.result.is_err()).count();
        println!(
            "scenario {}: {} seeds, {} failed",
            sc.name,
            outcomes.len(),
            bad
        );
        if a.timing {
            let wall = started.elapsed().as_secs_f64();
            eprintln!(
                "timing {}: {:.2}s wall, {} events, {:.0} events/s, {:.2} virtual s per wall s (jobs={})",
                sc.name,
                wall,
                events,
                events as f64 / wall,
                virt as f64 / 1e6 / wall,
                a.jobs
            );
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// Runs the seeds on `jobs` threads; returns the outcomes in seed order.
fn sweep(sc: &Scenario, seeds: std::ops::Range<u64>, opts: &Options, jobs: usize) -> Vec<Outcome> {
    let next = AtomicU64::new(seeds.start);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let o = run_seed(sc, seed, opts);
                if let Ok(mut d) = done.lock() {
                    d.push(o);
                }
            });
        }
    });
    let mut v = done.into_inner().unwrap_or_default();
    v.sort_by_key(|o| o.seed);
    v
}
