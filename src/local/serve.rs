//! `mason local --serve`: the cluster `mason local` started, with ZooKeeper front ends
//! (`mason zk-gateway`) in place of a load, until SIGINT or SIGTERM.

use super::metrics::Endpoints;
use super::start::wait_listening;
use super::{free_addrs, spawn, stop, Cluster};
use crate::args::LocalArgs;
use crate::roles::{self, Shape};
use std::net::SocketAddr;
use std::path::Path;

/// `--serve`: starts the front ends on the running cluster, says where they listen, and
/// serves until SIGINT or SIGTERM; then stops every process (front ends first). Each
/// front end gets a metrics port as the cluster's other roles did (`zk-gateway-N` in
/// `endpoints`); every role's endpoint is printed on stderr (stdout's one line stays
/// `serving zookeeper on ...`).
#[allow(clippy::too_many_arguments)]
pub(super) fn serve(
    a: &LocalArgs,
    shape: &Shape,
    exe: &Path,
    proxies: &[SocketAddr],
    zk_servers: &str,
    logs: &Path,
    endpoints: &mut Endpoints,
    mut cluster: Cluster,
) -> anyhow::Result<i32> {
    let n = a.gateways as usize;
    let addrs: Vec<SocketAddr> = match a.serve_port {
        Some(p) => (0..n)
            .map(|i| {
                let port = u16::try_from(usize::from(p) + i)
                    .map_err(|_| anyhow::anyhow!("--serve-port {p}: ports past 65535"))?;
                Ok(SocketAddr::from(([127, 0, 0, 1], port)))
            })
            .collect::<anyhow::Result<_>>()?,
        None => free_addrs(n)?,
    };
    let mut gw_idx = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let name = format!("zk-gateway-{i}");
        let v = endpoints.with(
            &name,
            roles::zk_gateway(shape, *addr, i as u32, proxies, zk_servers),
        )?;
        let mut child = spawn(exe, &v, &logs.join(format!("{name}.log")), false)?;
        wait_listening(*addr, &mut child, &name)?;
        cluster.procs.push((name, child));
        gw_idx.push(cluster.procs.len() - 1);
    }
    let list: Vec<String> = addrs.iter().map(|x| x.to_string()).collect();
    println!("serving zookeeper on {}", list.join(","));
    use std::io::Write as _;
    std::io::stdout().flush()?;
    eprintln!(
        "mason local: {} behind {} ZooKeeper front end(s); logs in {}; stop with ^C",
        a.system.name(),
        n,
        logs.display()
    );
    // Where each role (the front ends too) serves its metrics; also in metrics.txt.
    eprint!("{}", endpoints.lines());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    });
    eprintln!("mason local: stopping");
    let mut unclean = stop(&mut cluster, &gw_idx)?;
    let rest: Vec<usize> = (0..cluster.procs.len())
        .filter(|i| !gw_idx.contains(i))
        .rev()
        .collect();
    unclean.extend(stop(&mut cluster, &rest)?);
    for u in &unclean {
        eprintln!("mason local: {u}; see its log in {}", logs.display());
    }
    Ok(if unclean.is_empty() { 0 } else { 1 })
}
