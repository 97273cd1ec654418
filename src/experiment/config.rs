//! `config.json` of a run: every setting it ran with, and which process ran on which
//! machine with which flags, so that a results directory says exactly what produced it.

use super::args::RunArgs;
use super::plan::Plan;
use serde_json::{json, Value};

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

fn opt_secs(d: Option<std::time::Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

pub fn json(a: &RunArgs, plan: &Plan, name: &str) -> anyhow::Result<String> {
    let sh = &plan.shape;
    let k = &a.proxy;
    let procs: Vec<Value> = plan
        .procs
        .iter()
        .map(|p| {
            json!({
                "machine": p.machine.name,
                "ssh": p.machine.ctrl,
                "role": p.describe(),
                "listen": p.listen.map(|l| l.to_string()),
                "name": p.name(),
                "metrics": p.metrics.map(|m| format!("http://{m}/metrics")),
                "dir": p.dir,
                "args": p.args,
            })
        })
        .collect();
    let mut v = json!({
        "name": name,
        "mason_version": env!("CARGO_PKG_VERSION"),
        "machine_info": a.machine_info.display().to_string(),
        "system": sh.system.name(),
        "workload": format!("{:?}", sh.workload).to_lowercase(),
        "proxy_machines": plan.triples * 3,
        "proxy_triples": plan.triples,
        "groups": sh.groups,
        "proxy_threads": a.proxy_threads,
        "sequencers": plan.procs.iter().filter(|p| matches!(p.kind, super::plan::Kind::Sequencer(_))).count(),
        "client_machines": plan.clients,
        "client_threads": sh.client_threads,
        "concurrency": sh.concurrency,
        "spaces": sh.spaces,
        "op_spaces": format!("{:?}", sh.op_spaces),
        "payload": sh.payload,
        "duration_s": secs(sh.duration),
        "warmup_s": secs(sh.warmup),
        "cooldown_s": secs(sh.cooldown),
        "retry_timeout_s": secs(sh.retry_timeout),
        "gc": !a.no_gc,
        "kill_leader_s": opt_secs(a.kill_leader),
        "kill_sequencer_s": opt_secs(a.kill_sequencer),
        "log_servers": plan.layout.as_ref().map(|l| l.addrs.len()),
        "replication": plan.layout.as_ref().map(|l| l.replication),
        "prefill": a.prefill,
        "verify": a.verify.on(),
        "fsync": k.fsync.on(),
        "max_batch": k.max_batch,
        "max_outstanding": k.max_outstanding,
        "batch_delay_us": k.batch_delay_us,
        "tick_ms": k.tick_ms,
        "election_ticks": k.election_ticks,
        "heartbeat_ticks": k.heartbeat_ticks,
        "seq_heartbeat_ms": k.seq_heartbeat_ms,
        "seq_timeout_ms": k.seq_timeout_ms,
        "snapshot_entries": k.snapshot_entries,
        "remote_dir": a.remote_dir,
        "base_port": a.base_port,
        "unused_machines": plan.unused,
        "processes": procs,
    });
    // Beside the rest (one json! of them all would pass the macro's recursion limit).
    v["metrics_base_port"] = json!(plan.metrics_base_port);
    v["shared_conns"] = json!(sh.shared_conns);
    v["zk_gateway_port"] = json!(sh.system.zk().then_some(a.zk_gateway_port));
    v["zookeeper_front_ends"] = json!(plan
        .front_ends()
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>());
    Ok(serde_json::to_string_pretty(&v)?)
}
