//! Serves a [`SeqNode`] on a transport: connections go through the common connection
//! layer (handshake, limits, bounded queues), and one driver feeds the node its frames
//! and its deadlines and carries out what it says.
//!
//! Who may say what: proxy processes (the handshake's "proxy" role) introduce themselves
//! with a `SeqHello` naming the groups they host, then ask for numbers, heartbeat, ask
//! for takeovers, promise and acknowledge fills, each for a group they host; clients of
//! the direct baseline ask for numbers for their own session at epoch 0, and nothing else;
//! watchers (`mason status`) ask for its status, and nothing else.
//! Anything else closes that connection with a logged reason. An answer goes to the
//! connection its request came on. With a record file, every grant to a direct session is
//! appended to it (the verdict's independent record of the direct baseline).

use crate::node::{SeqNode, SeqOut};
use bytes::Bytes;
use mason_common::auth::{Role, RoleKind};
use mason_common::codec::{encode_body, FramesPerConn};
use mason_common::conn::{self, ConnId, ConnInfo, Handler, Outbox, ServeConfig};
use mason_common::driver::{self, Executor, Machine};
use mason_common::msg::{Body, Frame};
use mason_common::record::{GrantChunk, RecordWriter};
use mason_common::transport::Listener;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub serve: ServeConfig,
    /// The largest frame a proxy may send (a promise carries its group's recorded set).
    pub max_frame: usize,
    /// The largest frame a direct client may send.
    pub client_max_frame: usize,
    /// Where to append the grants to direct sessions (`grants-<id>.bin`).
    pub record: Option<PathBuf>,
    /// Run the core on the thread that calls [`serve`], apart from the runtime's workers
    /// that serve the connections (the most throughput where the sequencer has cores of
    /// its own, or serves clients directly); or, false, as one more task of those workers,
    /// so that with one worker a request and its answer cross no thread (less CPU and
    /// latency per request where cores are shared and proxies carry the load).
    pub core_thread: bool,
}

enum Event {
    Open(ConnId, Role, Outbox),
    Frame(ConnId, Body),
    /// Frames that arrived together on one connection, in order.
    Frames(ConnId, Vec<Body>),
    Close(ConnId),
    Stop,
}

enum Action {
    /// Whole frames (each with its prefix) to one connection.
    SendFramed(Outbox, Bytes),
    /// One encoded frame, to many connections.
    SendBody(Outbox, Bytes),
    Close(Outbox, String),
    Record(GrantChunk),
}

struct Conn {
    out: Outbox,
    /// The groups the proxy process on this connection hosts (empty until its hello).
    groups: Vec<u32>,
    proxy: bool,
}

/// The node and the routing of its answers to connections.
struct Core {
    node: SeqNode,
    groups: u32,
    conns: HashMap<ConnId, Conn>,
    outs: Vec<SeqOut>,
    stopped: bool,
    metrics: crate::metrics::SeqMetrics,
    /// The inbox, to sample its depth (weak: it does not keep the inbox open).
    inbox: mpsc::WeakSender<Event>,
}

impl Core {
    fn on_frame(&mut self, id: ConnId, body: Body, now: u64, out: &mut Vec<Action>) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if let Body::StatusRequest(_) = body {
            let reply = mason_common::statusmsg::StatusReply {
                sequencer: Some(self.node.status()),
                ..Default::default()
            };
            self.outs
                .push(SeqOut::Reply(id, Body::StatusReply(Box::new(reply))));
            return;
        }
        let group = crate::node::group_of(&body);
        let refuse = match &body {
            Body::SeqHello(h) if h.groups.iter().any(|g| *g >= self.groups) => {
                Some("a hello naming a group this sequencer does not serve".to_string())
            }
            Body::SeqHello(h) => {
                c.groups = h.groups.clone();
                None
            }
            _ => match group {
                Some(g) if c.proxy && !c.groups.contains(&g) => Some(format!(
                    "a {} for group {g}, which it does not host",
                    body.name()
                )),
                _ => None,
            },
        };
        if let Some(why) = refuse {
            self.close(id, why, out);
            return;
        }
        if let Err(why) = self.node.on_frame(id, body, now, &mut self.outs) {
            self.outs.clear();
            self.close(id, why.to_string(), out);
        }
    }

    fn close(&mut self, id: ConnId, why: String, out: &mut Vec<Action>) {
        if let Some(c) = self.conns.remove(&id) {
            out.push(Action::Close(c.out, why));
        }
    }

    /// Carries out what the node said. Answers to one connection are framed into one
    /// buffer, handed over once (up to anything else that goes out, to keep the order).
    fn route(&mut self, out: &mut Vec<Action>) {
        let mut framed = FramesPerConn::default();
        let mut outs = std::mem::take(&mut self.outs);
        for o in outs.drain(..) {
            if !matches!(o, SeqOut::Reply(..)) {
                self.send_framed(&mut framed, out);
            }
            match o {
                SeqOut::Reply(origin, body) => framed.add(origin, &Frame::new(body)),
                SeqOut::Group(g, body) => {
                    let b = encode_body(&Frame::new(body));
                    for c in self.conns.values().filter(|c| c.groups.contains(&g)) {
                        out.push(Action::SendBody(c.out.clone(), b.clone()));
                    }
                }
                SeqOut::Broadcast(body) => {
                    let b = encode_body(&Frame::new(body));
                    for c in self.conns.values().filter(|c| c.proxy) {
                        out.push(Action::SendBody(c.out.clone(), b.clone()));
                    }
                }
                SeqOut::Record(g) => out.push(Action::Record(g)),
            }
        }
        self.send_framed(&mut framed, out);
        self.outs = outs;
    }

    fn send_framed(&self, framed: &mut FramesPerConn<ConnId>, out: &mut Vec<Action>) {
        for (origin, frames) in framed.drain() {
            if let Some(c) = self.conns.get(&origin) {
                out.push(Action::SendFramed(c.out.clone(), frames));
            }
        }
    }
}

