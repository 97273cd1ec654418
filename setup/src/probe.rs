//! What `mason setup parse-list` asks each machine over SSH: its interfaces, their MACs
//! and IPv4 addresses (`ip -o link` and `ip -o -4 addr`). The control interface is the one
//! holding the address SSH reached; the experiment interface is another interface with a
//! private address (Emulab and CloudLab experiment LANs are 10.x), or the control one when
//! the machine has no other.

use crate::machines::Machine;
use std::net::{IpAddr, Ipv4Addr};

/// The command run on each machine; its output is what [`choose`] reads.
pub const PROBE_COMMAND: &str = "ip -o link show; echo ---; ip -o -4 addr show";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub mac: Option<String>,
    pub addrs: Vec<Ipv4Addr>,
}

/// Reads the probe's output into the machine's non-loopback interfaces.
pub fn parse(output: &str) -> Vec<Iface> {
    let (links, addrs) = output.split_once("---").unwrap_or((output, ""));
    let mut ifaces: Vec<Iface> = Vec::new();
    for l in links.lines() {
        // "2: eth0@if5: <BROADCAST,...> mtu 1500 ... link/ether 2a:1b:... brd ff:..."
        let mut parts = l.splitn(3, ':');
        let (Some(_), Some(name), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let name = name.trim().split('@').next().unwrap_or("").to_string();
        let words: Vec<&str> = rest.split_whitespace().collect();
        let mac = words
            .iter()
            .position(|w| *w == "link/ether")
            .and_then(|i| words.get(i + 1))
            .map(|m| m.to_string());
        if !name.is_empty() && name != "lo" {
            ifaces.push(Iface {
                name,
                mac,
                addrs: Vec::new(),
            });
        }
    }
    for l in addrs.lines() {
        // "2: eth0    inet 10.1.1.2/24 brd 10.1.1.255 scope global eth0\ ..."
        let words: Vec<&str> = l.split_whitespace().collect();
        let (Some(name), Some(i)) = (words.get(1), words.iter().position(|w| *w == "inet")) else {
            continue;
        };
        let Some(ip) = words
            .get(i + 1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        if let Some(f) = ifaces.iter_mut().find(|f| f.name == *name) {
            f.addrs.push(ip);
        }
    }
    ifaces
}

/// Fills `m`'s interface fields from what the probe found; `reached` is the address SSH
/// connected to, if known. Errors say what was missing.
pub fn choose(m: &mut Machine, ifaces: &[Iface], reached: Option<IpAddr>) -> Result<(), String> {
    // Bridges and virtual interfaces of containers and VMs are neither network.
    let virtual_ = |n: &str| {
        ["docker", "veth", "virbr", "br-", "cni", "flannel"]
            .iter()
            .any(|p| n.starts_with(p))
    };
    let with_addr: Vec<&Iface> = ifaces
        .iter()
        .filter(|f| !f.addrs.is_empty() && !virtual_(&f.name))
        .collect();
    if with_addr.is_empty() {
        return Err(format!("{}: no interface has an IPv4 address", m.name));
    }
    let ctrl = reached
        .and_then(|r| {
            with_addr
                .iter()
                .find(|f| f.addrs.iter().any(|a| IpAddr::V4(*a) == r))
        })
        .unwrap_or(&with_addr[0]);
    let ten = |a: &Ipv4Addr| a.octets()[0] == 10;
    let exp = with_addr
        .iter()
        .find(|f| f.name != ctrl.name && f.addrs.iter().any(ten))
        .or_else(|| {
            with_addr
                .iter()
                .find(|f| f.name != ctrl.name && f.addrs.iter().any(|a| a.is_private()))
        })
        .or_else(|| with_addr.iter().find(|f| f.name != ctrl.name))
        .unwrap_or(ctrl);
    m.iface1 = exp.name.clone();
    m.mac = exp.mac.clone().unwrap_or_else(|| "-".into());
    let exp_ip = exp
        .addrs
        .iter()
        .find(|a| ten(a))
        .or_else(|| exp.addrs.iter().find(|a| a.is_private()))
        .unwrap_or(&exp.addrs[0]);
    m.ip = Some(IpAddr::V4(*exp_ip));
    m.ctrl = reached.map_or_else(|| ctrl.addrs[0].to_string(), |r| r.to_string());
    m.iface2 = ctrl.name.clone();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::Role;

    const EMULAB: &str = "\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eno1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000\\    link/ether 18:66:da:00:00:01 brd ff:ff:ff:ff:ff:ff
3: enp6s0f0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000\\    link/ether a0:36:9f:00:00:02 brd ff:ff:ff:ff:ff:ff
4: enp6s0f1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether a0:36:9f:00:00:03 brd ff:ff:ff:ff:ff:ff
---
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eno1    inet 155.98.36.17/22 brd 155.98.39.255 scope global eno1\\       valid_lft forever preferred_lft forever
3: enp6s0f0    inet 10.10.1.2/24 brd 10.10.1.255 scope global enp6s0f0\\       valid_lft forever preferred_lft forever
";

    fn machine() -> Machine {
        Machine {
            line: 1,
            name: "proxy-1".into(),
            role: Role::Proxy,
            index: 1,
            pc_id: "pc1".into(),
            iface1: "-".into(),
            mac: "-".into(),
            ip: None,
            ctrl: "pc1.emulab.net".into(),
            iface2: "-".into(),
        }
    }

    #[test]
    fn picks_the_experiment_interface() {
        let f = parse(EMULAB);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].addrs, vec![Ipv4Addr::new(155, 98, 36, 17)]);
        let mut m = machine();
        choose(&mut m, &f, Some("155.98.36.17".parse().unwrap())).unwrap();
        assert_eq!(
            m.to_line(),
            "proxy-1,pc1,enp6s0f0,a0:36:9f:00:00:02,10.10.1.2,155.98.36.17,eno1"
        );
    }

    #[test]
    fn one_interface_serves_both() {
        let out = "2: eth0@if7: <BROADCAST,UP> mtu 1500 link/ether 6a:00:00:00:00:07 brd ff:ff:ff:ff:ff:ff\n---\n2: eth0    inet 10.213.7.11/24 brd 10.213.7.255 scope global eth0\n";
        let mut m = machine();
        choose(&mut m, &parse(out), Some("10.213.7.11".parse().unwrap())).unwrap();
        assert_eq!(
            m.to_line(),
            "proxy-1,pc1,eth0,6a:00:00:00:00:07,10.213.7.11,10.213.7.11,eth0"
        );
        assert!(choose(&mut machine(), &parse("---\n"), None).is_err());
    }
}
