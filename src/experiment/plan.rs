//! The plan of an experiment: which role process runs on which machine, listening where,
//! with which flags. Built from the machines and the knobs alone (no SSH), so that every
//! mistake (too few machines of a role, proxies not in triples, an address that cannot be
//! known) is found before anything is launched, and `--dry-run` can print it.

use super::args::RunArgs;
use crate::args::{System, Workload};
use crate::logrun::LogLayout;
use crate::roles::{self, ProxyPlace, Shape};
use mason_setup::machines::{with_role, Machine, Role};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Servers per ZK-Mason shard.
pub const ZK_SERVERS: u32 = 3;

/// What a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Sequencer `i` (0 is the first primary).
    Sequencer(usize),
    Proxy {
        triple: u32,
        replica: u32,
    },
    /// Log server `i`: member `i % R` of shard `i / R`'s chain.
    LogServer(usize),
    /// ZK-Mason shard server `index` of `shard`.
    ZkServer {
        shard: u32,
        index: u32,
    },
    Client(u32),
    /// ZooKeeper front end `i` (`mason zk-gateway`; RSMKeeper and ZK-Mason only) on client
    /// machine `i`, for ZooKeeper's own clients (zkCli.sh, kazoo) while the run lasts.
    /// Why on the client machines and not on a tier of their own: a front end sits next
    /// to the load it serves, so a ZooKeeper client on a client machine reaches it over
    /// loopback and the proxies in one network hop (as the load generator does), one
    /// fewer than through separate front-end machines; the machines file needs no new
    /// role; and the front ends scale with the client machines, which is where the
    /// sessions and their load come from.
    ZkGateway(u32),
}

/// One process of the run.
#[derive(Clone, Debug)]
pub struct Proc {
    pub machine: Machine,
    pub kind: Kind,
    /// `<remote-dir>/<machine name>`: the binary, logs/, data/, out/, pids/.
    pub dir: String,
    pub listen: Option<SocketAddr>,
    /// Its Prometheus endpoint (`--metrics-listen`, in `args`): its machine's experiment
    /// address, on `--metrics-base-port` + [`Proc::metrics_offset`]. None only for a
    /// client whose machine has no address the plan can know (it listens nowhere else).
    pub metrics: Option<SocketAddr>,
    /// The `mason` flags, subcommand first.
    pub args: Vec<String>,
}

impl Proc {
    /// The name of its log and pid files.
    pub fn label(&self) -> &'static str {
        match self.kind {
            Kind::Sequencer(_) => "sequencer",
            Kind::Proxy { .. } => "proxy",
            Kind::LogServer(_) => "log-server",
            Kind::ZkServer { .. } => "zk-server",
            Kind::Client(_) => "client",
            Kind::ZkGateway(_) => "zk-gateway",
        }
    }

    /// Its name in the metrics lines (`metrics <name> http://ADDR/metrics`), unique in
    /// the run: `sequencer-0`, `proxy-t0-r1`, `log-2`, `zk-s0-r1`, `zk-gateway-0`,
    /// `client-0`.
    pub fn name(&self) -> String {
        match self.kind {
            Kind::Sequencer(i) => format!("sequencer-{i}"),
            Kind::Proxy { triple, replica } => format!("proxy-t{triple}-r{replica}"),
            Kind::LogServer(i) => format!("log-{i}"),
            Kind::ZkServer { shard, index } => format!("zk-s{shard}-r{index}"),
            Kind::ZkGateway(i) => format!("zk-gateway-{i}"),
            Kind::Client(i) => format!("client-{i}"),
        }
    }

    /// Its metrics port's offset from `--metrics-base-port`: one per kind, so that the
    /// processes one machine runs (a client machine: a client and, for the ZooKeeper
    /// systems, a front end) each have their own.
    pub fn metrics_offset(&self) -> u16 {
        match self.kind {
            Kind::Sequencer(_) => 0,
            Kind::Proxy { .. } => 1,
            Kind::LogServer(_) => 2,
            Kind::ZkServer { .. } => 3,
            Kind::ZkGateway(_) => 4,
            Kind::Client(_) => 5,
        }
    }

    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Sequencer(0) => "sequencer 0 (primary)".to_string(),
            Kind::Sequencer(i) => format!("sequencer {i} (backup)"),
            Kind::Proxy { triple, replica } => format!("proxy triple {triple} replica {replica}"),
            Kind::LogServer(i) => format!("log server {i}"),
            Kind::ZkServer { shard, index } => format!("zk server {index} of shard {shard}"),
            Kind::Client(i) => format!("client {i}"),
            Kind::ZkGateway(i) => format!("zookeeper front end {i}"),
        }
    }
}

