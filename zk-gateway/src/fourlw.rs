//! The four-letter words (`echo ruok | nc host port`), answered in ZooKeeper's formats
//! from what this gateway knows: its connections, sessions, packets, latencies and the
//! highest zxid it has passed on. What it does not know (the tree's node count, its data
//! size) is left out rather than made up.

use std::fmt::Write as _;

/// The version this gateway reports (`zookeeper.version=`): the protocol it speaks,
/// ZooKeeper 3.8.0's, and who serves it. kazoo's `server_version()` reads the numbers
/// before the first `-`.
pub const VERSION: &str = "3.8.0-mason-rs";

/// One connection, for `cons` and `stat`.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    pub peer: String,
    pub session: Option<i64>,
    pub received: u64,
    pub sent: u64,
    pub queued: usize,
}

/// What a four-letter word reports.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub client_addr: String,
    pub connections: Vec<ConnInfo>,
    pub sessions: usize,
    pub received: u64,
    pub sent: u64,
    pub outstanding: u64,
    pub latency_min_ms: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: u64,
    pub last_zxid: i64,
    pub min_timeout_ms: i32,
    pub max_timeout_ms: i32,
    pub max_buffer: usize,
    /// Watches held, the paths they are on, and the sessions that hold them.
    pub watches: (usize, usize, usize),
    /// The backend: `rsmkeeper` or `zkmason (N shards)`.
    pub backend: String,
}

/// The text answer to `word` (one of `conn::FOUR_LETTER_WORDS`).
pub fn answer(word: &str, s: &Snapshot) -> String {
    match word {
        "ruok" => "imok".into(),
        "isro" => "rw".into(),
        "srvr" => srvr(s, false),
        "stat" => srvr(s, true),
        "mntr" => mntr(s),
        "conf" => conf(s),
        "cons" => cons(s),
        "envi" => envi(s),
        "wchs" => format!(
            "{} connections watching {} paths\nTotal watches:{}\n",
            s.watches.2,
            s.watches.1,
            s.watches.0
        ),
        "wchc" | "wchp" => String::new(),
        "crst" => "Connection stats reset.\n".into(),
        "srst" => "Server stats reset.\n".into(),
        "dirs" => "datadir_size: 0\nlogdir_size: 0\n".into(),
        "gtmk" | "stmk" => "0\n".into(),
        "dump" => format!(
            "SessionTracker dump:\nGlobal sessions with ephemeral nodes: see the backend\nSessions here: {}\n",
            s.sessions
        ),
        "hash" => String::new(),
        _ => String::new(),
    }
}

fn srvr(s: &Snapshot, with_clients: bool) -> String {
    let mut o = format!("Zookeeper version: {VERSION}, mason-rs gateway\n");
    if with_clients {
        o.push_str("Clients:\n");
        for c in &s.connections {
            let _ = writeln!(
                o,
                " /{}[1](queued={},recved={},sent={})",
                c.peer, c.queued, c.received, c.sent
            );
        }
        o.push('\n');
    }
    let _ = write!(
        o,
        "Latency min/avg/max: {}/{:.4}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: {:#x}\nMode: standalone\n",
        s.latency_min_ms,
        s.latency_avg_ms,
        s.latency_max_ms,
        s.received,
        s.sent,
        s.connections.len(),
        s.outstanding,
        s.last_zxid,
    );
    o
}

fn mntr(s: &Snapshot) -> String {
    let lines: Vec<(&str, String)> = vec![
        ("zk_version", format!("{VERSION}, mason-rs gateway")),
        ("zk_server_state", "standalone".into()),
        ("zk_avg_latency", format!("{:.4}", s.latency_avg_ms)),
        ("zk_max_latency", s.latency_max_ms.to_string()),
        ("zk_min_latency", s.latency_min_ms.to_string()),
        ("zk_packets_received", s.received.to_string()),
        ("zk_packets_sent", s.sent.to_string()),
        ("zk_num_alive_connections", s.connections.len().to_string()),
        ("zk_outstanding_requests", s.outstanding.to_string()),
        ("zk_watch_count", s.watches.0.to_string()),
        ("zk_global_sessions", s.sessions.to_string()),
    ];
    let mut o = String::new();
    for (k, v) in lines {
        let _ = writeln!(o, "{k}\t{v}");
    }
    o
}

fn conf(s: &Snapshot) -> String {
    format!(
        "clientPortAddress={}\nmaxClientCnxns=0\nminSessionTimeout={}\nmaxSessionTimeout={}\njute.maxbuffer={}\nbackend={}\n",
        s.client_addr, s.min_timeout_ms, s.max_timeout_ms, s.max_buffer, s.backend
    )
}

fn cons(s: &Snapshot) -> String {
    let mut o = String::new();
    for c in &s.connections {
        let sid = c.session.map_or("none".to_string(), |x| format!("{x:#x}"));
        let _ = writeln!(
            o,
            " /{}[1](queued={},recved={},sent={},sid={sid})",
            c.peer, c.queued, c.received, c.sent
        );
    }
    o.push('\n');
    o
}

fn envi(s: &Snapshot) -> String {
    format!(
        "Environment:\nzookeeper.version={VERSION}, mason-rs gateway\nhost.name={}\nos.name={}\nos.arch={}\nmason.backend={}\n",
        s.client_addr,
        std::env::consts::OS,
        std::env::consts::ARCH,
        s.backend
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_answer_in_zookeepers_formats() {
        let s = Snapshot {
            client_addr: "127.0.0.1:2181".into(),
            watches: (3, 2, 1),
            received: 5,
            sent: 4,
            last_zxid: 0x1f,
            ..Snapshot::default()
        };
        assert_eq!(answer("ruok", &s), "imok");
        assert_eq!(
            answer("wchs", &s),
            "1 connections watching 2 paths\nTotal watches:3\n"
        );
        assert_eq!(answer("isro", &s), "rw");
        let srvr = answer("srvr", &s);
        assert!(srvr.starts_with("Zookeeper version: 3.8.0-"), "{srvr}");
        assert!(srvr.contains("Received: 5\nSent: 4\n") && srvr.contains("Zxid: 0x1f\n"));
        let envi = answer("envi", &s);
        // kazoo's server_version(): the digits before the first '-' of this line.
        let line = envi
            .lines()
            .find_map(|l| l.strip_prefix("zookeeper.version="))
            .expect("a version line");
        let nums: Vec<u32> = line
            .split('-')
            .next()
            .unwrap()
            .split('.')
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(nums, vec![3, 8, 0]);
        let mntr = answer("mntr", &s);
        assert!(mntr.lines().all(|l| l.split('\t').count() == 2), "{mntr}");
        assert!(mntr.contains("zk_packets_received\t5\n"));
    }
}
