//! Mason's `machine_info.txt`: one machine a line, `name,pcID,iface1,mac,ip,ctrl_ip,iface2`.
//! The role comes from the name (`sequencer-N`, `proxy-N`, `client-N`, `server-N`); `ip` is
//! the experiment-network address the roles talk over and `ctrl_ip` the control-network
//! address (or host name) SSH reaches. A field that is not known is written `-`. Blank lines
//! and lines starting with `#` are skipped. Every error names the file, the line and the
//! field.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// The fields of a line, in order.
pub const FIELDS: [&str; 7] = ["name", "pcID", "iface1", "mac", "ip", "ctrl_ip", "iface2"];

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Sequencer,
    Proxy,
    Client,
    /// A log server (Corfu) or, later, a ZooKeeper server.
    Server,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Sequencer, Role::Proxy, Role::Client, Role::Server];

    pub fn prefix(self) -> &'static str {
        match self {
            Role::Sequencer => "sequencer",
            Role::Proxy => "proxy",
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// One line of `machine_info.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// 1-based line number in its file.
    pub line: usize,
    pub name: String,
    pub role: Role,
    /// The N of `role-N`.
    pub index: u32,
    pub pc_id: String,
    pub iface1: String,
    pub mac: String,
    /// The experiment-network address, if known.
    pub ip: Option<IpAddr>,
    /// Where SSH reaches the machine: an address or a host name.
    pub ctrl: String,
    pub iface2: String,
}

impl Machine {
    /// The line as `machine_info.txt` holds it.
    pub fn to_line(&self) -> String {
        let ip = self.ip.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        [
            self.name.as_str(),
            &self.pc_id,
            &self.iface1,
            &self.mac,
            &ip,
            &self.ctrl,
            &self.iface2,
        ]
        .join(",")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}, field '{field}': {message}")]
pub struct MachineError {
    pub file: String,
    pub line: usize,
    pub field: &'static str,
    pub message: String,
}

/// The role and index a machine name gives (`proxy-3` is proxy 3).
pub fn role_of(name: &str) -> Result<(Role, u32), String> {
    let known = || {
        Role::ALL
            .iter()
            .map(|r| format!("{r}-N"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((prefix, n)) = name.rsplit_once('-') else {
        return Err(format!(
            "'{name}' names no role (expected one of {})",
            known()
        ));
    };
    let role = Role::ALL
        .into_iter()
        .find(|r| r.prefix() == prefix)
        .ok_or_else(|| {
            format!(
                "'{prefix}' in '{name}' is not a role (expected one of {})",
                known()
            )
        })?;
    let index = n
        .parse::<u32>()
        .map_err(|_| format!("'{n}' in '{name}' is not a machine number"))?;
    Ok((role, index))
}

fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c))
}

fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Parses a `machine_info.txt`; `file` names it in errors.
pub fn parse_machine_info(file: &str, text: &str) -> Result<Vec<Machine>, MachineError> {
    let mut out: Vec<Machine> = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut ips: HashMap<IpAddr, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let err = |field: &'static str, message: String| MachineError {
            file: file.to_string(),
            line,
            field,
            message,
        };
        let f: Vec<&str> = t.split(',').map(str::trim).collect();
        if f.len() < FIELDS.len() {
            return Err(err(
                FIELDS[f.len()],
                format!(
                    "missing: the line has {} field(s), expected {} ({})",
                    f.len(),
                    FIELDS.len(),
                    FIELDS.join(",")
                ),
            ));
        }
        if f.len() > FIELDS.len() {
            return Err(err(
                "iface2",
                format!(
                    "the line has {} fields, expected {} ({})",
                    f.len(),
                    FIELDS.len(),
                    FIELDS.join(",")
                ),
            ));
        }
        let name = f[0];
        let (role, index) = role_of(name).map_err(|m| err("name", m))?;
        if let Some(first) = names.get(name) {
            return Err(err(
                "name",
                format!("'{name}' is already the name on line {first}"),
            ));
        }
        for (k, field) in [(1, "pcID"), (2, "iface1"), (5, "ctrl_ip"), (6, "iface2")] {
            if !valid_word(f[k]) {
                return Err(err(field, format!("'{}' is not a valid {field}", f[k])));
            }
        }
        if f[3] != "-" && !valid_mac(f[3]) {
            return Err(err(
                "mac",
                format!("'{}' is not a MAC address (xx:xx:xx:xx:xx:xx) or -", f[3]),
            ));
        }
        let ip = if f[4] == "-" {
            None
        } else {
            let ip: IpAddr = f[4]
                .parse()
                .map_err(|_| err("ip", format!("'{}' is not an IP address or -", f[4])))?;
            if let Some(first) = ips.get(&ip) {
                return Err(err(
                    "ip",
                    format!("{ip} is already the address of the machine on line {first}"),
                ));
            }
            ips.insert(ip, line);
            Some(ip)
        };
        if f[5] == "-" {
            return Err(err(
                "ctrl_ip",
                "'-': the control address is how the machine is reached; it must be known"
                    .to_string(),
            ));
        }
        names.insert(name.to_string(), line);
        out.push(Machine {
            line,
            name: name.to_string(),
            role,
            index,
            pc_id: f[1].to_string(),
            iface1: f[2].to_string(),
            mac: f[3].to_string(),
            ip,
            ctrl: f[5].to_string(),
            iface2: f[6].to_string(),
        });
    }
    if out.is_empty() {
        return Err(MachineError {
            file: file.to_string(),
            line: 0,
            field: "name",
            message: "no machines (every line is blank or a comment)".to_string(),
        });
    }
    Ok(out)
}

