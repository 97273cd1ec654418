//! The shared writer's reports: a group whose inbox is full neither holds up the others'
//! reports nor misses its own (it hears the latest, once it has room).

use super::*;
use std::time::Duration;

fn append(number: u64, index: u64) -> Job {
    Job::Append {
        number,
        hard_state: None,
        entries: vec![Entry {
            index,
            term: 1,
            ..Default::default()
        }],
        must_sync: true,
    }
}

/// The next `Persisted` number in `inbox`, waiting at most 5 s.
fn persisted(inbox: &mut mpsc::Receiver<Event>) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match inbox.try_recv() {
            Ok(Event::Persisted(n)) => return Some(n),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    None
}

#[test]
fn a_full_inbox_holds_up_no_other_group() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), true, &[0, 1], vec![1, 2, 3]).unwrap();
    let (slow_tx, mut slow) = mpsc::channel(1);
    let (fast_tx, mut fast) = mpsc::channel(64);
    // The slow group's inbox is full.
    slow_tx.try_send(Event::Persisted(0)).unwrap();
    let groups: Groups = [
        (0, (slow_tx, GroupMetrics::new(0))),
        (1, (fast_tx, GroupMetrics::new(1))),
    ]
    .into_iter()
    .collect();
    let mut writer = WalWriter::spawn(
        wal,
        true,
        Duration::from_micros(200),
        WalMetrics::new(),
        groups,
    )
    .unwrap();
    let (g0, g1) = (writer.handle(0), writer.handle(1));
    for n in 1..=3 {
        g0.send(append(n, n));
        g1.send(append(n, n));
        assert_eq!(persisted(&mut fast), Some(n), "group 1's report {n}");
    }
    // Once the slow group makes room, it hears the latest of its writes made durable.
    assert_eq!(persisted(&mut slow), Some(0));
    assert_eq!(persisted(&mut slow), Some(3));
    g0.send(append(4, 4));
    assert_eq!(persisted(&mut slow), Some(4));
    drop((g0, g1));
    writer.finish();
}
