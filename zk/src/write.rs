//! The writes: create, delete, setData, check and setACL, each with
//! ZooKeeper 3.8's checks in `PrepRequestProcessor`'s order and the changes
//! `DataTree` makes. Create, delete and setData record an undo entry so a
//! multi can roll back.
//!
//! Check order, as ZooKeeper does it:
//! - create: container/TTL `Unimplemented`; an ephemeral for a session this
//!   tree does not know `SessionExpired`; no `/` or a NUL `BadArguments`;
//!   ACL `InvalidACL`; parent missing `NoNode`; parent ACL `NoAuth`; then the
//!   sequential suffix is appended and the full path validated
//!   (`BadArguments`); `NodeExists`; ephemeral parent
//!   `NoChildrenForEphemerals`. So a bad path under a missing parent is
//!   `NoNode`, as on a real server.
//! - delete: no `/`, NUL, or one of `/`, `/zookeeper`, `/zookeeper/quota`,
//!   `/zookeeper/config` `BadArguments`; parent `NoNode`; parent ACL `NoAuth`;
//!   node `NoNode`; `BadVersion`; `NotEmpty`.
//! - setData / check / setACL: path `BadArguments`; (setACL: `InvalidACL`);
//!   `NoNode`; ACL `NoAuth`; `BadVersion`.

use bytes::Bytes;

use crate::acl::{check_acl, fixup_acl};
use crate::code::Code;
use crate::op::{Ctx, OpResult, Request, Trigger};
use crate::path::{name, split_last_slash, validate_path};
use crate::tree::{DataTree, Node};
use crate::types::{perms, Acl, CreateMode, EventType, Stat, StatPersisted};

/// How to undo one change of a multi.
#[derive(Debug)]
pub(crate) enum Undo {
    Created {
        path: String,
        parent: String,
        prev_cversion: i32,
        prev_pzxid: i64,
    },
    Deleted {
        path: String,
        parent: String,
        node: Node,
        prev_pzxid: i64,
    },
    DataSet {
        path: String,
        data: Bytes,
        mtime: i64,
        mzxid: i64,
        version: i32,
    },
}

