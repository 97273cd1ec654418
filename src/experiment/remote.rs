//! What `experiment run` does on one machine, as shell snippets over SSH: kill what earlier
//! runs left, install the binary, start a role process detached (its pid in
//! `<dir>/pids/<role>.pid`, its log in `<dir>/logs/<role>.log`), poll it, signal it, and
//! fetch its files. Every process runs as `<dir>/mason ...`, so a run's leftovers are found
//! by that path even when pid files are gone.

use super::plan::Proc;
use anyhow::Context;
use mason_setup::machines::Machine;
use mason_setup::ssh::{quote, Ssh};
use std::path::Path;

/// Kills every process an earlier run left under `dir`; prints how many there were.
pub fn kill_zombies(ssh: &Ssh, m: &Machine, dir: &str) -> anyhow::Result<u32> {
    let d = quote(dir);
    let pat = quote(&format!("^{dir}/mason "));
    // A pid file may outlive its process (a reboot, a reused pid): kill only what still
    // runs this run's binary.
    let mark = quote(&format!("{dir}/mason"));
    let script = format!(
        "n=$(pgrep -f {pat} | wc -l); \
         for f in {d}/pids/*.pid; do [ -f \"$f\" ] || continue; p=$(cat \"$f\"); \
           tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -qF {mark} && kill -9 \"$p\" 2>/dev/null; done; \
         pkill -9 -f {pat} 2>/dev/null; \
         for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -f {pat} >/dev/null || break; sleep 0.2; done; \
         rm -rf {d}/pids; echo \"$n\""
    );
    let out = ssh.run(&m.ctrl, &script)?;
    Ok(out.trim().parse().unwrap_or(0))
}

/// The SHA-256 of a local file, in hex (as `sha256sum` prints it).
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Makes a fresh `dir` and installs `exe` (whose SHA-256 is `sum`) as `dir/mason`,
/// unless the same binary is already there. Returns whether it was copied.
pub fn install(ssh: &Ssh, m: &Machine, dir: &str, exe: &Path, sum: &str) -> anyhow::Result<bool> {
    let d = quote(dir);
    let there = ssh.run(
        &m.ctrl,
        &format!(
            "rm -rf {d}/logs {d}/data {d}/out {d}/pids && mkdir -p {d}/logs {d}/data {d}/out {d}/pids \
             && (sha256sum {d}/mason 2>/dev/null || true)"
        ),
    )?;
    if there.split_whitespace().next() == Some(sum) {
        return Ok(false);
    }
    // Copy next to it and rename: a binary still running from an earlier run cannot be
    // written over ("text file busy"), but it can be replaced.
    ssh.put(&m.ctrl, exe, &format!("{dir}/mason.new"))?;
    ssh.run(
        &m.ctrl,
        &format!("chmod +x {d}/mason.new && mv -f {d}/mason.new {d}/mason"),
    )?;
    Ok(true)
}

/// Copies the run's cluster key to `dir/cluster.key`, readable only by its owner.
pub fn install_key(ssh: &Ssh, m: &Machine, dir: &str, key: &Path) -> anyhow::Result<()> {
    let d = quote(dir);
    ssh.put(&m.ctrl, key, &format!("{dir}/cluster.key.new"))?;
    ssh.run(
        &m.ctrl,
        &format!("chmod 600 {d}/cluster.key.new && mv -f {d}/cluster.key.new {d}/cluster.key"),
    )?;
    Ok(())
}

/// The shell line that starts `p` detached; a client also leaves its exit status in
/// `pids/client.exit`.
fn start_line(p: &Proc, extra: &[String]) -> String {
    let d = quote(&p.dir);
    let label = p.label();
    let cmd: Vec<String> = std::iter::once(format!("{}/mason", p.dir))
        .chain(p.args.iter().cloned())
        .chain(extra.iter().cloned())
        .map(|w| quote(&w))
        .collect();
    let cmd = cmd.join(" ");
    let log = format!("{d}/logs/{label}.log");
    // The launcher reads the roles' info-level lines (who leads which group).
    let inner = format!("RUST_LOG=info {cmd} > {log} 2>&1; echo $? > {d}/pids/{label}.exit");
    format!(
        "cd {d} && (setsid sh -c {} < /dev/null > /dev/null 2>&1 & echo $! > {d}/pids/{label}.pid)",
        quote(&inner)
    )
}

