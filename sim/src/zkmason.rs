//! Scenarios of ZK-Mason (docs/design.md, "ZooKeeper"): 2 groups sequence ZooKeeper
//! requests in 3 spaces (the zxid clock and 2 shards, or 4 with 3 shards), and deliver
//! each shard's positions to its 3 shard servers, which apply them in order and exchange
//! views for ops that span shards. A shard server crashes and restarts from its disk,
//! loses its disk and catches up from its peers, or is cut off; a proxy leader crashes
//! with deliveries in flight; or a random mix; or, with reads without the log, a server
//! that restarts far behind is handed reads; or clients close their sessions mid-run
//! while a server lags. The verdict is the sequencing invariants, per-znode
//! linearizability (with local reads: of the ops through the log, and every read in its
//! client's order), one tree per shard on every live server (and the shards' union one
//! tree holding every acknowledged create), and liveness (see `zkcheck`).

use crate::net::Node;
use crate::scenario::{base, pick_weighted, Plan, MS, S};
use crate::world::{DiskLoss, Fault, ZkConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x2c_a50e)
}

/// The base plan with ZK-Mason: `shards` shards of 3 servers; the world sets the spaces
/// (shards + 1) and the groups' shard servers from it.
pub(crate) fn zk_base(seed: u64, shards: u32) -> Plan {
    let mut p = base(seed);
    p.world.zk = Some(ZkConfig::new(shards, 3));
    p.world.replica.log_retry_us = 100 * MS;
    p
}

/// A shard server at random: (shard, index).
fn some_server(p: &Plan, r: &mut StdRng) -> (u32, u32) {
    let z = p.world.zk.map_or((1, 1), |z| (z.shards, z.servers));
    (r.gen_range(0..z.0), r.gen_range(0..z.1))
}

pub fn zkmason_steady(seed: u64) -> Plan {
    zk_base(seed, 2)
}

/// 5% of messages are duplicated and delays vary widely, so deliveries, views and
/// fetches arrive out of order and twice.
pub fn zkmason_dup_reorder(seed: u64) -> Plan {
    let mut p = zk_base(seed, 3);
    p.world.net.dup = 0.05;
    p.world.net.mean_extra_us = 400.0;
    p
}

/// Disks whose syncs take 0.3-2 ms: a crash loses more.
fn slow_disks(p: &mut Plan) {
    if let Some(z) = p.world.zk.as_mut() {
        z.sync_min_us = 300;
        z.sync_max_us = 2 * MS;
    }
}

/// A shard server crashes (losing what it had not synced: the disks are slow) and
/// restarts from its disk.
pub fn zkmason_server_crash(seed: u64) -> Plan {
    let mut p = zk_base(seed, 2);
    slow_disks(&mut p);
    let mut r = rng(seed);
    let (s, i) = some_server(&p, &mut r);
    let at = r.gen_range(600 * MS..900 * MS);
    let back = at + r.gen_range(200 * MS..600 * MS);
    p.faults = vec![
        (at, Fault::CrashZk(s, i, DiskLoss::Unsynced)),
        (back, Fault::RestartZk(s, i)),
    ];
    p.heals = vec![back];
    p
}

/// A shard server loses its disk and restarts empty: it catches up from its peers. On
/// half the seeds, the peer it asks first has lost its records before (not its
/// snapshot), so that it is sent that peer's tree.
pub fn zkmason_server_lost(seed: u64) -> Plan {
    let mut p = zk_base(seed, 3);
    let mut r = rng(seed);
    let (s, i) = some_server(&p, &mut r);
    let at = r.gen_range(600 * MS..800 * MS);
    let back = at + r.gen_range(200 * MS..500 * MS);
    p.faults = vec![
        (at, Fault::CrashZk(s, i, DiskLoss::All)),
        (back, Fault::RestartZk(s, i)),
    ];
    p.heals = vec![back];
    if r.gen_bool(0.5) {
        // A server fetches from index 1 first (2 if it is 1).
        let j = if i == 1 { 2 } else { 1 };
        let t = r.gen_range(300 * MS..500 * MS);
        p.faults.push((t, Fault::CrashZk(s, j, DiskLoss::Records)));
        p.faults.push((t + 20 * MS, Fault::RestartZk(s, j)));
        p.faults.sort_by_key(|f| f.0);
        p.heals.insert(0, t + 20 * MS);
    }
    p
}

/// The links from the proxies to the shard servers turn slow (deliveries pile up in
/// flight) and the machine leading group 0 crashes: what it had in flight is lost with its
/// connections, so the new leader must deliver its predecessor's unfinished positions.
pub fn zkmason_leader_crash(seed: u64) -> Plan {
    let mut p = zk_base(seed, 2);
    let mut r = rng(seed);
    let extra = r.gen_range(3 * MS..10 * MS);
    let at = 700 * MS + r.gen_range(0..20 * MS);
    let proxies: Vec<Node> = (0..p.world.triples * 3).map(Node::Proxy).collect();
    p.faults = vec![
        (
            500 * MS,
            Fault::Slow {
                a: proxies,
                b: zk_servers(&p),
                extra_us: extra,
            },
        ),
        (at, Fault::CrashLeader(0)),
        (1000 * MS, Fault::Heal),
        (1400 * MS, Fault::RestartAll),
    ];
    p.heals = vec![1400 * MS];
    p
}