impl Machine for Core {
    type Event = Event;
    type Action = Action;

    fn on_event(&mut self, ev: Event, now: u64, out: &mut Vec<Action>) {
        match ev {
            Event::Open(id, role, o) => {
                let proxy = role.role_kind() == RoleKind::Proxy;
                self.conns.insert(
                    id,
                    Conn {
                        out: o,
                        groups: Vec::new(),
                        proxy,
                    },
                );
            }
            Event::Close(id) => {
                self.conns.remove(&id);
            }
            Event::Frame(id, body) => {
                if let Body::GetSeq(r) = &body {
                    self.metrics.request(r);
                }
                self.on_frame(id, body, now, out)
            }
            Event::Frames(id, bodies) => {
                for body in bodies {
                    if let Body::GetSeq(r) = &body {
                        self.metrics.request(r);
                    }
                    self.on_frame(id, body, now, out)
                }
            }
            Event::Stop => self.stopped = true,
        }
        self.route(out);
    }

    fn on_time(&mut self, now: u64, out: &mut Vec<Action>) {
        self.metrics.sample(&self.node, now);
        self.metrics
            .inbox
            .set(mason_common::metrics::queued(&self.inbox));
        if self.node.next_deadline().is_some_and(|d| now >= d) {
            self.node.tick(now, &mut self.outs);
            self.route(out);
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.node.next_deadline()
    }

    fn finished(&self) -> bool {
        self.stopped
    }
}

struct Io {
    record: Option<RecordWriter>,
}

impl Executor<Core> for Io {
    fn execute(&mut self, a: Action, _: &mut Vec<Event>) {
        match a {
            Action::SendFramed(out, frames) => {
                let _ = out.send_framed(frames);
            }
            Action::SendBody(out, b) => {
                let _ = out.send_body(b);
            }
            Action::Close(out, why) => {
                conn::log_close(out.peer(), &why);
                out.close();
            }
            Action::Record(g) => {
                if let Some(r) = self.record.as_mut() {
                    if let Err(e) = r.append(&g) {
                        // The record is the verdict's evidence: a run without it is void.
                        tracing::error!(error = %e, "writing the grant record failed; exiting");
                        std::process::exit(1);
                    }
                }
            }
        }
    }
}

struct Conns {
    inbox: mpsc::Sender<Event>,
    max_frame: usize,
    client_max_frame: usize,
}

impl Conns {
    async fn forward(&self, ev: Event) -> Result<(), String> {
        self.inbox
            .send(ev)
            .await
            .map_err(|_| "the sequencer is stopping".to_string())
    }
}

impl Handler for Conns {
    fn admit(&self, role: &Role) -> Result<usize, String> {
        match role.role_kind() {
            RoleKind::Proxy => Ok(self.max_frame),
            RoleKind::Client => Ok(self.client_max_frame),
            // `mason status`: a status request, nothing else.
            RoleKind::Watcher => Ok(4 << 10),
            _ => Err("only proxies, direct clients and watchers talk to a sequencer".into()),
        }
    }

    async fn open(&self, c: &ConnInfo, out: Outbox) {
        let _ = self.forward(Event::Open(c.id, c.role.clone(), out)).await;
    }

    async fn frame(&self, c: &ConnInfo, _: &Outbox, body: Body) -> Result<(), String> {
        allowed(c, &body)?;
        self.forward(Event::Frame(c.id, body)).await
    }

    /// Frames that arrived together go to the sequencer's task in one hand-off.
    async fn frames(&self, c: &ConnInfo, _: &Outbox, mut bodies: Vec<Body>) -> Result<(), String> {
        // The frames before a refused one are taken; the refusal closes the connection.
        let mut refused = Ok(());
        if let Some(i) = bodies.iter().position(|b| allowed(c, b).is_err()) {
            refused = allowed(c, &bodies[i]);
            bodies.truncate(i);
        }
        if !bodies.is_empty() {
            self.forward(Event::Frames(c.id, bodies)).await?;
        }
        refused
    }