/// Starts `p` and, if it listens, waits until it does (or until it exits, with the end of
/// its log in the error).
pub fn start(ssh: &Ssh, p: &Proc, extra: &[String]) -> anyhow::Result<()> {
    let mut script = start_line(p, extra);
    if let Some(addr) = p.listen {
        let d = quote(&p.dir);
        let label = p.label();
        script.push_str(&format!(
            " && {d}/mason setup wait-listen {addr} --timeout 30 --exit-file {d}/pids/{label}.exit \
             || {{ echo \"{label} is not listening on {addr}; its log ends:\" >&2; tail -n 5 {d}/logs/{label}.log >&2; exit 1; }}"
        ));
    }
    ssh.run(&p.machine.ctrl, &script)
        .with_context(|| format!("starting {} on {}", p.describe(), p.machine.name))?;
    Ok(())
}

/// A client's exit status, once it has exited.
pub fn exit_status(ssh: &Ssh, p: &Proc) -> anyhow::Result<Option<i32>> {
    let f = quote(&format!("{}/pids/{}.exit", p.dir, p.label()));
    let out = ssh.run(&p.machine.ctrl, &format!("cat {f} 2>/dev/null || true"))?;
    Ok(out.trim().parse().ok())
}

/// Sends `signal` (TERM, KILL) to `p`, and with `wait` waits up to 10 s for it to exit.
pub fn signal(ssh: &Ssh, p: &Proc, signal: &str, wait: bool) -> anyhow::Result<()> {
    let d = quote(&p.dir);
    let label = p.label();
    // The pid is the `sh -c` that waits for the process; signal the process itself.
    let pat = quote(&format!("^{}/mason {}", p.dir, p.args[0]));
    let mut script = format!("pkill -{signal} -f {pat} 2>/dev/null; true");
    if wait {
        script.push_str(&format!(
            "; for i in $(seq 100); do [ -f {d}/pids/{label}.exit ] && break; sleep 0.1; done"
        ));
    }
    ssh.run(&p.machine.ctrl, &script)?;
    Ok(())
}

/// The `leading;` lines of a proxy's log (which groups it led, in which terms).
pub fn leading_lines(ssh: &Ssh, p: &Proc) -> anyhow::Result<String> {
    let log = quote(&format!("{}/logs/{}.log", p.dir, p.label()));
    Ok(ssh.run(
        &p.machine.ctrl,
        &format!("grep -h 'leading;' {log} 2>/dev/null || true"),
    )?)
}

/// Fetches the machine's `out/` and `logs/` into `into/<machine>/`.
pub fn collect(ssh: &Ssh, m: &Machine, dir: &str, into: &Path) -> anyhow::Result<()> {
    let dest = into.join(&m.name);
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    for sub in ["out", "logs"] {
        ssh.get(&m.ctrl, &format!("{dir}/{sub}"), &dest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::plan::Kind;

    #[test]
    fn start_line_quotes_and_detaches() {
        let m = mason_setup::parse_machine_info("m", "client-1,pc1,-,-,10.0.0.5,h1,-").unwrap();
        let p = Proc {
            machine: m[0].clone(),
            kind: Kind::Client(0),
            dir: "/tmp/mason rs/client-1".into(),
            listen: None,
            metrics: None,
            args: vec![
                "client".into(),
                "--out".into(),
                "/tmp/mason rs/client-1/out".into(),
            ],
        };
        let l = start_line(&p, &[]);
        assert!(
            l.starts_with("cd '/tmp/mason rs/client-1' && (setsid sh -c "),
            "{l}"
        );
        assert!(
            l.contains("echo $! > '/tmp/mason rs/client-1'/pids/client.pid"),
            "{l}"
        );
        // The inner command is one quoted word, with the path's space quoted inside.
        assert!(
            l.contains("'\\''/tmp/mason rs/client-1/mason'\\'' client"),
            "{l}"
        );
    }
}