/// `checkAndIncVersion`: -1 matches any version; the new version wraps as
/// a Java int does.
fn check_version(current: i32, expected: i32) -> Result<i32, Code> {
    if expected != -1 && expected != current {
        return Err(Code::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

/// The map key of a raw parent: ZooKeeper aliases `""` to the root.
fn parent_key(raw: &str) -> &str {
    if raw.is_empty() {
        "/"
    } else {
        raw
    }
}

impl DataTree {
    /// One write that may appear in a multi (create, delete, setData,
    /// check); anything else is `MarshallingError`, as ZooKeeper refuses to
    /// decode such a multi.
    pub(crate) fn write_op(
        &mut self,
        ctx: Ctx,
        session: i64,
        req: &Request,
        undo: &mut Vec<Undo>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpResult, Code> {
        match req {
            Request::Create {
                path,
                data,
                acl,
                mode,
            } => self.create(ctx, session, path, data, acl, *mode, undo, triggers),
            Request::Delete { path, version } => self.delete(ctx, path, *version, undo, triggers),
            Request::SetData {
                path,
                data,
                version,
            } => self.set_data(ctx, path, data, *version, undo, triggers),
            Request::Check { path, version } => self.check(path, *version),
            _ => Err(Code::MarshallingError),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        ctx: Ctx,
        session: i64,
        path: &str,
        data: &Bytes,
        acl: &[Acl],
        mode: CreateMode,
        undo: &mut Vec<Undo>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpResult, Code> {
        if mode.is_container() || mode.is_ttl() {
            return Err(Code::Unimplemented);
        }
        if mode.is_ephemeral() && !self.sessions.contains_key(&session) {
            return Err(Code::SessionExpired);
        }
        if path.contains('\0') {
            return Err(Code::BadArguments);
        }
        let (raw_parent, _) = split_last_slash(path).ok_or(Code::BadArguments)?;
        let parent_path = parent_key(raw_parent).to_string();
        let acl = fixup_acl(acl)?;
        let parent = self.nodes.get(&parent_path).ok_or(Code::NoNode)?;
        check_acl(&parent.acl, perms::CREATE)?;
        let full = if mode.is_sequential() {
            format!("{path}{:010}", parent.stat.cversion)
        } else {
            path.to_string()
        };
        validate_path(&full)?;
        // Decided from the parent's child set (on a whole tree the same as
        // looking the node up): a ZK-Mason shard holds the parent's record,
        // while a sequential node's record could not be sent in advance.
        if full == "/" || parent.children.contains(name(&full)) {
            return Err(Code::NodeExists);
        }
        if parent.stat.ephemeral_owner != 0 {
            return Err(Code::NoChildrenForEphemerals);
        }

        let owner = if mode.is_ephemeral() { session } else { 0 };
        let node = Node::new(
            data.clone(),
            acl,
            StatPersisted::created(ctx.zxid, ctx.time_ms, owner),
        );
        let stat = node.client_stat();
        let node_acl = node.acl.clone();
        let parent = self.nodes.get_mut(&parent_path).ok_or(Code::NoNode)?;
        let parent_acl = parent.acl.clone();
        let (prev_cversion, prev_pzxid) = (parent.stat.cversion, parent.stat.pzxid);
        let new_cversion = prev_cversion.wrapping_add(1);
        // DataTree.createNode only moves cversion and pzxid forward; after
        // the counter overflows they stay put (and the next sequential
        // name collides, as on a real server).
        if new_cversion > parent.stat.cversion {
            parent.stat.cversion = new_cversion;
            parent.stat.pzxid = ctx.zxid;
        }
        parent.children.insert(name(&full).to_string());
        self.nodes.insert(full.clone(), node);
        if owner != 0 {
            self.ephemerals
                .entry(owner)
                .or_default()
                .insert(full.clone());
        }
        triggers.push(Trigger {
            path: full.clone(),
            event: EventType::NodeCreated,
            acl: node_acl,
        });
        triggers.push(Trigger {
            path: parent_path.clone(),
            event: EventType::NodeChildrenChanged,
            acl: parent_acl,
        });
        undo.push(Undo::Created {
            path: full.clone(),
            parent: parent_path,
            prev_cversion,
            prev_pzxid,
        });
        Ok(OpResult::Create { path: full, stat })
    }

    fn delete(
        &mut self,
        ctx: Ctx,
        path: &str,
        version: i32,
        undo: &mut Vec<Undo>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpResult, Code> {
        if path.contains('\0') || DataTree::is_special_path(path) {
            return Err(Code::BadArguments);
        }
        let (raw_parent, _) = split_last_slash(path).ok_or(Code::BadArguments)?;
        let parent = self.nodes.get(parent_key(raw_parent)).ok_or(Code::NoNode)?;
        check_acl(&parent.acl, perms::DELETE)?;
        let node = self.nodes.get(path).ok_or(Code::NoNode)?;
        check_version(node.stat.version, version)?;
        if !node.children.is_empty() {
            return Err(Code::NotEmpty);
        }
        let parent = parent_key(raw_parent).to_string();
        let (node, prev_pzxid) = self
            .remove_node(path, &parent, ctx.zxid, triggers)
            .ok_or(Code::NoNode)?;
        undo.push(Undo::Deleted {
            path: path.to_string(),
            parent,
            node,
            prev_pzxid,
        });
        Ok(OpResult::Delete)
    }

    /// `DataTree.deleteNode`: remove a node, unlink it from its session's
    /// ephemeral set and from its parent (moving the parent's pzxid forward,
    /// never back). Returns the node and the parent's previous pzxid. A
    /// parent that is not held (only on a ZK-Mason shard, where its owner
    /// updates it; on a whole tree a node's parent always exists) is
    /// skipped, with its NodeChildrenChanged trigger.
    pub(crate) fn remove_node(
        &mut self,
        path: &str,
        parent_path: &str,
        zxid: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Option<(Node, i64)> {
        let node = self.nodes.remove(path)?;
        let owner = node.stat.ephemeral_owner;
        if owner != 0 {
            if let Some(set) = self.ephemerals.get_mut(&owner) {
                set.remove(path);
                if set.is_empty() {
                    self.ephemerals.remove(&owner);
                }
            }
        }
        triggers.push(Trigger {
            path: path.to_string(),
            event: EventType::NodeDeleted,
            acl: node.acl.clone(),
        });
        let mut prev_pzxid = 0;
        if let Some(parent) = self.nodes.get_mut(parent_path) {
            prev_pzxid = parent.stat.pzxid;
            parent.children.remove(name(path));
            if zxid > parent.stat.pzxid {
                parent.stat.pzxid = zxid;
            }
            triggers.push(Trigger {
                path: parent_path.to_string(),
                event: EventType::NodeChildrenChanged,
                acl: parent.acl.clone(),
            });
        }
        Some((node, prev_pzxid))
    }

    fn set_data(
        &mut self,
        ctx: Ctx,
        path: &str,
        data: &Bytes,
        version: i32,
        undo: &mut Vec<Undo>,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpResult, Code> {
        validate_path(path)?;
        let node = self.nodes.get_mut(path).ok_or(Code::NoNode)?;
        check_acl(&node.acl, perms::WRITE)?;
        let new_version = check_version(node.stat.version, version)?;
        undo.push(Undo::DataSet {
            path: path.to_string(),
            data: std::mem::replace(&mut node.data, data.clone()),
            mtime: node.stat.mtime,
            mzxid: node.stat.mzxid,
            version: node.stat.version,
        });
        node.stat.mtime = ctx.time_ms;
        node.stat.mzxid = ctx.zxid;
        node.stat.version = new_version;
        let stat = node.client_stat();
        triggers.push(Trigger {
            path: path.to_string(),
            event: EventType::NodeDataChanged,
            acl: node.acl.clone(),
        });
        Ok(OpResult::SetData { stat })
    }

    fn check(&self, path: &str, version: i32) -> Result<OpResult, Code> {
        validate_path(path)?;
        let node = self.nodes.get(path).ok_or(Code::NoNode)?;
        check_acl(&node.acl, perms::READ)?;
        check_version(node.stat.version, version)?;
        Ok(OpResult::Check)
    }

    /// setACL: bumps aversion only; fires no watch.
    pub(crate) fn set_acl(&mut self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, Code> {
        validate_path(path)?;
        let acl = fixup_acl(acl)?;
        let node = self.nodes.get_mut(path).ok_or(Code::NoNode)?;
        check_acl(&node.acl, perms::ADMIN)?;
        let new_aversion = check_version(node.stat.aversion, version)?;
        node.stat.aversion = new_aversion;
        node.acl = acl;
        Ok(node.client_stat())
    }
}
