//! The mason client: [`Client::sequence`] gets a multi-sequence number for an op, through
//! the client's proxy group (retrying at another replica on timeout or "not leader") or,
//! in the direct baseline, straight from the sequencer. The protocol itself is
//! [`ClientCore`], a deterministic state machine with no I/O that the async driver behind
//! [`Client`] and the simulator both drive. [`load`] is the closed-loop load generator used
//! by `mason local` and benchmarks. [`ZkClient`] speaks ZooKeeper to a keeper group
//! (RSMKeeper).

pub mod core;
mod driver;
pub mod load;
pub mod log;
pub mod watch;
pub mod zk;

pub use self::core::{ClientAction, ClientCore, ClientError, CoreConfig, CoreTarget, MultiSeq};
pub use driver::{Client, ClientConfig, ClientPool, OpLoop, Target};
pub use zk::{ZkClient, ZkError};

/// The replicas of `group` among every proxy process's address: processes come in triples
/// (`proxies[3t..3t+3]` host one replica each of the groups `g` with `g % triples == t`).
/// With fewer than 3 addresses, or a count that is not a multiple of 3, every address is
/// taken to host every group.
pub fn group_replicas(proxies: &[std::net::SocketAddr], group: u32) -> Vec<std::net::SocketAddr> {
    let triples = proxies.len() / 3;
    if triples == 0 || !proxies.len().is_multiple_of(3) {
        return proxies.to_vec();
    }
    let t = group as usize % triples;
    proxies[3 * t..3 * t + 3].to_vec()
}

/// Which of `group_replicas(proxies, group)` leads `group` first: a fresh proxy process
/// campaigns at once for the i-th group it hosts when its replica is i mod 3 (see
/// `mason_proxy::server`), and triple t hosts the groups t, t + triples, t + 2 triples, ...
/// Where every address hosts every group (see [`group_replicas`]), group g is the g-th
/// each hosts. A client tries that replica first, so that a fresh cluster's clients are
/// not each redirected once. Only a guess: after a failover the group tells clients where
/// its leader is.
pub fn first_leader(proxies: &[std::net::SocketAddr], group: u32) -> usize {
    let triples = proxies.len() / 3;
    if triples == 0 || !proxies.len().is_multiple_of(3) {
        return group as usize % proxies.len().max(1);
    }
    (group as usize / triples) % 3
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_go_round_robin_over_triples() {
        let p: Vec<std::net::SocketAddr> = (0..6)
            .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
            .collect();
        assert_eq!(super::group_replicas(&p, 0), p[0..3].to_vec());
        assert_eq!(super::group_replicas(&p, 1), p[3..6].to_vec());
        assert_eq!(super::group_replicas(&p, 4), p[0..3].to_vec());
        assert_eq!(super::group_replicas(&p[..3], 5), p[0..3].to_vec());
    }

    #[test]
    fn first_leaders_go_round_each_triples_replicas() {
        let p: Vec<std::net::SocketAddr> = (0..6)
            .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
            .collect();
        // Two triples: groups 0, 2, 4, 6 on the first, as its 0th, 1st, 2nd, 3rd group.
        let firsts: Vec<usize> = (0..8).map(|g| super::first_leader(&p, g)).collect();
        assert_eq!(firsts, [0, 0, 1, 1, 2, 2, 0, 0]);
        let one: Vec<usize> = (0..4).map(|g| super::first_leader(&p[..3], g)).collect();
        assert_eq!(one, [0, 1, 2, 0]);
        assert_eq!(super::first_leader(&p[..2], 1), 1);
        assert_eq!(super::first_leader(&p[..2], 2), 0);
        assert_eq!(super::first_leader(&[], 2), 0);
    }
}
