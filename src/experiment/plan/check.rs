//! The knobs an experiment's plan refuses before anything is launched, each named: flags
//! that cannot apply to the system, kills outside the load, and ports (the roles', the
//! metrics endpoints', the front ends') that would collide.

use super::{data_ip, Kind, Proc, METRICS_OFFSETS};
use crate::args::{System, Workload};
use crate::experiment::args::RunArgs;
use std::net::SocketAddr;

/// Refuses knobs that cannot apply to the system `a` runs, with the `workload` it runs.
pub(super) fn knobs(a: &RunArgs, workload: Workload) -> Result<(), String> {
    let system = a.system;
    if system != System::Zkmason && a.zk.zk_shards.is_some() {
        return Err("--zk-shards applies to the zkmason system only".into());
    }
    if system.zk() {
        let refused = [
            (
                "--kill-sequencer",
                a.kill_sequencer.is_some() && system == System::Rsmkeeper,
            ),
            ("--spaces", a.spaces != 1),
        ];
        if let Some((flag, _)) = refused.iter().find(|x| x.1) {
            return Err(format!(
                "{flag} does not apply to the {} system (one group, no sequencer)",
                system.name()
            ));
        }
    }
    if workload.zk() != system.zk() {
        return Err(format!(
            "--workload {} does not apply to the {} system",
            format!("{workload:?}").to_lowercase(),
            system.name()
        ));
    }
    if system == System::Corfumason && a.spaces != 1 {
        return Err(
            "corfumason runs one sequence space (the log's positions); drop --spaces".into(),
        );
    }
    if system.zk() {
        let roles = [
            "the sequencers'",
            "the proxies'",
            "the log servers'",
            "ZK-Mason's shard servers'",
        ];
        for (off, role) in roles.iter().enumerate() {
            if a.base_port.saturating_add(off as u16) == a.zk_gateway_port {
                return Err(format!(
                    "--zk-gateway-port {} collides with {role} port (--base-port {} + {off}); \
                     choose another --zk-gateway-port or --base-port",
                    a.zk_gateway_port, a.base_port
                ));
            }
        }
    }
    let window = a.warmup + a.duration + a.cooldown;
    for (flag, t) in [
        ("--kill-leader", a.kill_leader),
        ("--kill-sequencer", a.kill_sequencer),
    ] {
        if t.is_some_and(|t| t >= window) {
            return Err(format!(
                "{flag} is at or after the end of the load ({:.1} s of warm-up, run and cool-down)",
                window.as_secs_f64()
            ));
        }
    }
    if !system.proxies() && a.kill_leader.is_some() {
        return Err(format!(
            "--kill-leader: the {} system has no proxy groups",
            system.name()
        ));
    }
    Ok(())
}

/// Gives every process of `procs` its metrics endpoint, on its machine's address.
pub(super) fn add_metrics(procs: &mut [Proc], metrics_base: u16) -> Result<(), String> {
    // Every process's metrics endpoint, on its machine's address. A client alone may
    // have a machine whose address cannot be known (it listens nowhere else): it serves
    // none, and the progress bar leaves it out.
    for p in procs.iter_mut() {
        let ip = match data_ip(&p.machine) {
            Ok(ip) => ip,
            Err(_) if matches!(p.kind, Kind::Client(_)) => continue,
            Err(e) => return Err(e),
        };
        let m = SocketAddr::new(ip, metrics_base + p.metrics_offset());
        p.args
            .extend(["--metrics-listen".to_string(), m.to_string()]);
        p.metrics = Some(m);
    }
    Ok(())
}

/// Refuses a plan with two processes on one address.
pub(super) fn refuse_shared_addresses(procs: &[Proc]) -> Result<(), String> {
    // Two processes on one address (machines that share an address) would fail to start:
    // their listeners, and their metrics endpoints, each on its own address.
    let mut bound: Vec<(SocketAddr, &Proc, &str)> = Vec::new();
    for p in procs {
        let ends = [(p.listen, ""), (p.metrics, "'s metrics endpoint")];
        for (l, what) in ends {
            let Some(l) = l else { continue };
            if let Some((_, q, qwhat)) = bound.iter().find(|(b, _, _)| *b == l) {
                return Err(format!(
                    "{}{qwhat} on {} (line {}) and {}{what} on {} (line {}) would both listen on {l}",
                    q.describe(),
                    q.machine.name,
                    q.machine.line,
                    p.describe(),
                    p.machine.name,
                    p.machine.line,
                ));
            }
            bound.push((l, p, what));
        }
    }
    Ok(())
}

/// `--metrics-base-port` (default `--base-port` + 100), refused where one of its ports
/// would be past 65535 or be one of the roles' ports (`--base-port` + 0..3) or, for the
/// ZooKeeper systems, the front ends' `--zk-gateway-port`.
pub(super) fn metrics_base_port(a: &RunArgs) -> Result<u16, String> {
    let base = match a.metrics_base_port {
        Some(p) => p,
        None => a.base_port.checked_add(100).ok_or_else(|| {
            format!(
                "--base-port {} leaves no room for the metrics ports (--base-port + 100 by default); give --metrics-base-port",
                a.base_port
            )
        })?,
    };
    let flag = format!("--metrics-base-port {base}");
    if base == 0 || base.checked_add(METRICS_OFFSETS).is_none() {
        return Err(format!(
            "{flag}: its ports {base}..{base}+{METRICS_OFFSETS} must be within 1..65535"
        ));
    }
    let mut taken: Vec<(u16, String)> = (0..4u16)
        .filter_map(|off| {
            let p = a.base_port.checked_add(off)?;
            Some((
                p,
                format!("the roles' port --base-port {} + {off}", a.base_port),
            ))
        })
        .collect();
    if a.system.zk() {
        taken.push((a.zk_gateway_port, "--zk-gateway-port".to_string()));
    }
    for off in 0..=METRICS_OFFSETS {
        if let Some((p, what)) = taken.iter().find(|(p, _)| *p == base + off) {
            return Err(format!(
                "{flag}: its port {base} + {off} is {what} ({p}); choose another --metrics-base-port"
            ));
        }
    }
    Ok(base)
}
