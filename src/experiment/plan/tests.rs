//! The plan: roles on the right machines with the right flags, and every bad machines
//! file or knob refused before anything is launched.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct T {
    #[command(flatten)]
    a: RunArgs,
}

fn args(extra: &[&str]) -> RunArgs {
    let argv = std::iter::once("t").chain(extra.iter().copied());
    T::try_parse_from(argv).unwrap().a
}

fn machines(names: &[&str]) -> Vec<Machine> {
    let text: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n},pc{i},eth1,-,10.0.0.{},ctl{i},eth0", i + 1))
        .collect();
    mason_setup::parse_machine_info("machine_info.txt", &text.join("\n")).unwrap()
}

const SIX: [&str; 6] = [
    "sequencer-1",
    "sequencer-2",
    "proxy-1",
    "proxy-2",
    "proxy-3",
    "client-1",
];

#[test]
fn six_machines_two_sequencers_one_triple() {
    let p = build(&machines(&SIX), &args(&["--groups", "2"])).unwrap();
    let kinds: Vec<Kind> = p.procs.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::Sequencer(0),
            Kind::Sequencer(1),
            Kind::Proxy {
                triple: 0,
                replica: 0
            },
            Kind::Proxy {
                triple: 0,
                replica: 1
            },
            Kind::Proxy {
                triple: 0,
                replica: 2
            },
            Kind::Client(0),
        ]
    );
    let proxy = &p.procs[3];
    assert_eq!(proxy.machine.name, "proxy-2");
    assert_eq!(proxy.listen, Some("10.0.0.4:7001".parse().unwrap()));
    let a = proxy.args.join(" ");
    assert!(
        a.contains("--peers 10.0.0.3:7001,10.0.0.4:7001,10.0.0.5:7001"),
        "{a}"
    );
    assert!(
        a.contains("--sequencers 10.0.0.1:7000,10.0.0.2:7000"),
        "{a}"
    );
    assert!(a.contains("--data-dir /tmp/mason-rs/proxy-2/data"), "{a}");
    let c = p.procs[5].args.join(" ");
    assert!(
        c.contains("--sequencer 10.0.0.1:7000") && c.contains("--threads 16"),
        "{c}"
    );
    assert!(p.unused.is_empty());
    let d = p.describe();
    assert!(d.contains("sequencer 1 (backup) on 10.0.0.2:7000"), "{d}");
}

#[test]
fn groups_spread_over_triples_and_spare_machines_are_named() {
    let mut names = SIX.to_vec();
    names.extend(["proxy-4", "proxy-5", "proxy-6", "proxy-7", "client-2"]);
    // 7 proxy machines: not a multiple of 3 unless some are chosen.
    let e = build(&machines(&names), &args(&[])).err().unwrap();
    assert!(e.contains("7 proxy machine(s), not a multiple of 3"), "{e}");
    let p = build(
        &machines(&names),
        &args(&["--proxies", "6", "--groups", "4"]),
    )
    .unwrap();
    assert_eq!(p.triples, 2);
    let t1: Vec<&str> = p
        .of(|k| matches!(k, Kind::Proxy { triple: 1, .. }))
        .map(|p| p.machine.name.as_str())
        .collect();
    assert_eq!(t1, vec!["proxy-4", "proxy-5", "proxy-6"]);
    assert_eq!(p.unused, vec!["proxy-7".to_string()]);
    let c = p.procs.last().unwrap().args.join(" ");
    assert!(
        c.contains("--proxies 10.0.0.3:7001,10.0.0.4:7001,10.0.0.5:7001,10.0.0.7:7001"),
        "{c}"
    );
    // One group cannot use two triples: the second stays idle.
    let p = build(
        &machines(&names),
        &args(&["--proxies", "6", "--groups", "1"]),
    )
    .unwrap();
    assert_eq!(p.triples, 1);
    assert_eq!(p.unused.len(), 4);
}

