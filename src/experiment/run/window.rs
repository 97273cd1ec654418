//! The measured window of `mason experiment run`: a progress bar (with the clients' live
//! figures) through warm-up, the measured window, cool-down and the drain, the scheduled
//! kills made on time, and the clients polled until every one has exited.

use super::check_interrupted;
use crate::experiment::args::RunArgs;
use crate::experiment::plan::{Kind, Plan, Proc};
use crate::experiment::remote;
use crate::roles;
use indicatif::{ProgressBar, ProgressStyle};
use mason_setup::ssh::{on_all, Ssh};
use std::time::{Duration, Instant};

/// The machine whose proxy leads group 0 now (the highest term its log claims).
fn leader_of_group0<'a>(ssh: &Ssh, proxies: &[&'a Proc]) -> Option<&'a Proc> {
    let triple0: Vec<&Proc> = proxies
        .iter()
        .copied()
        .filter(|p| matches!(p.kind, Kind::Proxy { triple: 0, .. }))
        .collect();
    let terms = on_all(&triple0, 3, |p| {
        remote::leading_lines(ssh, p)
            .ok()
            .and_then(|t| roles::led_term(&t, 0))
    });
    triple0
        .into_iter()
        .zip(terms)
        .filter_map(|(p, t)| t.map(|t| (t, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
}

/// Prints above the progress bar (or alone, when stderr is not a terminal).
fn say(bar: &ProgressBar, msg: String) {
    bar.suspend(|| eprintln!("experiment: {msg}"));
}

/// What a run killed (and did not restart).
#[derive(Default)]
pub(super) struct Killed {
    /// Proxy processes, as (triple, replica).
    pub proxies: Vec<(u32, u32)>,
    pub sequencer: bool,
}

/// Shows progress until every client has exited, and makes the scheduled kills. Returns
/// the kills' record (`t_ms,what`) and what was killed.
pub(super) fn drive(
    a: &RunArgs,
    ssh: &Ssh,
    plan: &Plan,
    clients: &[&Proc],
    proxies: &[&Proc],
    t0: Instant,
) -> anyhow::Result<(String, Killed)> {
    let mut killed = Killed::default();
    let (warm, dur, cool) = (a.warmup, a.duration, a.cooldown);
    let total = warm + dur + cool;
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Live figures from the clients' metrics endpoints, when they serve one (on their
    // machines' addresses, reached from here as the log servers are).
    let metrics: Vec<_> = clients
        .iter()
        .filter_map(|p| crate::live::metrics_of(&p.args))
        .collect();
    let live = (!metrics.is_empty()).then(|| crate::live::Live::start(metrics));
    let mut kill_log = String::from("t_ms,what\n");
    let (mut leader_done, mut seq_done) = (false, false);
    // The drain after the window, and a read workload's prefill before it.
    let limit = total + Duration::from_secs(90 + a.prefill / 1000);
    let mut last_poll = Instant::now() - Duration::from_secs(10);
    loop {
        let t = t0.elapsed();
        bar.set_position((t.as_millis() as u64).min(total.as_millis() as u64));
        let phase = if t < warm {
            "warm-up"
        } else if t < warm + dur {
            "measuring"
        } else if t < total {
            "cool-down"
        } else {
            "draining"
        };
        bar.set_message(match &live {
            Some(l) => format!("{phase} {}", l.text()),
            None => phase.to_string(),
        });
        if !leader_done && a.kill_leader.is_some_and(|k| t >= k) {
            leader_done = true;
            match leader_of_group0(ssh, proxies) {
                Some(p) => {
                    remote::signal(ssh, p, "KILL", false)?;
                    if let Kind::Proxy { triple, replica } = p.kind {
                        killed.proxies.push((triple, replica));
                    }
                    kill_log.push_str(&format!("{},leader\n", t0.elapsed().as_millis()));
                    let (m, at) = (&p.machine.name, t.as_secs_f64());
                    say(
                        &bar,
                        format!("SIGKILLed {m} (leader of group 0) at {at:.2}s"),
                    );
                }
                None => say(&bar, "no leader of group 0 found to kill".into()),
            }
        }
        if !seq_done && a.kill_sequencer.is_some_and(|k| t >= k) {
            seq_done = true;
            if let Some(p) = plan.of(|k| k == Kind::Sequencer(0)).next() {
                remote::signal(ssh, p, "KILL", false)?;
                killed.sequencer = true;
                kill_log.push_str(&format!("{},sequencer\n", t0.elapsed().as_millis()));
                let (m, at) = (&p.machine.name, t.as_secs_f64());
                say(
                    &bar,
                    format!("SIGKILLed the primary sequencer on {m} at {at:.2}s"),
                );
            }
        }
        // Poll the clients every 2 s during the run (one that died early ends it early),
        // twice a second once the window is over.
        let every = if t >= total { 500 } else { 2000 };
        if last_poll.elapsed() >= Duration::from_millis(every) {
            last_poll = Instant::now();
            let st: Vec<anyhow::Result<Option<i32>>> =
                on_all(clients, 32, |p| remote::exit_status(ssh, p));
            let mut running = 0;
            for (p, s) in clients.iter().zip(st) {
                match s? {
                    None => running += 1,
                    Some(0) if t >= warm + dur => {}
                    Some(0) => anyhow::bail!(
                        "{} on {} exited before its measured window ended; see {}/logs",
                        p.describe(),
                        p.machine.name,
                        p.dir
                    ),
                    Some(c) => anyhow::bail!(
                        "{} on {} exited with status {c}; see its log in {}/logs",
                        p.describe(),
                        p.machine.name,
                        p.dir
                    ),
                }
            }
            if running == 0 {
                break;
            }
        }
        check_interrupted()?;
        anyhow::ensure!(
            t < limit,
            "the clients are still running {:?} after they started",
            limit
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    bar.finish_and_clear();
    Ok((kill_log, killed))
}
