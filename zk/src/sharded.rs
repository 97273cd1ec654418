//! ZK-Mason's sharded tree: one shard's part of the data tree, and how an op whose outcome
//! depends on records of several shards runs on each of them.
//!
//! Shard `me` of `shards` holds the znode records it owns ([`shard::owner`]) and the whole
//! session table. Every shard an op touches ([`shard::touched`]) applies it, in the same
//! global order. When the op touches more than one shard ([`needs_views`]), each touched
//! shard first computes its [`View`] (the owned records the op needs, as they stand just
//! before the op) and the views are exchanged; then every touched shard runs the whole op
//! on its own records plus the others' views with the ordinary [`DataTree::apply`] (the
//! same code on the same input, so the same outcome everywhere) and keeps only the changes
//! to the records it owns, and the watch triggers on paths it owns.
//!
//! What a view carries: for a create, delete or multi, the record (or its absence) of each
//! path the op names and of each such path's parent; for closeSession, the session's
//! ephemerals with their records; for getEphemerals, the matching ephemeral paths; for
//! getAllChildrenNumber, the path's record and how many of its descendants the shard holds.
//!
//! Every touched shard answers what the whole tree would, zxid included for writes. A read
//! answers with the shard's own last zxid, which may be lower than the whole tree's (the
//! shard did not apply writes that did not touch it).

mod wire;

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::op::{Applied, Ctx, OpResult, Request, Response};
use crate::shard::{owner, touched};
use crate::tree::{DataTree, Node};
use crate::types::{Acl, StatPersisted};

pub use wire::ViewError;

/// A znode record as a view carries it: everything the tree holds for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeImage {
    pub data: Bytes,
    pub acl: Vec<Acl>,
    /// Persisted status; `stat.cversion` is the stored child-create counter.
    pub stat: StatPersisted,
    pub children: BTreeSet<String>,
}

impl From<&Node> for NodeImage {
    fn from(node: &Node) -> NodeImage {
        NodeImage {
            data: node.data.clone(),
            acl: node.acl.clone(),
            stat: node.stat,
            children: node.children.clone(),
        }
    }
}

impl From<&NodeImage> for Node {
    fn from(image: &NodeImage) -> Node {
        Node {
            data: image.data.clone(),
            acl: image.acl.clone(),
            stat: image.stat,
            children: image.children.clone(),
        }
    }
}

/// What one touched shard tells the others before an op spanning shards runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// The shard this view comes from.
    pub shard: u32,
    /// Each path the op needs that the shard owns: its record, or `None` where no node is.
    pub records: Vec<(String, Option<NodeImage>)>,
    /// getEphemerals: the session's matching ephemeral paths the shard owns.
    pub ephemerals: Vec<String>,
    /// getAllChildrenNumber: the path's descendants the shard owns.
    pub descendants: u64,
}

/// Whether `req` runs with views: its outcome may depend on records of more than one shard
/// (it touches several). Never with one shard; never for createSession or moveSession,
/// which only change the session table every shard holds.
pub fn needs_views(req: &Request, shards: u32) -> bool {
    !matches!(
        req,
        Request::CreateSession { .. } | Request::MoveSession { .. }
    ) && touched(req, shards).count_ones() > 1
}

