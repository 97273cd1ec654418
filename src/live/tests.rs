//! The live figures: parsing what a client's endpoint serves, Prometheus' quantile
//! interpolation, and windows between two scrapes (summed clients, a restarted client,
//! an empty window, a failed scrape).

use super::*;

const INF: f64 = f64::INFINITY;

fn scrape(answered: f64, buckets: &[(f64, f64)]) -> Option<Scrape> {
    Some(Scrape {
        answered,
        buckets: buckets.to_vec(),
    })
}

#[test]
fn parse_reads_what_a_client_endpoint_serves() {
    use mason_common::metrics;
    let ops = metrics::counter_vec(OPS, "answered and failed ops", &["result"]);
    ops.with_label_values(&["answered"]).inc_by(7);
    ops.with_label_values(&["failed"]).inc_by(2);
    let lat = metrics::histogram(
        "mason_client_op_latency_seconds",
        "latency",
        metrics::LATENCY_BUCKETS,
    );
    for v in [0.0003, 0.0003, 0.0003, 0.02] {
        lat.observe(v);
    }
    let rt = crate::runtime(1, true).unwrap();
    let addr = rt
        .block_on(metrics::start("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let body = rt.block_on(async move { tokio::task::spawn_blocking(move || fetch(addr)).await });
    let s = parse(&body.unwrap().unwrap()).expect("the counter is there");
    assert_eq!(s.answered, 7.0, "the answered series only");
    assert_eq!(s.buckets.len(), metrics::LATENCY_BUCKETS.len() + 1);
    assert_eq!(s.buckets.last(), Some(&(INF, 4.0)));
    let at = |le: f64| s.buckets.iter().find(|b| b.0 == le).map(|b| b.1);
    assert_eq!(at(0.000_25), Some(0.0));
    assert_eq!(at(0.000_5), Some(3.0));
    assert_eq!(at(0.025), Some(4.0));
    assert!(parse("# nothing here\nother_metric 3\n").is_none());
}

#[test]
fn quantile_interpolates_within_the_bucket() {
    let h = [(0.1, 10.0), (0.2, 20.0), (INF, 20.0)];
    assert_eq!(quantile(0.5, &h), Some(0.1));
    let q = quantile(0.75, &h).unwrap();
    assert!((q - 0.15).abs() < 1e-12, "{q}");
    // From 0 within the first bucket.
    let q = quantile(0.25, &h).unwrap();
    assert!((q - 0.05).abs() < 1e-12, "{q}");
    // A rank in +Inf gives the highest finite bound.
    assert_eq!(
        quantile(0.99, &[(0.1, 1.0), (0.2, 1.0), (INF, 100.0)]),
        Some(0.2)
    );
    assert_eq!(quantile(0.99, &[(0.1, 0.0), (INF, 0.0)]), None);
    assert_eq!(quantile(0.99, &[]), None);
}

#[test]
fn a_window_sums_the_clients_increases() {
    let prev = [
        scrape(100.0, &[(0.001, 50.0), (0.01, 100.0), (INF, 100.0)]),
        scrape(40.0, &[(0.001, 40.0), (0.01, 40.0), (INF, 40.0)]),
    ];
    let cur = [
        // 100 more ops, 98 under 1 ms, 2 under 10 ms.
        scrape(200.0, &[(0.001, 148.0), (0.01, 200.0), (INF, 200.0)]),
        // 100 more, all under 1 ms.
        scrape(140.0, &[(0.001, 140.0), (0.01, 140.0), (INF, 140.0)]),
    ];
    let w = window(&prev, &cur, 0.5);
    assert_eq!(w.ops_per_s, 400.0);
    assert_eq!(w.clients, 2);
    // Rank 198 of 200: 198 within the first bucket, so 1 ms at most, interpolated.
    let p = w.p99.unwrap();
    assert!((p - 0.001).abs() < 1e-12, "{p}");
    // With the slow ops counted once, not their cumulative totals.
    let w = window(&prev[..1], &cur[..1], 1.0);
    assert_eq!(w.ops_per_s, 100.0);
    let p = w.p99.unwrap();
    // Rank 99 of 100: in (1 ms, 10 ms], 1 of the 2 there.
    assert!((p - 0.0055).abs() < 1e-12, "{p}");
}

#[test]
fn a_restarted_client_counts_from_its_restart() {
    let prev = [scrape(
        10_000.0,
        &[(0.001, 10_000.0), (0.01, 10_000.0), (INF, 10_000.0)],
    )];
    // It restarted: 30 ops since, 3 of them slow.
    let cur = [scrape(30.0, &[(0.001, 27.0), (0.01, 30.0), (INF, 30.0)])];
    let w = window(&prev, &cur, 1.0);
    assert_eq!(w.ops_per_s, 30.0);
    let p = w.p99.unwrap();
    assert!(p > 0.001 && p <= 0.01, "{p}");
}

#[test]
fn an_empty_window_and_failed_scrapes() {
    let s = scrape(5.0, &[(0.001, 5.0), (INF, 5.0)]);
    let w = window(std::slice::from_ref(&s), std::slice::from_ref(&s), 1.0);
    assert_eq!((w.ops_per_s, w.p99, w.clients), (0.0, None, 1));
    assert_eq!(w.text(), "0 ops/s, p99 -");
    // A client whose scrape failed at either end is left out.
    let w = window(&[None, s.clone()], &[s.clone(), None], 1.0);
    assert_eq!(w.clients, 0);
    assert_eq!(w.text(), "no client metrics yet");
}

#[test]
fn a_process_metrics_address_from_its_arguments() {
    let v: Vec<String> = [
        "client",
        "--metrics-listen",
        "127.0.0.1:9000",
        "--index",
        "1",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(metrics_of(&v), "127.0.0.1:9000".parse().ok());
    assert_eq!(metrics_of(&v[..2]), None, "a flag without its value");
    assert_eq!(metrics_of(&["client".to_string()]), None);
}
