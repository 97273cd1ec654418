//! Counting a process's TCP connections from /proc (Linux): which of its sockets are
//! established to given loopback ports.

/// The sockets of process `pid` connected to one of `ports` on loopback.
pub fn connections_to(pid: i32, ports: &[u16]) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's fds")
        .flatten()
    {
        if let Ok(l) = std::fs::read_link(fd.path()) {
            let l = l.to_string_lossy().into_owned();
            if let Some(i) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(i.to_string());
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // remote address, state (01: established), inode
            let (Some(rem), Some(st), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else {
                return false;
            };
            let port = rem
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            *st == "01" && inodes.contains(*inode) && port.is_some_and(|p| ports.contains(&p))
        })
        .count()
}