/// The node-map key of a path the op names (`""` is the root's alias).
fn key(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Shard `me`'s view for `req` from op-session `session`, computed on its tree just
/// before the op. A session moved to another owner gets an empty view (the op is refused
/// everywhere); otherwise the view is of the session the op-session acts as.
pub fn view(tree: &DataTree, session: i64, req: &Request, me: u32, shards: u32) -> View {
    let mine = |p: &str| owner(p, shards) == me;
    let image = |p: &str| (p.to_string(), tree.nodes.get(p).map(NodeImage::from));
    let mut out = View {
        shard: me,
        ..View::default()
    };
    let session = match tree.resolve_session(session) {
        Ok(acting) => acting,
        Err(crate::code::Code::SessionMoved) => return out,
        Err(_) => session,
    };
    match req {
        Request::CreateSession { .. } | Request::MoveSession { .. } => {}
        Request::CloseSession => {
            if let Some(set) = tree.ephemerals.get(&session) {
                out.records = set.iter().filter(|p| mine(p)).map(|p| image(p)).collect();
            }
        }
        Request::GetEphemerals { .. } => {
            if let Ok(Response::Ephemerals(paths)) = tree.read(session, req) {
                out.ephemerals = paths.into_iter().filter(|p| mine(p)).collect();
            }
        }
        Request::GetAllChildrenNumber { path } => {
            if mine(path) {
                out.records.push(image(key(path)));
            }
            out.descendants = tree.descendants_held(path) as u64;
        }
        _ => {
            let mut uses = Uses::default();
            uses.add(req);
            let mut seen = BTreeSet::new();
            for p in req.paths().into_iter().map(key) {
                if mine(p) && seen.insert(p) {
                    out.records.push(match uses.parents.get(p) {
                        Some(kids) if !uses.named.contains(p) => {
                            (p.to_string(), tree.nodes.get(p).map(|n| kids.trim(n)))
                        }
                        _ => image(p),
                    });
                }
            }
        }
    }
    out
}

/// What an op needs of its records: the paths it names itself (their whole records), and,
/// for each parent it only creates or deletes under, the child names it may create or
/// delete there. A parent's view then carries only those of its children (to decide
/// NodeExists, and to take a deleted name out), not its whole child list: with tens of
/// thousands of children under one parent, shipping the list with every create was the
/// cost of each create. Nothing else of a parent named only as a parent reaches a reply.
#[derive(Default)]
struct Uses {
    named: BTreeSet<String>,
    parents: std::collections::BTreeMap<String, Kids>,
}

#[derive(Default)]
struct Kids {
    /// Names created (not sequential) or deleted.
    names: BTreeSet<String>,
    /// The names of sequential creates, before their suffix.
    sequential: Vec<String>,
    /// Creates under this parent (each moves its counter by one).
    creates: i32,
}

impl Uses {
    fn add(&mut self, req: &Request) {
        match req {
            Request::Create { path, mode, .. } => {
                self.named.insert(key(path).to_string());
                if let Some(parent) = crate::path::parent(path) {
                    let kids = self.parents.entry(key(parent).to_string()).or_default();
                    let name = crate::path::name(path).to_string();
                    if mode.is_sequential() {
                        kids.sequential.push(name);
                    } else {
                        kids.names.insert(name);
                    }
                    kids.creates = kids.creates.saturating_add(1);
                }
            }
            Request::Delete { path, .. } => {
                self.named.insert(key(path).to_string());
                if let Some(parent) = crate::path::parent(path) {
                    let kids = self.parents.entry(key(parent).to_string()).or_default();
                    kids.names.insert(crate::path::name(path).to_string());
                }
            }
            Request::Multi(ops) => ops.iter().for_each(|op| self.add(op)),
            other => {
                for p in other.paths() {
                    self.named.insert(key(p).to_string());
                }
            }
        }
    }
}

impl Kids {
    /// `node`'s record with only the children the op may create or delete: the names it
    /// names, and the names its sequential creates can get from the counter on.
    fn trim(&self, node: &Node) -> NodeImage {
        let mut keep: BTreeSet<String> = self
            .names
            .iter()
            .filter(|n| node.children.contains(*n))
            .cloned()
            .collect();
        for prefix in &self.sequential {
            for j in 0..self.creates {
                let n = format!("{prefix}{:010}", node.stat.cversion.wrapping_add(j));
                if node.children.contains(&n) {
                    keep.insert(n);
                }
            }
        }
        NodeImage {
            data: node.data.clone(),
            acl: node.acl.clone(),
            stat: node.stat,
            children: keep,
        }
    }
}

/// Apply `req` on shard `me`'s tree, given the views of the other shards the op touches
/// (`others`; views from `me` itself are ignored). Returns what the whole tree returns
/// (for a read, with the shard's own last zxid), with only the triggers on paths `me`
/// owns, and leaves in `tree` only records `me` owns. A record in a view for a path `me`
/// owns is ignored: the shard's own record is the truth.
pub fn apply_sharded(
    tree: &mut DataTree,
    ctx: Ctx,
    session: i64,
    req: &Request,
    others: &[View],
    me: u32,
    shards: u32,
) -> Applied {
    let mut applied = if !needs_views(req, shards) {
        tree.apply(ctx, session, req)
    } else {
        let others = || others.iter().filter(|v| v.shard != me);
        match req {
            Request::GetEphemerals { .. } => {
                let mut applied = tree.apply(ctx, session, req);
                if let Ok(Response::Ephemerals(paths)) = &mut applied.response {
                    paths.extend(others().flat_map(|v| v.ephemerals.iter().cloned()));
                    paths.sort();
                    paths.dedup();
                }
                applied
            }
            Request::GetAllChildrenNumber { path } => {
                let held = tree.descendants_held(path) as u64;
                let total = others().fold(held, |n, v| n.saturating_add(v.descendants));
                let mut applied =
                    with_views(tree, others(), me, shards, |t| t.apply(ctx, session, req));
                if let Ok(Response::AllChildrenNumber(n)) = &mut applied.response {
                    *n = i32::try_from(total).unwrap_or(i32::MAX);
                }
                applied
            }
            _ => with_views(tree, others(), me, shards, |t| t.apply(ctx, session, req)),
        }
    };
    applied.triggers.retain(|t| owner(&t.path, shards) == me);
    applied
}

/// Run `f` on the tree with the views' records added (those `me` neither owns nor holds),
/// then drop every record `me` does not own: the added ones and any the op created.
fn with_views<'a>(
    tree: &mut DataTree,
    views: impl Iterator<Item = &'a View>,
    me: u32,
    shards: u32,
    f: impl FnOnce(&mut DataTree) -> Applied,
) -> Applied {
    let mut foreign: Vec<String> = Vec::new();
    for (path, record) in views.flat_map(|v| v.records.iter()) {
        let Some(image) = record else { continue };
        if owner(path, shards) == me || tree.nodes.contains_key(path) {
            continue;
        }
        insert(tree, path, Node::from(image));
        foreign.push(path.clone());
    }
    let applied = f(tree);
    match &applied.response {
        Ok(Response::Create { path, .. }) => foreign.push(path.clone()),
        Ok(Response::Multi(results)) => {
            for result in results {
                if let OpResult::Create { path, .. } = result {
                    foreign.push(path.clone());
                }
            }
        }
        _ => {}
    }
    for path in foreign {
        if owner(&path, shards) != me {
            remove(tree, &path);
        }
    }
    applied
}