pub struct Plan {
    /// In start order: log servers (tails first) or shard servers, sequencers, proxies,
    /// ZooKeeper front ends (ZooKeeper systems), clients.
    pub procs: Vec<Proc>,
    /// Machines of the file the run does not use.
    pub unused: Vec<String>,
    pub shape: Shape,
    pub clients: u32,
    pub triples: u32,
    pub layout: Option<LogLayout>,
    /// `--metrics-base-port`, resolved (its default: `--base-port` + 100).
    pub metrics_base_port: u16,
}

/// The metrics ports are `--metrics-base-port` + 0..=METRICS_OFFSETS (see
/// [`Proc::metrics_offset`]).
pub const METRICS_OFFSETS: u16 = 5;

impl Plan {
    pub fn of(&self, f: impl Fn(Kind) -> bool) -> impl Iterator<Item = &Proc> {
        self.procs.iter().filter(move |p| f(p.kind))
    }

    /// Where the ZooKeeper front ends listen (the client machines' experiment
    /// addresses), in client order; empty for the other systems.
    pub fn front_ends(&self) -> Vec<SocketAddr> {
        self.of(|k| matches!(k, Kind::ZkGateway(_)))
            .filter_map(|p| p.listen)
            .collect()
    }

    /// The line of summary.txt and of the console that says where ZooKeeper's clients
    /// connect (`zkCli.sh -server HOST:PORT`); None without front ends.
    pub fn front_ends_line(&self) -> Option<String> {
        let f = self.front_ends();
        (!f.is_empty()).then(|| format!("zookeeper front ends: {}", roles::join(&f)))
    }

    /// Every process's metrics endpoint, in start order: `metrics <name> http://ADDR/metrics`
    /// (the lines of summary.txt, metrics.txt and `--dry-run`).
    pub fn metrics_lines(&self) -> Vec<String> {
        self.procs
            .iter()
            .filter_map(|p| {
                p.metrics
                    .map(|m| format!("metrics {} http://{m}/metrics", p.name()))
            })
            .collect()
    }

    /// What `--dry-run` prints.
    pub fn describe(&self) -> String {
        let sh = &self.shape;
        let mut t = format!(
            "plan: {} system, {} group(s) over {} proxy triple(s), {} space(s), {} client machine(s) x {} clients x {} in flight\n",
            sh.system.name(),
            sh.groups,
            self.triples,
            sh.spaces,
            self.clients,
            sh.client_threads,
            sh.concurrency
        );
        for p in &self.procs {
            let listen = p.listen.map(|l| format!(" on {l}")).unwrap_or_default();
            t.push_str(&format!(
                "  {:<14} ssh {:<18} {}{listen}: {}/mason {}\n",
                p.machine.name,
                p.machine.ctrl,
                p.describe(),
                p.dir,
                p.args.join(" ")
            ));
        }
        if let Some(l) = self.front_ends_line() {
            t.push_str(&l);
            t.push('\n');
        }
        for l in self.metrics_lines() {
            t.push_str(&l);
            t.push('\n');
        }
        if !self.unused.is_empty() {
            t.push_str(&format!("unused: {}\n", self.unused.join(", ")));
        }
        t
    }
}

/// The address the roles use to reach `m`: its experiment-network ip, or failing that its
/// control address resolved.
fn data_ip(m: &Machine) -> Result<IpAddr, String> {
    if let Some(ip) = m.ip {
        return Ok(ip);
    }
    if let Ok(ip) = m.ctrl.parse::<IpAddr>() {
        return Ok(ip);
    }
    (m.ctrl.as_str(), 22)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip())
        .ok_or_else(|| {
            format!(
                "line {}, field 'ip': {} has no experiment address ('-') and its ctrl_ip '{}' does not resolve",
                m.line, m.name, m.ctrl
            )
        })
}

/// Takes `want` machines of `role` (all of them when `want` is None).
fn take<'a>(
    machines: &'a [Machine],
    role: Role,
    want: Option<u32>,
    flag: &str,
) -> Result<Vec<&'a Machine>, String> {
    let have = with_role(machines, role);
    let n = want.map_or(have.len(), |w| w as usize);
    if have.len() < n {
        return Err(format!(
            "{flag} {n} needs {n} {role} machine(s); the machines file has {}",
            have.len()
        ));
    }
    Ok(have.into_iter().take(n).collect())
}

