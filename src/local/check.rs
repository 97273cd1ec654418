//! The flag combinations `mason local` refuses before it starts anything, each with the
//! flag it names: a run that cannot mean what its flags say never starts.

use crate::args::{LocalArgs, System, Workload};
use mason_client::load::OpSpaces;

/// Why the flags `a` (with the run's `workload`) are refused, or `None`.
pub(super) fn refused(a: &LocalArgs, workload: Workload) -> Option<String> {
    if a.system == System::Zkmason {
        let refused = [
            ("--record-contiguity", a.record_contiguity),
            ("--spaces (the shards make the spaces)", a.spaces != 1),
            ("--op-spaces", a.op_spaces != OpSpaces::All),
        ];
        if let Some((flag, _)) = refused.iter().find(|x| x.1) {
            return Some(format!("{flag} does not apply to the zkmason system"));
        }
    } else if a.zk.zk_shards.is_some() || a.kill_zk_server.is_some() {
        return Some("--zk-shards and --kill-zk-server apply to the zkmason system only".into());
    }
    if a.system == System::Rsmkeeper {
        let refused = [
            ("--groups other than 1", a.groups.is_some_and(|g| g != 1)),
            ("--kill-sequencer", a.kill_sequencer.is_some()),
            ("--record-contiguity", a.record_contiguity),
            ("--spaces", a.spaces != 1),
        ];
        if let Some((flag, _)) = refused.iter().find(|x| x.1) {
            return Some(format!(
                "{flag} does not apply to the {} system (one group, no sequencer)",
                a.system.name()
            ));
        }
    }
    if a.serve && !a.system.zk() {
        return Some("--serve serves ZooKeeper: it applies to rsmkeeper and zkmason only".into());
    }
    if workload.zk() != a.system.zk() {
        return Some(format!(
            "--workload {} does not apply to the {} system",
            format!("{workload:?}").to_lowercase(),
            a.system.name()
        ));
    }
    if a.system.log() && !a.log_servers.is_multiple_of(a.replication) {
        return Some(format!(
            "--log-servers {} is not a multiple of --replication {}",
            a.log_servers, a.replication
        ));
    }
    if a.system == System::Corfumason && a.spaces != 1 {
        return Some(
            "corfumason runs one sequence space (the log's positions); drop --spaces".into(),
        );
    }
    if a.system.log() && a.kill_log_server.is_some() && a.log_victim >= a.log_servers {
        return Some(format!(
            "--log-victim {} is not one of the {} log servers",
            a.log_victim, a.log_servers
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Cmd};
    use clap::Parser;

    /// What `mason local <flags>` is refused for, before anything starts.
    fn why(flags: &str) -> Option<String> {
        let argv = ["mason", "local"]
            .into_iter()
            .chain(flags.split_whitespace());
        let Cmd::Local(a) = Cli::try_parse_from(argv).unwrap().cmd else {
            panic!("not mason local");
        };
        let workload = a.workload.unwrap_or(if a.system.zk() {
            Workload::Mixed
        } else {
            Workload::Appends
        });
        refused(&a, workload)
    }

    #[test]
    fn each_flag_that_cannot_apply_is_named() {
        for (flags, named) in [
            ("--system zkmason --spaces 2", "--spaces"),
            ("--system mason --zk-shards 2", "--zk-shards"),
            ("--system rsmkeeper --groups 2", "--groups other than 1"),
            ("--system mason --serve", "--serve"),
            ("--system mason --workload mixed", "--workload mixed"),
            (
                "--system corfu --log-servers 3 --replication 2",
                "--log-servers 3",
            ),
            ("--system corfumason --spaces 2", "--spaces"),
            (
                "--system corfu --kill-log-server 1 --log-victim 4",
                "--log-victim 4",
            ),
        ] {
            let why = why(flags).unwrap_or_else(|| panic!("`{flags}` was not refused"));
            assert!(why.contains(named), "`{flags}`: {why}");
        }
    }

    #[test]
    fn flags_that_apply_are_not_refused() {
        for flags in [
            "",
            "--system zkmason --zk-shards 3",
            "--system rsmkeeper",
            "--system corfu --kill-log-server 1 --log-victim 3",
            "--system corfumason",
            "--system direct --spaces 4",
        ] {
            assert_eq!(why(flags), None, "`{flags}`");
        }
    }
}
