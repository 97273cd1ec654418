//! multi: all-or-nothing. Ops run one by one on the tree itself, each
//! recording an undo entry; on the first failure the entries are undone in
//! reverse and the reply lists `Ok` (0, rolled back) for the earlier ops,
//! the failing op's code, and `RuntimeInconsistency` (-2) for the later
//! ones, as ZooKeeper's `PrepRequestProcessor` and `DataTree.processTxn`
//! do. The whole multi takes one zxid; watches fire only if it commits.

use std::iter;

use crate::code::Code;
use crate::op::{Ctx, OpResult, Request, Response, Trigger};
use crate::path::name;
use crate::tree::DataTree;
use crate::write::Undo;

impl DataTree {
    pub(crate) fn multi(
        &mut self,
        ctx: Ctx,
        session: i64,
        ops: &[Request],
        triggers: &mut Vec<Trigger>,
    ) -> Result<Response, Code> {
        let allowed = ops.iter().all(|op| {
            matches!(
                op,
                Request::Create { .. }
                    | Request::Delete { .. }
                    | Request::SetData { .. }
                    | Request::Check { .. }
            )
        });
        if !allowed {
            return Err(Code::MarshallingError);
        }
        let mut undo = Vec::new();
        let mut pending = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.write_op(ctx, session, op, &mut undo, &mut pending) {
                Ok(result) => results.push(result),
                Err(code) => {
                    self.roll_back(undo);
                    let failed = iter::repeat_n(OpResult::Error(Code::Ok), i)
                        .chain(iter::once(OpResult::Error(code)))
                        .chain(iter::repeat_n(
                            OpResult::Error(Code::RuntimeInconsistency),
                            ops.len() - i - 1,
                        ))
                        .collect();
                    return Ok(Response::Multi(failed));
                }
            }
        }
        triggers.extend(pending);
        Ok(Response::Multi(results))
    }

    /// Undo changes newest first, restoring the tree exactly.
    fn roll_back(&mut self, undo: Vec<Undo>) {
        for entry in undo.into_iter().rev() {
            match entry {
                Undo::Created {
                    path,
                    parent,
                    prev_cversion,
                    prev_pzxid,
                } => {
                    if let Some(node) = self.nodes.remove(&path) {
                        let owner = node.stat.ephemeral_owner;
                        if let Some(set) = self.ephemerals.get_mut(&owner) {
                            set.remove(&path);
                            if set.is_empty() {
                                self.ephemerals.remove(&owner);
                            }
                        }
                    }
                    if let Some(p) = self.nodes.get_mut(&parent) {
                        p.children.remove(name(&path));
                        p.stat.cversion = prev_cversion;
                        p.stat.pzxid = prev_pzxid;
                    }
                }
                Undo::Deleted {
                    path,
                    parent,
                    node,
                    prev_pzxid,
                } => {
                    if let Some(p) = self.nodes.get_mut(&parent) {
                        p.children.insert(name(&path).to_string());
                        p.stat.pzxid = prev_pzxid;
                    }
                    let owner = node.stat.ephemeral_owner;
                    if owner != 0 {
                        self.ephemerals
                            .entry(owner)
                            .or_default()
                            .insert(path.clone());
                    }
                    self.nodes.insert(path, node);
                }
                Undo::DataSet {
                    path,
                    data,
                    mtime,
                    mzxid,
                    version,
                } => {
                    if let Some(n) = self.nodes.get_mut(&path) {
                        n.data = data;
                        n.stat.mtime = mtime;
                        n.stat.mzxid = mzxid;
                        n.stat.version = version;
                    }
                }
            }
        }
    }
}