/// Add a record, keeping the ephemeral sets in step.
fn insert(tree: &mut DataTree, path: &str, node: Node) {
    let session = node.stat.ephemeral_owner;
    if session != 0 {
        tree.ephemerals
            .entry(session)
            .or_default()
            .insert(path.to_string());
    }
    tree.nodes.insert(path.to_string(), node);
}

/// Drop a record, keeping the ephemeral sets in step (the parent's child set is left as
/// is: the record only leaves this shard's keeping).
fn remove(tree: &mut DataTree, path: &str) {
    let Some(node) = tree.nodes.remove(path) else {
        return;
    };
    let session = node.stat.ephemeral_owner;
    if let Some(set) = tree.ephemerals.get_mut(&session) {
        set.remove(path);
        if set.is_empty() {
            tree.ephemerals.remove(&session);
        }
    }
}

impl DataTree {
    /// A fresh tree's part that shard `me` of `shards` owns: the fixed nodes (`/`,
    /// `/zookeeper`, `/zookeeper/quota`, `/zookeeper/config`) live on their owners.
    pub fn new_shard(me: u32, shards: u32) -> DataTree {
        let mut tree = DataTree::new();
        tree.nodes.retain(|path, _| owner(path, shards) == me);
        tree
    }

    /// Whether every record this tree holds is owned by shard `me` of `shards`.
    pub fn holds_only_owned(&self, me: u32, shards: u32) -> bool {
        self.nodes.keys().all(|path| owner(path, shards) == me)
    }
}

/// Puts shards' trees back together (the verdict's whole tree): every record from the
/// one shard that holds it, the session table and its owners (every shard holds the
/// same ones), the
/// largest zxid. The result must be one tree: a root, every node listed by its parent,
/// every listed child present, no record held twice, the same sessions everywhere.
pub fn merge(parts: &[DataTree]) -> Result<DataTree, String> {
    let first = parts.first().ok_or("no shard trees to merge")?;
    let mut whole = DataTree {
        nodes: std::collections::BTreeMap::new(),
        ephemerals: std::collections::BTreeMap::new(),
        sessions: first.sessions.clone(),
        owners: first.owners.clone(),
        aliases: first.aliases.clone(),
        last_zxid: 0,
    };
    for (s, part) in parts.iter().enumerate() {
        if part.sessions != first.sessions {
            return Err(format!("shard {s} holds other sessions than shard 0"));
        }
        if part.owners != first.owners {
            return Err(format!("shard {s} holds other session owners than shard 0"));
        }
        whole.last_zxid = whole.last_zxid.max(part.last_zxid);
        for (path, node) in &part.nodes {
            if whole.nodes.insert(path.clone(), node.clone()).is_some() {
                return Err(format!("{path} is held by two shards"));
            }
            let owner = node.stat.ephemeral_owner;
            if owner != 0 {
                whole
                    .ephemerals
                    .entry(owner)
                    .or_default()
                    .insert(path.clone());
            }
        }
    }
    if !whole.nodes.contains_key("/") {
        return Err("no shard holds the root".into());
    }
    for (path, node) in &whole.nodes {
        if let Some(parent) = crate::path::parent(path) {
            let listed = whole
                .nodes
                .get(parent)
                .is_some_and(|p| p.children.contains(crate::path::name(path)));
            if !listed {
                return Err(format!("{path} is not listed by its parent"));
            }
        }
        for child in &node.children {
            let full = if path == "/" {
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            };
            if !whole.nodes.contains_key(&full) {
                return Err(format!(
                    "{full} is listed by its parent but held by no shard"
                ));
            }
        }
    }
    Ok(whole)
}