#[test]
fn too_few_machines_are_refused() {
    let e = build(&machines(&SIX), &args(&["--proxies", "4"]))
        .err()
        .unwrap();
    assert!(
        e.contains("--proxies 4 needs 4 proxy machine(s); the machines file has 3"),
        "{e}"
    );
    let e = build(&machines(&SIX), &args(&["--sequencers", "3"]))
        .err()
        .unwrap();
    assert!(
        e.contains("--sequencers 3 needs 3 sequencer machine(s)"),
        "{e}"
    );
    let e = build(&machines(&SIX), &args(&["--clients", "2"]))
        .err()
        .unwrap();
    assert!(e.contains("--clients 2"), "{e}");
    let e = build(&machines(&SIX[..5]), &args(&[])).err().unwrap();
    assert!(e.contains("no client machines"), "{e}");
    let e = build(&machines(&SIX), &args(&["--system", "corfu"]))
        .err()
        .unwrap();
    assert!(e.contains("0 log server machine(s)"), "{e}");
    let e = build(&machines(&SIX[..4]), &args(&[])).err().unwrap();
    assert!(e.contains("2 proxy machine(s), not a multiple of 3"), "{e}");
}

#[test]
fn corfu_needs_servers_in_chains() {
    let mut names = SIX.to_vec();
    names.extend(["server-1", "server-2", "server-3"]);
    let e = build(&machines(&names), &args(&["--system", "corfumason"]))
        .err()
        .unwrap();
    assert!(
        e.contains("3 log server machine(s) is not a multiple of --replication 2"),
        "{e}"
    );
    let p = build(
        &machines(&names),
        &args(&["--system", "corfumason", "--log-servers", "2"]),
    )
    .unwrap();
    // Tails first.
    assert_eq!(p.procs[0].kind, Kind::LogServer(1));
    assert_eq!(p.unused, vec!["server-3".to_string()]);
    let head = p.procs[1].args.join(" ");
    assert!(head.contains("--successor 10.0.0.8:7002"), "{head}");
    let proxy = p.of(|k| matches!(k, Kind::Proxy { .. })).next().unwrap();
    assert!(proxy
        .args
        .join(" ")
        .contains("--log-chains 10.0.0.7:7002,10.0.0.8:7002"));
}

#[test]
fn a_machine_without_any_address_is_named() {
    let mut m = machines(&SIX);
    m[2].ip = None;
    m[2].ctrl = "no-such-host.invalid".into();
    let e = build(&m, &args(&[])).err().unwrap();
    assert!(e.contains("line 3, field 'ip': proxy-1"), "{e}");
    // A client listens nowhere: its control address is enough.
    let mut m = machines(&SIX);
    m[5].ip = None;
    assert!(build(&m, &args(&[])).is_ok());
}

#[test]
fn zkmason_puts_three_shard_servers_per_shard_on_server_machines() {
    let mut names: Vec<&str> = SIX.to_vec();
    names.extend([
        "server-1", "server-2", "server-3", "server-4", "server-5", "server-6",
    ]);
    let p = build(
        &machines(&names),
        &args(&[
            "--system",
            "zkmason",
            "--zk-shards",
            "2",
            "--kill-leader",
            "1",
        ]),
    )
    .unwrap();
    let zk: Vec<&Proc> = p.of(|k| matches!(k, Kind::ZkServer { .. })).collect();
    assert_eq!(zk.len(), 6);
    assert_eq!(zk[4].kind, Kind::ZkServer { shard: 1, index: 1 });
    // Every server and every proxy is given the same list, shards by ';'.
    let list =
        "10.0.0.7:7003,10.0.0.8:7003,10.0.0.9:7003;10.0.0.10:7003,10.0.0.11:7003,10.0.0.12:7003";
    let has = |args: &[String], flag: &str| args.windows(2).any(|w| w[0] == flag && w[1] == list);
    assert!(
        zk.iter().all(|s| has(&s.args, "--servers")),
        "{:?}",
        zk[0].args
    );
    let proxy = p.of(|k| matches!(k, Kind::Proxy { .. })).next().unwrap();
    assert!(has(&proxy.args, "--zk-servers"), "{:?}", proxy.args);
    assert_eq!(p.shape.spaces, 3, "the clock and two shards");
    let client = p.of(|k| matches!(k, Kind::Client(_))).next().unwrap();
    assert!(client
        .args
        .windows(2)
        .any(|w| w[0] == "--zk-shards" && w[1] == "2"));
    // Too few server machines for the shards.
    let e = build(
        &machines(&names),
        &args(&["--system", "zkmason", "--zk-shards", "3"]),
    )
    .err()
    .unwrap();
    assert!(e.contains("--zk-shards") && e.contains("server"), "{e}");
    let e = build(&machines(&SIX), &args(&["--zk-shards", "2"]))
        .err()
        .unwrap();
    assert!(e.contains("zkmason"), "{e}");
}

/// The flag's value in a process's args.
fn flag<'a>(args: &'a [String], f: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == f).map(|w| w[1].as_str())
}

