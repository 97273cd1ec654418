//! Read requests (exists, getData, getACL, getChildren, sync,
//! getEphemerals, getAllChildrenNumber) as ZooKeeper's
//! `FinalRequestProcessor` answers them. Reads never change the tree and
//! never set watches; `WatchTable::register_read` does that from the result.
//!
//! Like ZooKeeper, reads do not validate paths: a bad path simply names no
//! node (`NoNode`), except that exists refuses a path with NUL
//! (`BadArguments`). The empty path is an alias of the root. exists checks
//! no ACL; the other reads need READ (getACL: READ or ADMIN).

use crate::acl::{check_acl, redact_digests};
use crate::code::Code;
use crate::op::{Request, Response};
use crate::tree::{DataTree, Node};
use crate::types::perms;

impl DataTree {
    /// Answer a read request without changing anything. `session` matters
    /// for getEphemerals only. A write request given here is
    /// `Unimplemented`.
    pub fn read(&self, session: i64, req: &Request) -> Result<Response, Code> {
        match req {
            // exists checks no ACL: a node nobody may read still shows its
            // Stat (observed on ZooKeeper 3.8.0)
            Request::Exists { path, .. } => {
                if path.contains('\0') {
                    return Err(Code::BadArguments);
                }
                let node = self.lookup(path).ok_or(Code::NoNode)?;
                Ok(Response::Stat(node.client_stat()))
            }
            Request::GetData { path, .. } => {
                let node = self.readable(path, perms::READ)?;
                Ok(Response::Data {
                    data: node.data.clone(),
                    stat: node.client_stat(),
                })
            }
            Request::GetAcl { path } => {
                let node = self.readable(path, perms::READ | perms::ADMIN)?;
                let acl = if check_acl(&node.acl, perms::ADMIN).is_ok() {
                    node.acl.clone()
                } else {
                    redact_digests(&node.acl)
                };
                Ok(Response::Acl {
                    acl,
                    stat: node.client_stat(),
                })
            }
            Request::GetChildren { path, .. } => {
                let node = self.readable(path, perms::READ)?;
                Ok(Response::Children {
                    names: node.children.iter().cloned().collect(),
                    stat: node.client_stat(),
                })
            }
            Request::Sync { path } => Ok(Response::Sync { path: path.clone() }),
            Request::GetEphemerals { prefix } => Ok(Response::Ephemerals(
                self.ephemerals_with_prefix(session, prefix),
            )),
            Request::GetAllChildrenNumber { path } => {
                self.readable(path, perms::READ)?;
                Ok(Response::AllChildrenNumber(self.all_children_number(path)))
            }
            _ => Err(Code::Unimplemented),
        }
    }

    /// The node at `path`, if the requester may read it with `perm`:
    /// `NoNode` first, then `NoAuth`.
    fn readable(&self, path: &str, perm: i32) -> Result<&Node, Code> {
        let node = self.lookup(path).ok_or(Code::NoNode)?;
        check_acl(&node.acl, perm)?;
        Ok(node)
    }

    /// getEphemerals: an empty or `/` prefix (after Java's trim) lists all
    /// of the session's ephemerals, otherwise those starting with `prefix`.
    fn ephemerals_with_prefix(&self, session: i64, prefix: &str) -> Vec<String> {
        let trimmed = prefix.trim_matches(|c: char| c <= ' ');
        let all = trimmed.is_empty() || trimmed == "/";
        self.ephemerals
            .get(&session)
            .map(|set| {
                set.iter()
                    .filter(|p| all || p.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// getAllChildrenNumber: every descendant of `path`; for `/` every node
    /// but the root.
    fn all_children_number(&self, path: &str) -> i32 {
        i32::try_from(self.descendants_held(path)).unwrap_or(i32::MAX)
    }

    /// The nodes this tree holds that getAllChildrenNumber counts for
    /// `path`: a sum over disjoint parts of the tree (ZK-Mason's shards)
    /// adds up to the whole tree's count.
    pub(crate) fn descendants_held(&self, path: &str) -> usize {
        if path == "/" {
            self.nodes.len() - usize::from(self.nodes.contains_key("/"))
        } else {
            let prefix = format!("{path}/");
            self.nodes
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .count()
        }
    }
}
