//! The Emulab/CloudLab "List View" paste that `machine_info.txt` is made from: one node a
//! line, whitespace separated, `name pcID type status ... ssh -p 22 user@host`. Header
//! lines (no `ssh` command, first word a column title) and blank lines are skipped; any
//! other line without a usable `ssh` command is an error naming it.

use crate::machines::{role_of, Machine};

/// One node of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub line: usize,
    pub name: String,
    pub pc_id: String,
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

impl Listed {
    /// `user@host`, or `host`.
    pub fn target(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// The machine as far as the list itself says: the control address is the SSH host,
    /// and every field the list does not give is `-`.
    pub fn offline(&self) -> Result<Machine, String> {
        let (role, index) = role_of(&self.name)?;
        Ok(Machine {
            line: self.line,
            name: self.name.clone(),
            role,
            index,
            pc_id: self.pc_id.clone(),
            iface1: "-".into(),
            mac: "-".into(),
            ip: None,
            ctrl: self.host.clone(),
            iface2: "-".into(),
        })
    }
}

const HEADER_WORDS: [&str; 6] = ["node", "id", "name", "hostname", "client", "#"];

/// Parses a List View paste; errors name the line.
pub fn parse(file: &str, text: &str) -> Result<Vec<Listed>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let words: Vec<&str> = raw.split_whitespace().collect();
        let Some(first) = words.first() else {
            continue;
        };
        let Some(at) = words.iter().position(|w| *w == "ssh") else {
            let lower = first.to_ascii_lowercase();
            // A node's line without its ssh command (not ready yet) is an error, even
            // when its name starts like a column title ("client-1").
            if role_of(first).is_err() && HEADER_WORDS.iter().any(|h| lower.starts_with(h)) {
                continue;
            }
            return Err(format!(
                "{file} line {line}: no 'ssh' command (expected 'name pcID ... ssh -p PORT user@host')"
            ));
        };
        if at < 2 {
            return Err(format!(
                "{file} line {line}: expected the node's name and pcID before 'ssh'"
            ));
        }
        let (user, host, port) =
            parse_ssh(&words[at + 1..]).map_err(|m| format!("{file} line {line}: {m}"))?;
        role_of(first).map_err(|m| format!("{file} line {line}, field 'name': {m}"))?;
        if out.iter().any(|l: &Listed| l.name == *first) {
            return Err(format!("{file} line {line}: '{first}' is listed twice"));
        }
        out.push(Listed {
            line,
            name: first.to_string(),
            pc_id: words[1].to_string(),
            user,
            host,
            port,
        });
    }
    if out.is_empty() {
        return Err(format!("{file}: no nodes with an ssh command"));
    }
    Ok(out)
}

type SshTarget = (Option<String>, String, u16);

/// The arguments of an `ssh` command: `-p PORT`, `-l USER`, and `[user@]host`.
fn parse_ssh(args: &[&str]) -> Result<SshTarget, String> {
    let (mut user, mut port, mut host) = (None, 22u16, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = |it: &mut std::slice::Iter<&str>, flag: &str| {
            it.next()
                .map(|v| v.to_string())
                .ok_or_else(|| format!("'ssh {flag}' without a value"))
        };
        match *a {
            "-p" => {
                let v = value(&mut it, "-p")?;
                port = v.parse().map_err(|_| format!("'{v}' is not an SSH port"))?;
            }
            "-l" => user = Some(value(&mut it, "-l")?),
            s if s.starts_with("-p") && s.len() > 2 => {
                port = s[2..]
                    .parse()
                    .map_err(|_| format!("'{s}' is not an SSH port"))?;
            }
            s if s.starts_with('-') => {}
            s if host.is_none() => match s.split_once('@') {
                Some((u, h)) if !u.is_empty() && !h.is_empty() => {
                    user = Some(u.to_string());
                    host = Some(h.to_string());
                }
                Some(_) => return Err(format!("'{s}' is not user@host")),
                None => host = Some(s.to_string()),
            },
            _ => {}
        }
    }
    let host = host.ok_or("the ssh command names no host")?;
    Ok((user, host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulab_and_cloudlab_lines() {
        let text = "\
Node ID   Type  Status  SSH command
sequencer-1 pc417 d430 ready ssh -p 22 alice@pc417.emulab.net

proxy-1\tpc418\td430\tready\t\tssh -p 2222 alice@pc418.emulab.net
client-1 hp012 m510 ready ssh -l bob -p22 hp012.utah.cloudlab.us
";
        let l = parse("list.txt", text).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].target(), "alice@pc417.emulab.net");
        assert_eq!((l[0].line, l[0].port), (2, 22));
        assert_eq!((l[1].pc_id.as_str(), l[1].port), ("pc418", 2222));
        assert_eq!(l[2].target(), "bob@hp012.utah.cloudlab.us");
        let m = l[0].offline().unwrap();
        assert_eq!(m.to_line(), "sequencer-1,pc417,-,-,-,pc417.emulab.net,-");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("l", "Node ID\nproxy-1 pc1 d430 ready\n").unwrap_err();
        assert!(e.contains("l line 2: no 'ssh'"), "{e}");
        // A node whose name starts like a column title is still a node.
        let e = parse("l", "client-1 pc1 d430 booting\n").unwrap_err();
        assert!(e.contains("l line 1: no 'ssh'"), "{e}");
        let e = parse("l", "proxy-1 pc1 ssh -p x a@b\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("not an SSH port"), "{e}");
        let e = parse("l", "gateway-1 pc1 ssh a@b\n").unwrap_err();
        assert!(e.contains("field 'name'"), "{e}");
        let e = parse("l", "proxy-1 pc1 ssh a@b\nproxy-1 pc2 ssh a@c\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
        let e = parse("l", "proxy-1 pc1 ssh -p 22\n").unwrap_err();
        assert!(e.contains("names no host"), "{e}");
        assert!(parse("l", "\n\n").is_err());
    }
}
