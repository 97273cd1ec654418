//! Unit tests of the ZooKeeper workload's parts that need no group.

use super::*;

#[test]
fn workloads_parse() {
    assert_eq!("setdata".parse(), Ok(ZkWorkload::SetData));
    assert_eq!("getdata".parse(), Ok(ZkWorkload::GetData));
    assert_eq!("mixed".parse(), Ok(ZkWorkload::Mixed));
    assert!("SetData".parse::<ZkWorkload>().is_err());
    assert!("".parse::<ZkWorkload>().is_err());
}

#[test]
fn paths_are_two_levels_over_sixteen_parents() {
    assert_eq!(node_path(0), "/z0/n0");
    assert_eq!(node_path(17), "/z1/n17");
    assert_eq!(parent_path(17), "/z1");
    assert_eq!(mason_zk::path::parent(&node_path(35)), Some("/z3"));
}

#[test]
fn the_mix_follows_the_write_percentage() {
    let mut z = ZkLoad {
        workload: ZkWorkload::Mixed,
        write_percent: 0,
        znodes: 0,
        session_timeout_ms: 10_000,
        history_file: None,
        shards: 0,
        local_reads: false,
    };
    let mut rng = StdRng::seed_from_u64(1);
    assert!((0..1000).all(|_| !z.pick_write(&mut rng)));
    z.write_percent = 100;
    assert!((0..1000).all(|_| z.pick_write(&mut rng)));
    z.write_percent = 30;
    let w = (0..10_000).filter(|_| z.pick_write(&mut rng)).count();
    assert!((2500..3500).contains(&w), "{w}");
    z.workload = ZkWorkload::GetData;
    assert!(!z.pick_write(&mut rng));
    z.workload = ZkWorkload::SetData;
    assert!(z.pick_write(&mut rng));
    assert_eq!(z.znodes(), 1);
}

#[test]
fn history_spills_full_chunks_and_keeps_them_without_a_file() {
    let mut h = History::new(7, None);
    let stat = Stat {
        czxid: 5,
        version: 2,
        ..Stat::default()
    };
    for i in 0..HISTORY_CHUNK + 3 {
        h.op("/z0/n0", &stat, i % 2 == 0, i as u64, i as u64 + 1);
    }
    assert_eq!(h.done.len(), 1);
    assert_eq!(h.done[0].paths.len(), HISTORY_CHUNK);
    assert_eq!(h.done[0].client, 7);
    assert_eq!(h.chunk.paths.len(), 3);
    assert_eq!(h.chunk.client, 7);
    h.chunk.closed_sessions.push(9);
    h.spill();
    assert_eq!(h.done.len(), 2);
    assert_eq!(h.done[1].closed_sessions, vec![9]);
    // An empty chunk is not written.
    h.spill();
    assert_eq!(h.done.len(), 2);
}

#[test]
fn history_streams_to_a_file_that_ends_cleanly() {
    let dir = std::env::temp_dir().join(format!("zk-history-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("h.bin");
    let _ = std::fs::remove_file(&file);
    let sink = Arc::new(Mutex::new(
        RecordWriter::open_append::<ZkHistoryChunk>(&file).unwrap(),
    ));
    let mut h = History::new(3, Some(sink.clone()));
    h.op("/z1/n1", &Stat::default(), true, 1, 2);
    h.chunk.created.push("/z1/n1".into());
    h.spill();
    assert!(h.done.is_empty() && h.error.is_none());
    drop(h);
    let w = Arc::try_unwrap(sink).ok().unwrap().into_inner().unwrap();
    w.finish().unwrap();
    let r = mason_common::record::read_records::<ZkHistoryChunk>(&file).unwrap();
    assert!(r.ended && !r.torn);
    assert_eq!(r.records.len(), 1);
    assert_eq!(r.records[0].created, vec!["/z1/n1".to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
}