fn zk_servers(p: &Plan) -> Vec<Node> {
    let Some(z) = p.world.zk else {
        return Vec::new();
    };
    (0..z.shards)
        .flat_map(|s| (0..z.servers).map(move |i| Node::ZkServer(s, i)))
        .collect()
}

/// A shard server is cut for a while, then healed: from every other node, or (on half
/// the seeds) from the other shards' servers only, so that it gets deliveries but no views
/// (it waits on its first op that spans shards, and catches up from its peers).
pub fn zkmason_partition(seed: u64) -> Plan {
    let mut p = zk_base(seed, 2);
    let mut r = rng(seed);
    let (s, i) = some_server(&p, &mut r);
    let at = r.gen_range(600 * MS..800 * MS);
    let heal = at + r.gen_range(300 * MS..700 * MS);
    let cut = if r.gen_bool(0.5) {
        Fault::PartitionZk(s, i)
    } else {
        let others = zk_servers(&p)
            .into_iter()
            .filter(|n| !matches!(n, Node::ZkServer(x, _) if *x == s))
            .collect();
        Fault::Partition {
            a: vec![Node::ZkServer(s, i)],
            b: others,
            both_ways: true,
        }
    };
    p.faults = vec![(at, cut), (heal, Fault::Heal)];
    p.heals = vec![heal];
    p
}

/// A client dies for good at 0.6s, and its session (0.4s timeout) expires through its
/// group's log: the group's leader closes its ZooKeeper session on every shard, while a
/// shard server is cut off from everyone (0.8s-1.3s) and group 0's leader crashes
/// (0.9s). The dead client's ephemeral must be gone from the shards' union, and the cut
/// server must have closed the session at the same place as its peers.
pub fn zkmason_client_crash(seed: u64) -> Plan {
    let mut p = zk_base(seed, 2);
    p.world.replica.session_timeout_us = 400 * MS;
    let mut r = rng(seed);
    let (s, i) = some_server(&p, &mut r);
    p.faults = vec![
        (600 * MS, Fault::CrashClient(0)),
        (800 * MS, Fault::PartitionZk(s, i)),
        (900 * MS, Fault::CrashLeader(0)),
        (1300 * MS, Fault::Heal),
    ];
    p.heals = vec![900 * MS, 1300 * MS];
    p
}

/// Episodes drawn from the seed, one at a time: a shard server crashes and restarts,
/// loses its disk, or is cut off; a proxy machine crashes or is cut from its triple; a
/// proxy leader crashes while the shard servers are slow to reach; or the network turns
/// lossy. 2 or 3 shards, and fast or slow disks, from the seed.
pub fn zkmason_random(seed: u64) -> Plan {
    let mut r = rng(seed ^ 0x5eed);
    let mut p = zk_base(seed, r.gen_range(2..=3));
    if r.gen_bool(0.5) {
        slow_disks(&mut p);
    }
    p.world.load_until_us = 3 * S;
    let machines = p.world.triples * 3;
    let end = p.world.load_until_us - 300 * MS;
    let mut t = 200 * MS;
    while t + 100 * MS < end {
        let len = r.gen_range(50 * MS..600 * MS).min(end - t);
        let m = r.gen_range(0..machines);
        let (s, i) = some_server(&p, &mut r);
        // Kinds by weight: server crash 3, server loses its disk (or its records) 2,
        // server cut off 3,
        // proxy crash 2, proxy cut from its triple 2, leader crash with slow servers 2,
        // loss 1.
        let kind = pick_weighted(&mut r, &[3, 2, 3, 2, 2, 2, 1]);
        let episode: Vec<(u64, Fault)> = match kind {
            0 | 1 => {
                let loss = match (kind, r.gen_bool(0.5)) {
                    (0, _) => DiskLoss::Unsynced,
                    (_, true) => DiskLoss::All,
                    _ => DiskLoss::Records,
                };
                vec![
                    (t, Fault::CrashZk(s, i, loss)),
                    (t + len, Fault::RestartZk(s, i)),
                ]
            }
            2 => vec![(t, Fault::PartitionZk(s, i)), (t + len, Fault::Heal)],
            3 => vec![(t, Fault::Crash(m)), (t + len, Fault::RestartAll)],
            4 => {
                let t3 = m / 3;
                let others = (t3 * 3..t3 * 3 + 3)
                    .filter(|&x| x != m)
                    .map(Node::Proxy)
                    .collect();
                vec![
                    (
                        t,
                        Fault::Partition {
                            a: vec![Node::Proxy(m)],
                            b: others,
                            both_ways: true,
                        },
                    ),
                    (t + len, Fault::Heal),
                ]
            }
            5 => {
                let g = r.gen_range(0..p.world.triples * p.world.groups_per_triple);
                let slow = Fault::Slow {
                    a: (0..machines).map(Node::Proxy).collect(),
                    b: zk_servers(&p),
                    extra_us: r.gen_range(MS..8 * MS),
                };
                vec![
                    (t, slow),
                    (t + len / 2, Fault::CrashLeader(g)),
                    (t + len, Fault::Heal),
                    (t + len, Fault::RestartAll),
                ]
            }
            _ => vec![
                (
                    t,
                    Fault::Loss {
                        drop: r.gen_range(0.01..0.1),
                        dup: r.gen_range(0.0..0.05),
                    },
                ),
                (
                    t + len,
                    Fault::Loss {
                        drop: 0.0,
                        dup: 0.0,
                    },
                ),
            ],
        };
        p.faults.extend(episode);
        t += len;
        p.heals.push(t);
        t += p.live_bound_us + r.gen_range(0..200 * MS);
    }
    p
}

