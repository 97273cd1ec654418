//! Benchmarks that sit beside the launcher: the peers comparison (ZooKeeper and etcd
//! allocating sequence numbers, beside Mason and the direct baseline).

pub mod peers;
