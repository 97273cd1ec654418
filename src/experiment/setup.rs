//! `mason setup parse-list` (machine_info.txt from a List View paste, asking each machine
//! over SSH for its interfaces unless `--offline`), `mason setup check` (a machines file,
//! checked and shown by role), and the launcher's `wait-listen` helper.

use super::args::ParseListArgs;
use anyhow::Context;
use mason_setup::listview::{self, Listed};
use mason_setup::machines::{with_role, Machine, Role};
use mason_setup::probe;
use mason_setup::ssh::on_all;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

pub fn parse_list(a: &ParseListArgs) -> anyhow::Result<i32> {
    let name = a.list.display().to_string();
    let text = std::fs::read_to_string(&a.list).with_context(|| format!("reading {name}"))?;
    let listed = listview::parse(&name, &text).map_err(anyhow::Error::msg)?;
    for l in listed.iter().filter(|l| l.port != 22) {
        eprintln!(
            "warning: {} (line {}) is reached on port {}; machine_info.txt has no port field, so pass --ssh-port (or an ssh_config) to experiment run",
            l.name, l.line, l.port
        );
    }
    let ssh = a.ssh.ssh();
    let machines: Vec<Machine> = if a.offline {
        listed
            .iter()
            .map(Listed::offline)
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?
    } else {
        let results = on_all(&listed, 32, |l| probe_one(&ssh, l));
        let mut out = Vec::new();
        let mut errs = Vec::new();
        for r in results {
            match r {
                Ok(m) => out.push(m),
                Err(e) => errs.push(e),
            }
        }
        if !errs.is_empty() {
            anyhow::bail!(
                "{} machine(s) could not be asked (use --offline to write what the list says):\n  {}",
                errs.len(),
                errs.join("\n  ")
            );
        }
        out
    };
    let body: Vec<String> = machines.iter().map(Machine::to_line).collect();
    let text = body.join("\n") + "\n";
    // What is written must read back.
    mason_setup::parse_machine_info(&a.output.display().to_string(), &text)?;
    std::fs::write(&a.output, &text).with_context(|| format!("writing {}", a.output.display()))?;
    print!("{text}");
    eprintln!(
        "wrote {} machine(s) to {}{}",
        machines.len(),
        a.output.display(),
        match listed.iter().find_map(|l| l.user.as_deref()) {
            Some(u) => format!(
                "; the list logs in as '{u}': pass --ssh-user {u} to experiment run if that is not your local user"
            ),
            None => String::new(),
        }
    );
    Ok(0)
}

/// Asks one machine for its interfaces.
fn probe_one(ssh: &mason_setup::ssh::Ssh, l: &Listed) -> Result<Machine, String> {
    let mut m = l.offline()?;
    // The list's user and port, unless the flags say otherwise.
    let mut ssh = ssh.clone();
    if ssh.port.is_none() {
        ssh.port = Some(l.port);
    }
    if ssh.user.is_none() {
        ssh.user = l.user.clone();
    }
    let out = ssh
        .run(&l.host, probe::PROBE_COMMAND)
        .map_err(|e| format!("{} (line {}): {e}", l.name, l.line))?;
    // The probe reads IPv4 addresses: prefer the host's IPv4 address.
    let reached: Option<IpAddr> = l.host.parse().ok().or_else(|| {
        let all: Vec<SocketAddr> = (l.host.as_str(), l.port).to_socket_addrs().ok()?.collect();
        all.iter()
            .find(|a| a.is_ipv4())
            .or(all.first())
            .map(|a| a.ip())
    });
    probe::choose(&mut m, &probe::parse(&out), reached)
        .map_err(|e| format!("{} (line {}): {e}", l.name, l.line))?;
    Ok(m)
}

pub fn check(file: &Path) -> anyhow::Result<i32> {
    let machines = super::run::load_machines(file)?;
    for role in Role::ALL {
        let m = with_role(&machines, role);
        let names: Vec<String> = m
            .iter()
            .map(|m| match m.ip {
                Some(ip) => format!("{} ({ip})", m.name),
                None => format!("{} (via {})", m.name, m.ctrl),
            })
            .collect();
        println!(
            "{:<10} {:>3}: {}",
            role.to_string(),
            m.len(),
            names.join(", ")
        );
    }
    let proxies = with_role(&machines, Role::Proxy).len();
    if !proxies.is_multiple_of(3) {
        println!(
            "note: {proxies} proxy machines is not a multiple of 3; experiment run will need --proxies"
        );
    }
    Ok(0)
}

pub fn wait_listen(
    addr: SocketAddr,
    timeout: Duration,
    exit_file: Option<&Path>,
) -> anyhow::Result<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // Something listens; make sure it is our process and not another that holds
            // the port (ours then fails to bind and exits at once).
            std::thread::sleep(Duration::from_millis(500));
            if exit_file.is_some_and(Path::exists) {
                anyhow::bail!("the process exited; is another program using {addr}?");
            }
            return Ok(0);
        }
        if exit_file.is_some_and(Path::exists) {
            anyhow::bail!("the process exited before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("nothing listens on {addr} after {timeout:?}")
}