/// Builds the plan; errors say which knob or which line of the machines file is wrong.
pub fn build(machines: &[Machine], a: &RunArgs) -> Result<Plan, String> {
    let system = a.system;
    let zk_shards = a.zk.shards(system);
    let workload = a.workload.unwrap_or(if system.zk() {
        Workload::Mixed
    } else {
        Workload::Appends
    });
    check::knobs(a, workload)?;
    let metrics_base = check::metrics_base_port(a)?;
    // Mason's ZooKeeper values are 8 bytes.
    let payload = a.payload.unwrap_or(match system {
        s if s.log() => 64,
        s if s.zk() => 8,
        _ => 0,
    });
    let nseq = match (system.sequencers(), system.proxies()) {
        (false, _) => 0,
        (true, true) => a.sequencers,
        (true, false) => 1,
    };
    let seqs = take(machines, Role::Sequencer, Some(nseq), "--sequencers")?;
    let proxies = if system.proxies() {
        let p = take(machines, Role::Proxy, a.proxies, "--proxies")?;
        if p.len() < 3 || !p.len().is_multiple_of(3) {
            let why = match a.proxies {
                Some(n) => format!("--proxies {n} is not a multiple of 3"),
                None => format!(
                    "the machines file has {} proxy machine(s), not a multiple of 3 (choose some with --proxies)",
                    p.len()
                ),
            };
            return Err(format!("{why}: each proxy group is replicated on a triple"));
        }
        p
    } else {
        Vec::new()
    };
    let clients = take(machines, Role::Client, a.clients, "--clients")?;
    if clients.is_empty() {
        return Err("no client machines: name one client-N".into());
    }
    let zk_machines = if zk_shards > 0 {
        let want = zk_shards * ZK_SERVERS;
        let s = take(machines, Role::Server, Some(want), "--zk-shards")
            .map_err(|e| format!("{e} (3 server-N machines per shard)"))?;
        s
    } else {
        Vec::new()
    };
    let servers = if system.log() {
        let s = take(machines, Role::Server, a.log_servers, "--log-servers")?;
        let r = a.replication as usize;
        if s.len() < r || !s.len().is_multiple_of(r) {
            return Err(format!(
                "{} log server machine(s) is not a multiple of --replication {r}",
                s.len()
            ));
        }
        s
    } else {
        Vec::new()
    };
    // A triple hosts the groups g with g % triples == t: with fewer groups than triples,
    // only the first `groups` triples are used.
    // RSMKeeper is one group, on one triple.
    let groups = if system == System::Rsmkeeper {
        1
    } else {
        a.groups
    };
    let triples = (proxies.len() as u32 / 3).min(groups);
    let proxies = &proxies[..triples as usize * 3];
    let shape = Shape {
        system,
        groups,
        // ZK-Mason: the zxid clock, then one space per shard.
        spaces: if zk_shards > 0 {
            zk_shards + 1
        } else {
            a.spaces
        },
        op_spaces: a.op_spaces,
        client_threads: a.client_threads,
        concurrency: a.concurrency,
        shared_conns: a.shared_conns.on(),
        payload,
        workload,
        write_percent: a.zk.write_percent,
        znodes: a.zk.znodes,
        zk_shards,
        zk_local_reads: a.zk.zk_reads == crate::args::ZkReads::Local,
        prefill_per_client: a.prefill.div_ceil(clients.len() as u64),
        warmup: a.warmup,
        duration: a.duration,
        cooldown: a.cooldown,
        retry_timeout: a.retry_timeout,
        proxy: a.proxy.clone(),
        threads: a.proxy_threads,
        // Each client machine runs its clients on up to 16 runtime threads.
        client_threads_rt: a.client_threads.clamp(1, 16),
        gc_ms: if a.no_gc { 0 } else { 10 },
        // A sequencer machine's cores are its own: its core keeps a thread of its own.
        seq_core_thread: true,
        // Where the launcher keeps the run's key (set by the launcher); each machine gets
        // a copy in its own directory (see `on`).
        key_file: PathBuf::from("cluster.key"),
        spin_us: crate::spin_us(),
    };
    let dir = |m: &Machine| format!("{}/{}", a.remote_dir.trim_end_matches('/'), m.name);
    // The shape as a process on machine `m` is told it: with its copy of the key.
    let on = |m: &Machine| Shape {
        key_file: PathBuf::from(format!("{}/cluster.key", dir(m))),
        ..shape.clone()
    };
    let addr = |m: &Machine, off: u16| -> Result<SocketAddr, String> {
        Ok(SocketAddr::new(
            data_ip(m)?,
            a.base_port.saturating_add(off),
        ))
    };
    let seq_addrs = seqs
        .iter()
        .map(|m| addr(m, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let proxy_addrs = proxies
        .iter()
        .map(|m| addr(m, 1))
        .collect::<Result<Vec<_>, _>>()?;
    let layout = if system.log() {
        Some(LogLayout {
            addrs: servers
                .iter()
                .map(|m| addr(m, 2))
                .collect::<Result<_, _>>()?,
            replication: a.replication,
        })
    } else {
        None
    };
    let zk_addrs = zk_machines
        .iter()
        .map(|m| addr(m, 3))
        .collect::<Result<Vec<_>, _>>()?;
    let zk_list = zk_addrs
        .chunks(ZK_SERVERS as usize)
        .map(roles::join)
        .collect::<Vec<_>>()
        .join(";");
    let chains = match &layout {
        Some(l) => Some(l.chains_arg()),
        None => (zk_shards > 0).then(|| zk_list.clone()),
    };
    let mut procs = Vec::new();
    let proc_ = |m: &Machine, kind, listen, args| Proc {
        machine: m.clone(),
        kind,
        dir: dir(m),
        listen,
        metrics: None,
        args,
    };
    if let Some(l) = &layout {
        for i in (0..servers.len()).rev() {
            let m = servers[i];
            let args = l.server_args(
                i,
                &format!("{}/data", dir(m)),
                a.proxy.fsync.on(),
                a.proxy_threads,
                &format!("{}/cluster.key", dir(m)),
            );
            procs.push(proc_(m, Kind::LogServer(i), Some(l.addrs[i]), args));
        }
    }
    for (k, m) in zk_machines.iter().enumerate() {
        let (shard, index) = (k / ZK_SERVERS as usize, k % ZK_SERVERS as usize);
        let d = dir(m);
        let args = roles::zk_server(
            &on(m),
            zk_addrs[k],
            shard,
            index,
            &zk_list,
            &format!("{d}/data"),
            &format!("{d}/out"),
        );
        let kind = Kind::ZkServer {
            shard: shard as u32,
            index: index as u32,
        };
        procs.push(proc_(m, kind, Some(zk_addrs[k]), args));
    }
    for (i, m) in seqs.iter().enumerate() {
        let args = roles::sequencer(
            &on(m),
            seq_addrs[i],
            i,
            seqs.len(),
            &format!("{}/out", dir(m)),
        );
        procs.push(proc_(m, Kind::Sequencer(i), Some(seq_addrs[i]), args));
    }
    for (k, m) in proxies.iter().enumerate() {
        let (triple, replica) = ((k / 3) as u32, (k % 3) as u32);
        let place = ProxyPlace {
            replica,
            triple,
            triples,
            peers: &proxy_addrs[3 * triple as usize..3 * triple as usize + 3],
        };
        let d = dir(m);
        let args = roles::proxy(
            &on(m),
            &place,
            &seq_addrs,
            &format!("{d}/data"),
            &format!("{d}/out"),
            chains.as_deref(),
        );
        procs.push(proc_(
            m,
            Kind::Proxy { triple, replica },
            Some(proxy_addrs[k]),
            args,
        ));
    }
    // ZooKeeper systems: a front end on every client machine (see `Kind::ZkGateway`),
    // given the proxies the clients are given and, for ZK-Mason, the shard servers' list.
    if system.zk() {
        for (i, m) in clients.iter().enumerate() {
            let listen = SocketAddr::new(data_ip(m)?, a.zk_gateway_port);
            let args = roles::zk_gateway(&on(m), listen, i as u32, &proxy_addrs, &zk_list);
            procs.push(proc_(m, Kind::ZkGateway(i as u32), Some(listen), args));
        }
    }
    for (i, m) in clients.iter().enumerate() {
        let i = i as u32;
        let out = format!("{}/out", dir(m));
        let args = roles::client(
            &on(m),
            i,
            seq_addrs.first().copied(),
            &proxy_addrs,
            chains.as_deref(),
            &out,
        );
        procs.push(proc_(m, Kind::Client(i), None, args));
    }
    check::add_metrics(&mut procs, metrics_base)?;
    check::refuse_shared_addresses(&procs)?;
    let used: Vec<&str> = procs.iter().map(|p| p.machine.name.as_str()).collect();
    let unused = machines
        .iter()
        .filter(|m| !used.contains(&m.name.as_str()))
        .map(|m| m.name.clone())
        .collect();
    Ok(Plan {
        procs,
        unused,
        shape,
        clients: clients.len() as u32,
        triples,
        layout,
        metrics_base_port: metrics_base,
    })
}

mod check;

#[cfg(test)]
mod tests;