#[test]
fn zkmason_has_a_front_end_on_every_client_machine() {
    let mut names: Vec<&str> = SIX.to_vec();
    names.extend(["client-2", "server-1", "server-2", "server-3"]);
    let p = build(
        &machines(&names),
        &args(&["--system", "zkmason", "--zk-shards", "1"]),
    )
    .unwrap();
    let gw: Vec<&Proc> = p.of(|k| matches!(k, Kind::ZkGateway(_))).collect();
    assert_eq!(gw.len(), 2);
    for (i, (g, machine, ip)) in [
        (gw[0], "client-1", "10.0.0.6"),
        (gw[1], "client-2", "10.0.0.7"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(g.kind, Kind::ZkGateway(i as u32));
        assert_eq!(g.machine.name, machine);
        assert_eq!(g.label(), "zk-gateway");
        let listen = format!("{ip}:2181");
        assert_eq!(g.listen, Some(listen.parse().unwrap()));
        let a = &g.args;
        assert_eq!(a[0], "zk-gateway");
        assert_eq!(flag(a, "--listen"), Some(listen.as_str()));
        assert_eq!(flag(a, "--id"), Some(i.to_string().as_str()));
        assert_eq!(flag(a, "--system"), Some("zkmason"));
        assert_eq!(
            flag(a, "--proxies"),
            Some("10.0.0.3:7001,10.0.0.4:7001,10.0.0.5:7001")
        );
        assert_eq!(flag(a, "--zk-shards"), Some("1"));
        // The same shard-server list the proxies get.
        let list = "10.0.0.8:7003,10.0.0.9:7003,10.0.0.10:7003";
        assert_eq!(flag(a, "--zk-servers"), Some(list));
        let proxy = p.of(|k| matches!(k, Kind::Proxy { .. })).next().unwrap();
        assert_eq!(flag(&proxy.args, "--zk-servers"), Some(list));
        assert_eq!(
            flag(a, "--cluster-key-file"),
            Some(format!("/tmp/mason-rs/{machine}/cluster.key").as_str())
        );
    }
    // Started after the proxies and shard servers, before the clients.
    let pos = |f: &dyn Fn(Kind) -> bool| p.procs.iter().position(|q| f(q.kind)).unwrap();
    let first_gw = pos(&|k| matches!(k, Kind::ZkGateway(_)));
    assert!(
        first_gw
            > p.procs
                .iter()
                .rposition(|q| matches!(q.kind, Kind::Proxy { .. } | Kind::ZkServer { .. }))
                .unwrap()
    );
    assert!(first_gw < pos(&|k| matches!(k, Kind::Client(_))));
    // The summary's and the console's line.
    assert_eq!(
        p.front_ends_line().as_deref(),
        Some("zookeeper front ends: 10.0.0.6:2181,10.0.0.7:2181")
    );
    let d = p.describe();
    assert!(
        d.contains("zookeeper front end 1 on 10.0.0.7:2181")
            && d.contains("zookeeper front ends: 10.0.0.6:2181,10.0.0.7:2181"),
        "{d}"
    );
}

#[test]
fn rsmkeeper_has_front_ends_without_shard_servers() {
    let p = build(
        &machines(&SIX),
        &args(&["--system", "rsmkeeper", "--zk-gateway-port", "12181"]),
    )
    .unwrap();
    let gw: Vec<&Proc> = p.of(|k| matches!(k, Kind::ZkGateway(_))).collect();
    assert_eq!(gw.len(), 1);
    let a = &gw[0].args;
    assert_eq!(flag(a, "--listen"), Some("10.0.0.6:12181"));
    assert_eq!(flag(a, "--system"), Some("rsmkeeper"));
    assert_eq!(
        flag(a, "--proxies"),
        Some("10.0.0.3:7001,10.0.0.4:7001,10.0.0.5:7001")
    );
    assert_eq!(flag(a, "--groups"), Some("1"));
    assert!(
        !a.iter().any(|x| x == "--zk-servers" || x == "--zk-shards"),
        "{a:?}"
    );
    assert_eq!(
        p.front_ends_line().as_deref(),
        Some("zookeeper front ends: 10.0.0.6:12181")
    );
    // A client machine with no address of its own cannot host a front end.
    let mut m = machines(&SIX);
    m[5].ip = None;
    m[5].ctrl = "no-such-host.invalid".into();
    let e = build(&m, &args(&["--system", "rsmkeeper"])).err().unwrap();
    assert!(e.contains("client-1"), "{e}");
}

#[test]
fn other_systems_have_no_front_ends() {
    let mut names = SIX.to_vec();
    names.extend(["server-1", "server-2"]);
    for sys in ["mason", "direct", "corfu", "corfumason"] {
        let p = build(&machines(&names), &args(&["--system", sys])).unwrap();
        assert_eq!(
            p.of(|k| matches!(k, Kind::ZkGateway(_))).count(),
            0,
            "{sys}"
        );
        assert!(p.front_ends().is_empty() && p.front_ends_line().is_none());
        assert!(!p.describe().contains("zookeeper"), "{sys}");
        // Their ports are not checked against the front ends' port.
        assert!(build(
            &machines(&names),
            &args(&["--system", sys, "--zk-gateway-port", "7001"])
        )
        .is_ok());
    }
}

#[test]
fn a_front_end_port_that_collides_is_refused() {
    for (port, role) in [
        ("7001", "the proxies' port (--base-port 7000 + 1)"),
        (
            "7003",
            "ZK-Mason's shard servers' port (--base-port 7000 + 3)",
        ),
    ] {
        let e = build(
            &machines(&SIX),
            &args(&["--system", "rsmkeeper", "--zk-gateway-port", port]),
        )
        .err()
        .unwrap();
        assert!(
            e.contains(&format!("--zk-gateway-port {port} collides with {role}")),
            "{e}"
        );
    }
    let e = build(
        &machines(&SIX),
        &args(&["--system", "rsmkeeper", "--base-port", "2180"]),
    )
    .err()
    .unwrap();
    assert!(
        e.contains("--zk-gateway-port 2181 collides with the proxies'"),
        "{e}"
    );
    // Two client machines on one address would put two front ends on one port.
    let mut names = SIX.to_vec();
    names.push("client-2");
    let mut m = machines(&names);
    m[6].ip = m[5].ip;
    let e = build(&m, &args(&["--system", "rsmkeeper"])).err().unwrap();
    assert!(
        e.contains("zookeeper front end 0 on client-1 (line 6) and zookeeper front end 1 on client-2 (line 7) would both listen on 10.0.0.6:2181"),
        "{e}"
    );
}

/// Every process's metrics endpoint: `--metrics-listen` in its args, on its own machine's
/// experiment address, at `--metrics-base-port` + its kind's offset; no two alike.
fn check_metrics(p: &Plan, base: u16) {
    let mut seen: Vec<SocketAddr> = Vec::new();
    for q in &p.procs {
        let m = q
            .metrics
            .unwrap_or_else(|| panic!("{} has none", q.describe()));
        assert_eq!(
            flag(&q.args, "--metrics-listen"),
            Some(m.to_string().as_str())
        );
        assert_eq!(Some(m.ip()), q.machine.ip, "{}", q.describe());
        assert_eq!(m.port(), base + q.metrics_offset(), "{}", q.describe());
        assert_ne!(q.listen, Some(m), "{}", q.describe());
        assert!(!seen.contains(&m), "{m} twice");
        seen.push(m);
        // Nor on any process's listener.
        assert!(p.procs.iter().all(|o| o.listen != Some(m)), "{m}");
    }
    // The lines of summary.txt, metrics.txt and --dry-run: one per process, in order.
    let lines = p.metrics_lines();
    let want: Vec<String> = p
        .procs
        .iter()
        .map(|q| format!("metrics {} http://{}/metrics", q.name(), q.metrics.unwrap()))
        .collect();
    assert_eq!(lines, want);
    let d = p.describe();
    for l in &lines {
        assert!(d.lines().any(|x| x == l), "{l} not in {d}");
    }
}

#[test]
fn every_process_has_its_own_metrics_endpoint() {
    let p = build(&machines(&SIX), &args(&["--groups", "2"])).unwrap();
    assert_eq!(p.metrics_base_port, 7100);
    check_metrics(&p, 7100);
    assert_eq!(
        p.metrics_lines(),
        [
            "metrics sequencer-0 http://10.0.0.1:7100/metrics",
            "metrics sequencer-1 http://10.0.0.2:7100/metrics",
            "metrics proxy-t0-r0 http://10.0.0.3:7101/metrics",
            "metrics proxy-t0-r1 http://10.0.0.4:7101/metrics",
            "metrics proxy-t0-r2 http://10.0.0.5:7101/metrics",
            "metrics client-0 http://10.0.0.6:7105/metrics",
        ]
    );
    // The progress bar reads the clients' endpoints from their args.
    let client = p.of(|k| matches!(k, Kind::Client(_))).next().unwrap();
    assert_eq!(
        crate::live::metrics_of(&client.args),
        Some("10.0.0.6:7105".parse().unwrap())
    );
    // A client machine runs a front end and a client for the ZooKeeper systems: two
    // ports; the shard servers' too.
    let mut names: Vec<&str> = SIX.to_vec();
    names.extend(["client-2", "server-1", "server-2", "server-3"]);
    let p = build(
        &machines(&names),
        &args(&[
            "--system",
            "zkmason",
            "--zk-shards",
            "1",
            "--base-port",
            "9000",
        ]),
    )
    .unwrap();
    check_metrics(&p, 9100);
    let on_client_2: Vec<String> = p
        .procs
        .iter()
        .filter(|q| q.machine.name == "client-2")
        .map(|q| format!("{} {:?}", q.name(), q.metrics))
        .collect();
    assert_eq!(
        on_client_2,
        [
            "zk-gateway-1 Some(10.0.0.7:9104)",
            "client-1 Some(10.0.0.7:9105)"
        ]
    );
    assert!(p
        .metrics_lines()
        .contains(&"metrics zk-s0-r2 http://10.0.0.10:9103/metrics".to_string()));
    // Log servers, and an explicit base.
    let mut names = SIX.to_vec();
    names.extend(["server-1", "server-2"]);
    let p = build(
        &machines(&names),
        &args(&["--system", "corfumason", "--metrics-base-port", "20000"]),
    )
    .unwrap();
    check_metrics(&p, 20000);
    assert_eq!(p.procs[0].metrics, Some("10.0.0.8:20002".parse().unwrap()));
}

#[test]
fn metrics_ports_that_collide_are_refused() {
    // The roles' ports 7000..7003 are within 6998..7003.
    let e = build(&machines(&SIX), &args(&["--metrics-base-port", "6998"]))
        .err()
        .unwrap();
    assert!(
        e.contains("--metrics-base-port 6998: its port 6998 + 2 is the roles' port --base-port 7000 + 0 (7000)"),
        "{e}"
    );
    let e = build(
        &machines(&SIX),
        &args(&["--system", "rsmkeeper", "--metrics-base-port", "2177"]),
    )
    .err()
    .unwrap();
    assert!(
        e.contains("its port 2177 + 4 is --zk-gateway-port (2181)"),
        "{e}"
    );
    // Only the ZooKeeper systems have the front ends' port.
    assert!(build(&machines(&SIX), &args(&["--metrics-base-port", "2177"])).is_ok());
    for bad in ["65531", "0"] {
        let e = build(&machines(&SIX), &args(&["--metrics-base-port", bad]))
            .err()
            .unwrap();
        assert!(e.contains("must be within 1..65535"), "{e}");
    }
    let e = build(&machines(&SIX), &args(&["--base-port", "65500"]))
        .err()
        .unwrap();
    assert!(e.contains("give --metrics-base-port"), "{e}");
    assert!(build(
        &machines(&SIX),
        &args(&["--base-port", "65500", "--metrics-base-port", "7000"])
    )
    .is_ok());
    // Every role's listening port is within --base-port..+3 or --zk-gateway-port, which
    // the metrics ports are checked against above: on a shared address, only processes
    // of one kind can meet, as two clients do here.
    // Two client machines on one address: their clients' endpoints collide.
    let mut names = SIX.to_vec();
    names.push("client-2");
    let mut m = machines(&names);
    m[6].ip = m[5].ip;
    let e = build(&m, &args(&[])).err().unwrap();
    assert!(
        e.contains("client 0's metrics endpoint on client-1 (line 6) and client 1's metrics endpoint on client-2 (line 7) would both listen on 10.0.0.6:7105"),
        "{e}"
    );
}

#[test]
fn a_client_without_an_address_serves_no_metrics() {
    let mut m = machines(&SIX);
    m[5].ip = None;
    m[5].ctrl = "no-such-host.invalid".into();
    let p = build(&m, &args(&[])).unwrap();
    let client = p.procs.last().unwrap();
    assert_eq!(client.metrics, None);
    assert!(!client.args.iter().any(|a| a == "--metrics-listen"));
    assert_eq!(p.metrics_lines().len(), 5);
    assert!(p.procs[..5].iter().all(|q| q.metrics.is_some()));
}
