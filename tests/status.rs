//! `mason status` on a running loopback cluster: asked while everything runs, every
//! process is up, each group has one leader all its replicas agree on, commit is never
//! behind applied, and one sequencer is primary; asked again after `mason local` SIGKILLed
//! group 0's leader, that process is shown down (not an error) and group 0 has a new
//! leader, another replica, in a higher term. And after `mason bench-sequencer`, the
//! sequencer's next number is what the bench counted.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{check_ok_run, one_at_a_time, run_local_with, small, OutDir};

/// `mason local`'s addrs.txt: (role, address) per line, the address last.
fn read_addrs(out: &Path) -> Vec<(String, SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(out.join("addrs.txt")).unwrap_or_default();
        if text.ends_with('\n') {
            return text
                .lines()
                .map(|l| {
                    let (role, addr) = l.rsplit_once(char::is_whitespace).expect("role address");
                    (role.trim().to_string(), addr.parse().expect("an address"))
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "no addrs.txt after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(out: &Path, addrs: &[(String, SocketAddr)]) -> Value {
    let list: Vec<String> = addrs.iter().map(|(_, a)| a.to_string()).collect();
    let o = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args(["status", "--json", "--addrs", &list.join(",")])
        .arg("--cluster-key-file")
        .arg(out.join("cluster.key"))
        .output()
        .expect("running mason status");
    assert!(o.status.success(), "mason status failed: {o:?}");
    serde_json::from_slice(&o.stdout).expect("mason status --json prints JSON")
}

fn procs(s: &Value) -> &Vec<Value> {
    s["processes"].as_array().expect("processes")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every replica's view of `group` among the processes that answered.
fn views(s: &Value, group: u64) -> Vec<&Value> {
    procs(s)
        .iter()
        .filter(|p| p["up"] == Value::Bool(true))
        .flat_map(|p| p["groups"].as_array().into_iter().flatten())
        .filter(|g| u(&g["group"]) == group)
        .collect()
}

/// The one leader (replica, term) every answering replica of `group` agrees on, or why
/// there is none.
fn agreed_leader(s: &Value, group: u64, replicas: usize) -> Result<(u64, u64), String> {
    let v = views(s, group);
    if v.len() != replicas {
        return Err(format!("{} replicas of group {group} answered", v.len()));
    }
    for g in &v {
        if u(&g["commit"]) < u(&g["applied"]) {
            panic!("a replica applied past its commit index: {g}");
        }
    }
    let leaders: Vec<&&Value> = v
        .iter()
        .filter(|g| g["leader"] == Value::Bool(true))
        .collect();
    let [l] = leaders.as_slice() else {
        return Err(format!(
            "{} replicas say they lead group {group}",
            leaders.len()
        ));
    };
    let (r, term) = (u(&l["replica"]), u(&l["term"]));
    for g in &v {
        if g["leader_replica"].as_u64() != Some(r) || u(&g["term"]) != term {
            return Err(format!("replica {} disagrees: {g}", g["replica"]));
        }
    }
    Ok((r, term))
}

/// Asks until every answering replica of every group agrees on its leader (a snapshot of
/// three processes is not atomic: an election may fall between two answers), at most
/// `tries` times; checks `each` on every snapshot.
fn settled(
    out: &Path,
    addrs: &[(String, SocketAddr)],
    replicas: usize,
    tries: usize,
    each: impl Fn(&Value),
) -> (Value, Vec<(u64, u64)>) {
    let mut last = String::new();
    for _ in 0..tries {
        let s = status(out, addrs);
        each(&s);
        match (0..2)
            .map(|g| agreed_leader(&s, g, replicas))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(leaders) => return (s, leaders),
            Err(why) => last = format!("{why}\n{s:#}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the groups' replicas never agreed on their leaders: {last}");
}

fn one_primary(s: &Value) {
    let primaries = procs(s)
        .iter()
        .filter(|p| p["sequencer"]["primary"] == Value::Bool(true))
        .count();
    assert_eq!(primaries, 1, "not one primary sequencer:\n{s:#}");
}

#[test]
fn status_shows_a_killed_leader_down_and_its_successor() {
    let _one = one_at_a_time();
    let out = OutDir::new("status");
    let dir = out.path().to_path_buf();
    let (run, (addrs, before, after)) = run_local_with(
        &small(
            "--groups 2 --duration 12 --warmup 0.5 --kill-leader 4 --fsync off \
             --tick-ms 2 --election-ticks 20 --heartbeat-ticks 2",
        ),
        out.path(),
        Duration::from_secs(120),
        || {
            let addrs = read_addrs(&dir);
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs(2));
            let before = settled(&dir, &addrs, 3, 10, |s| {
                for p in procs(s) {
                    assert_eq!(p["up"], Value::Bool(true), "down before any kill: {p}");
                }
                one_primary(s);
            });
            std::thread::sleep(Duration::from_secs(8).saturating_sub(t0.elapsed()));
            let after = settled(&dir, &addrs, 2, 10, one_primary);
            (addrs, before, after)
        },
    );
    check_ok_run(&run, 2, 1);
    assert_eq!(addrs.len(), 5, "2 sequencers and 3 proxies: {addrs:?}");

    // Which proxy mason local killed: "SIGKILLed proxy R (leader of group 0)".
    let killed: u64 = run
        .stderr
        .split("SIGKILLed proxy ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no leader kill reported:\n{}", run.stderr));
    let killed_addr = addrs
        .iter()
        .find(|(role, _)| role == &format!("proxy replica {killed} of triple 0"))
        .map(|(_, a)| a.to_string())
        .expect("the killed proxy's address");

    let (_, before_leaders) = before;
    let (after, after_leaders) = after;
    let down: Vec<&Value> = procs(&after)
        .iter()
        .filter(|p| p["up"] != Value::Bool(true))
        .collect();
    assert_eq!(
        down.len(),
        1,
        "not exactly the killed process down:\n{after:#}"
    );
    assert_eq!(down[0]["address"], Value::String(killed_addr), "{after:#}");
    assert!(down[0]["reason"].is_string() && down[0]["error"].is_string());

    let (old, old_term) = before_leaders[0];
    let (new, new_term) = after_leaders[0];
    assert_ne!(new, killed, "group 0 is still led by the killed replica");
    assert!(
        new_term > old_term,
        "group 0's leader r{new} (term {new_term}) took over from r{old} (term {old_term}) without a new term"
    );
}

/// The sequencer benchmark over TCP counts exactly what the sequencer granted: after it,
/// the sequencer's next number (as `mason status` shows it) is the count of numbers the
/// bench reported, so no answer was lost or counted twice by the batched load loop.
#[test]
fn the_sequencer_bench_counts_exactly_the_numbers_granted() {
    use mason_common::auth::ClusterKey;
    use mason_sequencer::bench::{over_network, BenchConfig};
    use std::process::Stdio;

    let _one = one_at_a_time();
    let out = OutDir::new("bench-seq");
    let key_path = out.path().join("cluster.key");
    let key = ClusterKey::write_new(&key_path).expect("writing a key file");
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        l.local_addr().expect("local_addr")
    };
    let log = out.path().join("sequencer.stderr");
    /// The sequencer this test started, SIGKILLed (by its own pid) however the test ends.
    struct Started(std::process::Child);
    impl Drop for Started {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args(["sequencer", "--listen", &addr.to_string(), "--spaces", "1"])
        .args(["--groups", "8", "--cluster-key-file"])
        .arg(&key_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("creating the stderr file"))
        .spawn()
        .expect("starting mason sequencer");
    let child = Started(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "no sequencer on {addr} after 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let cfg = BenchConfig {
        spaces: 1,
        batch: 100,
        groups: 8,
        duration: Duration::from_secs(1),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let r = rt
        .block_on(over_network(
            std::sync::Arc::new(mason_common::transport::Tcp),
            addr,
            &key,
            &cfg,
            // More in flight than the bench takes in one turn, so that its full turns run.
            4096,
        ))
        .expect("the bench ran");
    let s = status(out.path(), &[("sequencer".to_string(), addr)]);
    drop(child);

    assert!(
        r.requests > 8 * 4096,
        "too few requests for a 1 s run: {r:?}"
    );
    assert_eq!(r.numbers, r.requests * 100);
    let p = &procs(&s)[0];
    assert_eq!(p["sequencer"]["primary"], Value::Bool(true), "{s:#}");
    assert_eq!(
        u(&p["sequencer"]["spaces"][0]["next"]),
        r.numbers,
        "the bench counted other numbers than the sequencer granted:\n{s:#}"
    );
}