    async fn close(&self, c: &ConnInfo) {
        let _ = self.forward(Event::Close(c.id)).await;
    }
}

/// Whether `c` may send `body` here.
fn allowed(c: &ConnInfo, body: &Body) -> Result<(), String> {
    let ok = match (c.role.role_kind(), body) {
        (RoleKind::Client, Body::GetSeq(r)) => r.session != 0 && r.epoch == 0,
        (RoleKind::Proxy, Body::GetSeq(r)) => r.session == 0,
        (
            RoleKind::Proxy,
            Body::SeqHello(_)
            | Body::Heartbeat(_)
            | Body::Takeover(_)
            | Body::Promise(_)
            | Body::FillAck(_),
        ) => true,
        (RoleKind::Watcher, Body::StatusRequest(_)) => true,
        _ => false,
    };
    if !ok {
        return Err(format!("{} may not send a {} here", c.role, body.name()));
    }
    Ok(())
}

/// Serves `node` until `shutdown` resolves; then ends the grant record cleanly.
pub async fn serve(
    listener: Box<dyn Listener>,
    node: SeqNode,
    groups: u32,
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let record = match &cfg.record {
        Some(p) => Some(RecordWriter::open_append::<GrantChunk>(p)?),
        None => None,
    };
    let (tx, mut rx) = driver::inbox(16_384);
    let handler = Arc::new(Conns {
        inbox: tx.clone(),
        max_frame: cfg.max_frame,
        client_max_frame: cfg.client_max_frame,
    });
    let accept = tokio::spawn(conn::serve(listener, cfg.serve.clone(), handler));
    let mut core = Core {
        node,
        groups,
        conns: HashMap::new(),
        outs: Vec::new(),
        stopped: false,
        metrics: crate::metrics::SeqMetrics::new(),
        inbox: tx.downgrade(),
    };
    let mut io = Io { record };
    let stop = async move {
        shutdown.await;
        let _ = tx.send(Event::Stop).await;
        std::future::pending::<std::convert::Infallible>().await
    };
    let driving = async move {
        if cfg.core_thread {
            driver::drive(&mut core, &mut io, &mut rx, Instant::now()).await;
            return Ok(io);
        }
        tokio::spawn(async move {
            driver::drive(&mut core, &mut io, &mut rx, Instant::now()).await;
            io
        })
        .await
        .map_err(|e| anyhow::anyhow!("the sequencer's core stopped: {e}"))
    };
    // `stop` only asks the core to stop: the core ends `driving`.
    let io = tokio::select! {
        io = driving => io,
        never = stop => match never {},
    };
    accept.abort();
    if let Some(r) = io?.record.take() {
        r.finish()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::SeqNodeConfig;
    use bytes::BytesMut;
    use mason_common::codec::FrameCodec;
    use mason_common::conn::{outbox, OutboxRx, Overflow};
    use mason_common::msg::Heartbeat;
    use tokio_util::codec::Encoder;

    /// What `rx` holds, decoded, in order.
    fn frames(rx: &mut OutboxRx) -> Vec<Body> {
        let mut wire = BytesMut::new();
        let mut codec = FrameCodec::new(1 << 20);
        while let Some(o) = rx.try_next() {
            codec.encode(o, &mut wire).unwrap();
        }
        let mut out = Vec::new();
        while let Some(f) = tokio_util::codec::Decoder::decode(&mut codec, &mut wire).unwrap() {
            out.extend(f.body);
        }
        out
    }

    fn hb(group: u32) -> Body {
        Body::Heartbeat(Heartbeat {
            group,
            ..Default::default()
        })
    }

    /// Answers framed per connection keep their order with what else goes to the same
    /// connection (a message to a group it hosts), and go to the connection they are for.
    #[test]
    fn framed_answers_keep_their_order_with_group_messages() {
        let (tx, _rx) = driver::inbox(8);
        let mut core = Core {
            node: SeqNode::new(SeqNodeConfig::default()),
            groups: 4,
            conns: HashMap::new(),
            outs: Vec::new(),
            stopped: false,
            metrics: crate::metrics::SeqMetrics::new(),
            inbox: tx.downgrade(),
        };
        let mut rxs = Vec::new();
        for (id, groups) in [(1, vec![0]), (2, vec![1])] {
            let (out, rx) = outbox(1 << 20, Overflow::Drop, format!("p{id}"));
            core.conns.insert(
                id,
                Conn {
                    out,
                    groups,
                    proxy: true,
                },
            );
            rxs.push(rx);
        }
        core.outs = vec![
            SeqOut::Reply(1, hb(10)),
            SeqOut::Reply(2, hb(20)),
            SeqOut::Reply(1, hb(11)),
            SeqOut::Group(0, hb(12)),
            SeqOut::Reply(1, hb(13)),
            SeqOut::Reply(2, hb(21)),
        ];
        let mut actions = Vec::new();
        core.route(&mut actions);
        let mut io = Io { record: None };
        for a in actions {
            io.execute(a, &mut Vec::new());
        }
        let groups_of = |bodies: Vec<Body>| -> Vec<u32> {
            bodies
                .into_iter()
                .map(|b| match b {
                    Body::Heartbeat(h) => h.group,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(groups_of(frames(&mut rxs[0])), vec![10, 11, 12, 13]);
        assert_eq!(groups_of(frames(&mut rxs[1])), vec![20, 21]);
    }
}