/// The machines of `role`, by their number.
pub fn with_role(machines: &[Machine], role: Role) -> Vec<&Machine> {
    let mut v: Vec<&Machine> = machines.iter().filter(|m| m.role == role).collect();
    v.sort_by_key(|m| m.index);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# a comment
sequencer-1,pc401,eth1,0c:42:a1:00:00:01,10.10.1.1,155.98.36.1,eth0

proxy-1,pc402,eth1,0c:42:a1:00:00:02,10.10.1.2,pc402.emulab.net,eth0
client-1,pc403,-,-,-,155.98.36.3,-
";

    #[test]
    fn parses_roles_and_unknowns() {
        let m = parse_machine_info("m.txt", GOOD).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].role, m[0].index, m[0].line), (Role::Sequencer, 1, 2));
        assert_eq!(m[1].ctrl, "pc402.emulab.net");
        assert_eq!((m[2].role, m[2].ip), (Role::Client, None));
        assert_eq!(m[2].to_line(), "client-1,pc403,-,-,-,155.98.36.3,-");
        let again: Vec<String> = m.iter().map(Machine::to_line).collect();
        let reparsed = parse_machine_info("m.txt", &again.join("\n")).unwrap();
        assert_eq!(reparsed.len(), 3);
    }

    fn error(text: &str) -> MachineError {
        parse_machine_info("m.txt", text).unwrap_err()
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = error("sequencer-1,pc1,eth1,-,10.0.0.1,h1,eth0\nproxy-1,pc2,eth1,-,10.0.0.2\n");
        assert_eq!((e.line, e.field), (2, "ctrl_ip"));
        assert!(
            e.to_string().starts_with("m.txt line 2, field 'ctrl_ip'"),
            "{e}"
        );

        let e = error("proxy-1,pc1,eth1,-,10.0.0.1,h1,eth0\nproxy-1,pc2,eth1,-,10.0.0.2,h2,eth0");
        assert_eq!((e.line, e.field), (2, "name"));
        assert!(e.message.contains("line 1"), "{e}");

        let e = error("router-1,pc1,eth1,-,10.0.0.1,h1,eth0");
        assert_eq!((e.line, e.field), (1, "name"));
        assert!(
            e.message.contains("'router' in 'router-1' is not a role"),
            "{e}"
        );

        let e = error("proxy-x,pc1,eth1,-,10.0.0.1,h1,eth0");
        assert_eq!(e.field, "name");

        let e = error("proxy-1,pc1,eth1,zz:00,10.0.0.1,h1,eth0");
        assert_eq!(e.field, "mac");

        let e = error("proxy-1,pc1,eth1,-,10.0.0.300,h1,eth0");
        assert_eq!(e.field, "ip");

        let e = error("proxy-1,pc1,eth1,-,10.0.0.1,h1,eth0\nproxy-2,pc2,eth1,-,10.0.0.1,h2,eth0");
        assert_eq!((e.line, e.field), (2, "ip"));

        let e = error("proxy-1,pc1,eth1,-,10.0.0.1,h1,eth0,extra");
        assert_eq!(e.field, "iface2");

        let e = error("proxy-1,pc1,eth1,-,10.0.0.1,-,eth0");
        assert_eq!(e.field, "ctrl_ip");

        let e = error("proxy-1,pc 1,eth1,-,10.0.0.1,h1,eth0");
        assert_eq!(e.field, "pcID");

        let e = error("# nothing\n\n");
        assert!(e.message.contains("no machines"));
    }

    #[test]
    fn machines_of_a_role_in_number_order() {
        let text = "proxy-2,a,-,-,-,h2,-\nproxy-10,b,-,-,-,h10,-\nproxy-1,c,-,-,-,h1,-";
        let m = parse_machine_info("m.txt", text).unwrap();
        let p: Vec<u32> = with_role(&m, Role::Proxy).iter().map(|m| m.index).collect();
        assert_eq!(p, vec![1, 2, 10]);
    }
}
