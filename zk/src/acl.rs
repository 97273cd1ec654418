//! ACL checks as a ZooKeeper 3.8 server makes them for a client that has
//! not authenticated (`PrepRequestProcessor.fixupACL`, `ZooKeeperServer.checkACL`).
//!
//! The model: the requester holds no authenticated ids, so only
//! `world:anyone` entries grant permissions, and the `auth` scheme cannot be
//! expanded. The default providers are `ip` and `digest`; their ids are
//! checked for form the way their `isValid` does. A real server also matches
//! `ip:` entries against the client's address; this tree has no addresses,
//! so such entries grant nothing here.

use crate::code::Code;
use crate::types::Acl;

/// Validate the ACL of a create or setACL: drop exact duplicates (keeping
/// the first), refuse an empty list, `auth` ids (nothing to expand them to),
/// unknown schemes and ill-formed ids with `InvalidACL`.
pub fn fixup_acl(acls: &[Acl]) -> Result<Vec<Acl>, Code> {
    let mut unique: Vec<Acl> = Vec::with_capacity(acls.len());
    for acl in acls {
        if !unique.contains(acl) {
            unique.push(acl.clone());
        }
    }
    if unique.is_empty() {
        return Err(Code::InvalidAcl);
    }
    for acl in &unique {
        let ok = match acl.scheme.as_str() {
            "world" => acl.id == "anyone",
            "digest" => java_split_count(&acl.id, ':') == 2,
            "ip" => is_valid_ip_id(&acl.id),
            _ => false,
        };
        if !ok {
            return Err(Code::InvalidAcl);
        }
    }
    Ok(unique)
}

/// Whether an unauthenticated requester holds `perm` on a node with `acl`:
/// an empty ACL allows everything, otherwise a `world:anyone` entry carrying
/// one of the requested bits must be present. Refusal is `NoAuth`.
pub fn check_acl(acl: &[Acl], perm: i32) -> Result<(), Code> {
    if acl.is_empty() {
        return Ok(());
    }
    let granted = acl
        .iter()
        .any(|a| a.perms & perm != 0 && a.scheme == "world" && a.id == "anyone");
    if granted {
        Ok(())
    } else {
        Err(Code::NoAuth)
    }
}

/// The ACL that getACL shows a reader without ADMIN: `digest` ids are cut
/// to `user:x`, as `FinalRequestProcessor` does.
pub fn redact_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.scheme == "digest" {
                let id = match a.id.find(':') {
                    Some(i) => format!("{}:x", &a.id[..i]),
                    None => a.id.clone(),
                };
                Acl {
                    perms: a.perms,
                    scheme: a.scheme.clone(),
                    id,
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

/// How many parts Java's `String.split(sep)` gives: trailing empty parts
/// are dropped, and a string without the separator is one part.
fn java_split_count(s: &str, sep: char) -> usize {
    if !s.contains(sep) {
        return 1;
    }
    let mut parts: Vec<&str> = s.split(sep).collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts.len()
}

/// `IPAuthenticationProvider.isValid`: a dotted IPv4 address with each part
/// in 0..=255, optionally `/bits` with bits in 0..=32.
fn is_valid_ip_id(id: &str) -> bool {
    let mut halves = id.splitn(2, '/');
    let addr = halves.next().unwrap_or("");
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return false;
    }
    let addr_ok = parts
        .iter()
        .all(|p| p.parse::<i32>().is_ok_and(|v| (0..=255).contains(&v)));
    if !addr_ok {
        return false;
    }
    match halves.next() {
        Some(bits) => bits.parse::<i32>().is_ok_and(|b| (0..=32).contains(&b)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::perms;

    #[test]
    fn fixup_refuses_empty_and_bad_ids() {
        assert_eq!(fixup_acl(&[]), Err(Code::InvalidAcl));
        let bad = [
            Acl::new(perms::ALL, "world", "someone"),
            Acl::new(perms::ALL, "auth", ""),
            Acl::new(perms::ALL, "super", "x"),
            Acl::new(perms::ALL, "digest", "user"),
            Acl::new(perms::ALL, "digest", "a:b:c"),
            Acl::new(perms::ALL, "ip", "1.2.3"),
            Acl::new(perms::ALL, "ip", "1.2.3.256"),
            Acl::new(perms::ALL, "ip", "1.2.3.4/33"),
            Acl::new(perms::ALL, "ip", "1.2.3.4/"),
        ];
        for acl in bad {
            assert_eq!(
                fixup_acl(std::slice::from_ref(&acl)),
                Err(Code::InvalidAcl),
                "{acl:?}"
            );
        }
    }

    #[test]
    fn fixup_keeps_good_ids_and_drops_duplicates() {
        let acl = [
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::ALL, "digest", "user:hash="),
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::ALL, "ip", "10.0.0.0/8"),
            Acl::new(perms::ALL, "digest", "user:"),
        ];
        let fixed = fixup_acl(&acl[..4]);
        assert_eq!(fixed.as_ref().map(|v| v.len()), Ok(3));
        // "user:" splits to one part in Java, so it is refused
        assert_eq!(fixup_acl(&acl[4..]), Err(Code::InvalidAcl));
    }

    #[test]
    fn check_needs_world_anyone_with_the_bit() {
        assert_eq!(check_acl(&[], perms::WRITE), Ok(()));
        assert_eq!(check_acl(&Acl::read_unsafe(), perms::READ), Ok(()));
        assert_eq!(
            check_acl(&Acl::read_unsafe(), perms::WRITE),
            Err(Code::NoAuth)
        );
        let digest = [Acl::new(perms::ALL, "digest", "u:p")];
        assert_eq!(check_acl(&digest, perms::READ), Err(Code::NoAuth));
    }

    #[test]
    fn redaction_masks_digest_passwords() {
        let acl = [
            Acl::new(perms::ALL, "digest", "user:secret"),
            Acl::new(perms::READ, "world", "anyone"),
        ];
        let shown = redact_digests(&acl);
        assert_eq!(shown[0].id, "user:x");
        assert_eq!(shown[1].id, "anyone");
    }
}