/// Local reads (`--zk-reads local`): 60% of the reads of one znode go to one server of
/// its shard, which answers once it has applied what the reading client has seen; 2 of
/// the 6 clients only read, all without the log. The answers of two servers of a shard
/// reach the proxies late (8-20 ms), so the leaders hear first from the third and count
/// it furthest ahead. Three times, that server is cut from its peers, then crashes, loses
/// its records (a damaged log: it keeps its last snapshot, up to 600 positions old) and
/// restarts at once: it is far behind what the clients saw and cannot fetch, while the
/// leaders still count it furthest ahead until the slow servers' answers come in, so it
/// is handed reads it must hold, and say it is behind after 200 ms. Healed 150-350 ms
/// after each restart.
pub fn zkmason_local_reads(seed: u64) -> Plan {
    let mut p = zk_base(seed, 2);
    p.world.local_reads = 60;
    p.world.clients = 6;
    p.world.readers = 2;
    if let Some(z) = p.world.zk.as_mut() {
        z.snapshot_every = 600;
    }
    let mut r = rng(seed);
    let (s, i) = some_server(&p, &mut r);
    let me = Node::ZkServer(s, i);
    let peers: Vec<Node> = zk_servers(&p)
        .into_iter()
        .filter(|n| matches!(n, Node::ZkServer(x, j) if *x == s && *j != i))
        .collect();
    let proxies: Vec<Node> = (0..p.world.triples * 3).map(Node::Proxy).collect();
    let slow = Fault::Slow {
        a: peers.clone(),
        b: proxies,
        extra_us: r.gen_range(8 * MS..20 * MS),
    };
    p.faults.push((300 * MS, slow.clone()));
    let mut cut = 400 * MS;
    for _ in 0..3 {
        let crash = cut + r.gen_range(50 * MS..100 * MS);
        // Behind for 150-350 ms: reads held longer than a server waits are moved on. The
        // last heal comes by 1.85s, before the load stops.
        let heal = crash + r.gen_range(150 * MS..350 * MS);
        p.faults.push((
            cut,
            Fault::Partition {
                a: vec![me],
                b: peers.clone(),
                both_ways: true,
            },
        ));
        p.faults
            .push((crash, Fault::CrashZk(s, i, DiskLoss::Records)));
        p.faults.push((crash, Fault::RestartZk(s, i)));
        p.faults.push((heal, Fault::Heal));
        p.faults.push((heal, slow.clone()));
        p.heals.push(heal);
        cut = heal + 50 * MS;
    }
    p
}

/// Clients close their ZooKeeper session now and then (`WorldConfig::zk_closes`: 5% of
/// a writer's ops, with its other op in flight, so numbered just before the close) and
/// open a new one, while a shard server lags: from 0.3s the proxies' deliveries reach it
/// 2-6 ms late and out of order (each up to 4 ms more), so they pile up ahead of holes
/// and closes arrive there ahead of their turn (as they do, less often, on every server
/// when the two groups' deliveries cross or an op waits for views). Every server must end
/// a session at its close's place in the order: the ops the session had numbered before
/// it still apply.
pub fn zkmason_session_close(seed: u64) -> Plan {
    let mut p = zk_base(seed, 2);
    p.world.zk_closes = 5;
    let mut r = rng(seed);
    let (s, i) = some_server(&p, &mut r);
    let me = Node::ZkServer(s, i);
    let proxies: Vec<Node> = (0..p.world.triples * 3).map(Node::Proxy).collect();
    p.faults = vec![
        (
            300 * MS,
            Fault::Slow {
                a: proxies,
                b: vec![me],
                extra_us: r.gen_range(2 * MS..6 * MS),
            },
        ),
        (
            300 * MS,
            Fault::Noisy {
                node: me,
                dup: 0.0,
                late_us: 4 * MS,
            },
        ),
    ];
    p
}
