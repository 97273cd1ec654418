//! The accepted connections' hand-off to the groups: frames that arrive together go to
//! each group as one event, in order, counted against the group's bound until handled.

use super::{Conns, Event, INBOX};
use crate::replica::Incoming;
use mason_common::auth::Role;
use mason_common::conn::{outbox, ConnInfo, Handler, Outbox, OutboxRx, Overflow};
use mason_common::msg::{Body, ClientOp, GetSeq};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};

fn op(group: u32, seq: u64) -> Body {
    Body::ClientOp(ClientOp {
        session: 1,
        client_seq: seq,
        group,
        ..Default::default()
    })
}

/// The sequence numbers of the client ops an event carries, in order.
fn ops(ev: &Event) -> Vec<u64> {
    match ev {
        Event::Client {
            inc: Incoming::Op(o),
            ..
        } => vec![o.client_seq],
        Event::Many(evs, _) => evs.iter().flat_map(ops).collect(),
        _ => vec![],
    }
}

/// Each hosted group's inbox, as the group's task reads it.
type Inboxes = HashMap<u32, mpsc::Receiver<Event>>;

/// A proxy's accepted-connection handler hosting `groups`: with each group's inbox and
/// frame permits.
fn hosting(groups: &[u32]) -> (Conns, Inboxes, HashMap<u32, Arc<Semaphore>>) {
    let mut inboxes = HashMap::new();
    let mut rxs = HashMap::new();
    let mut permits = HashMap::new();
    for &g in groups {
        let (tx, rx) = mpsc::channel(16);
        inboxes.insert(g, tx);
        rxs.insert(g, rx);
        permits.insert(g, Arc::new(Semaphore::new(INBOX)));
    }
    let conns = Conns {
        inboxes: Arc::new(inboxes),
        frame_permits: permits.clone(),
        replica: 0,
        triple: 0,
        replicas: 3,
        max_frame: 1 << 20,
        client_max_frame: 1 << 20,
    };
    (conns, rxs, permits)
}

/// A client's accepted connection, and its outbox (kept open by the receiver returned).
fn client_conn() -> (ConnInfo, Outbox, OutboxRx) {
    let (out, rx) = outbox(1 << 20, Overflow::Disconnect, "client".into());
    let info = ConnInfo {
        id: 7,
        role: Role::client(8),
        peer: "client".into(),
    };
    (info, out, rx)
}

#[tokio::test]
async fn frames_together_reach_each_group_as_one_event_and_stop_at_a_refused_one() {
    let (conns, mut rxs, permits) = hosting(&[0, 1]);
    let (info, out, _rx) = client_conn();
    // A client may not send a sequencer request: that frame closes the connection, and
    // the one after it is not taken.
    let bodies = vec![
        op(0, 1),
        op(1, 1),
        op(0, 2),
        op(0, 3),
        Body::GetSeq(GetSeq::default()),
        op(0, 4),
    ];
    assert!(conns.frames(&info, &out, bodies).await.is_err());

    let rx0 = rxs.get_mut(&0).unwrap();
    let ev = rx0.try_recv().expect("group 0 got its frames");
    assert!(
        matches!(ev, Event::Many(..)),
        "one event for group 0's three frames"
    );
    assert_eq!(ops(&ev), vec![1, 2, 3]);
    assert!(rx0.try_recv().is_err(), "nothing after the refused frame");
    // Its frames count against group 0's bound until it is handled.
    assert_eq!(permits[&0].available_permits(), INBOX - 3);
    drop(ev);
    assert_eq!(permits[&0].available_permits(), INBOX);

    let rx1 = rxs.get_mut(&1).unwrap();
    let ev = rx1.try_recv().expect("group 1 got its frame");
    assert!(
        matches!(ev, Event::Client { .. }),
        "a lone frame goes as itself"
    );
    assert_eq!(ops(&ev), vec![1]);
    assert!(rx1.try_recv().is_err());
}

/// A frame for a group this process does not host is refused where it stands: the frames
/// before it reach their group, and none after it is taken, not even one for a hosted
/// group.
#[tokio::test]
async fn a_frame_for_a_group_not_hosted_here_stops_the_frames_after_it() {
    let (conns, mut rxs, _) = hosting(&[0]);
    let (info, out, _rx) = client_conn();
    let bodies = vec![op(0, 1), op(0, 2), op(9, 1), op(0, 3)];
    assert!(conns.frames(&info, &out, bodies).await.is_err());
    let rx = rxs.get_mut(&0).unwrap();
    let ev = rx
        .try_recv()
        .expect("group 0 got the frames before the refused one");
    assert_eq!(ops(&ev), vec![1, 2]);
    assert!(rx.try_recv().is_err(), "nothing after the refused frame");
}
