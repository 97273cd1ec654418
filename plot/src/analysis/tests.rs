//! Tests of the recovery analysis on synthetic records with known answers.

use super::*;

/// A record of one space sampled every 10 ms over `[0, end]`, prefix `f(t)`.
fn one_space(end: u64, f: impl Fn(u64) -> u64, kills: &[(u64, &str)]) -> Record {
    let samples = (0..=end / 10).map(|i| (i * 10, vec![f(i * 10)])).collect();
    Record {
        spaces: 1,
        samples,
        kills: kills.iter().map(|(t, w)| (*t, w.to_string())).collect(),
    }
}

fn gap(space: usize, start_ms: u64, end_ms: u64) -> Gap {
    Gap {
        space,
        start_ms,
        end_ms,
    }
}

#[test]
fn steady_line_has_no_gap_and_recovers_at_once() {
    let r = one_space(3000, |t| t, &[(2000, "follower")]);
    assert!(gaps(&r, MIN_GAP_MS).is_empty());
    let recs = recovery(&r);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].what, "follower");
    assert_eq!(recs[0].at_ms, 2000);
    assert_eq!(recs[0].pre_rate, 1000.0);
    assert_eq!(recs[0].first_new_ms, Some(0));
    assert_eq!(recs[0].back_to_90_ms, Some(0));
}

#[test]
fn pre_rate_uses_the_start_when_the_kill_is_early() {
    let r = one_space(2000, |t| 2 * t, &[(500, "leader")]);
    assert_eq!(recovery(&r)[0].pre_rate, 2000.0);
}

/// Two spaces at 1 number/ms each; the leader dies at 5000, the prefix still grows until
/// 5030 (commits in flight), stalls, and resumes at 5900 with the backlog filled in.
fn stall_after_kill() -> Record {
    let f = |t: u64| if (5030..5900).contains(&t) { 5030 } else { t };
    let samples = (0..=1000)
        .map(|i| (i * 10, vec![f(i * 10), f(i * 10)]))
        .collect();
    Record {
        spaces: 2,
        samples,
        kills: vec![(5000, "leader".to_string())],
    }
}

#[test]
fn stall_after_kill_measures_outage_and_gaps() {
    let r = stall_after_kill();
    assert_eq!(
        gaps(&r, MIN_GAP_MS),
        vec![gap(0, 5030, 5900), gap(1, 5030, 5900)]
    );
    assert_eq!(gaps(&r, MIN_GAP_MS)[0].duration_ms(), 870);
    let recs = recovery(&r);
    assert_eq!(recs[0].pre_rate, 2000.0);
    assert_eq!(recs[0].first_new_ms, Some(900));
    assert_eq!(recs[0].back_to_90_ms, Some(900));
    assert_eq!(
        summary_lines(&recs),
        vec![
            "recovery: leader killed at 5000ms: first new number after 900 ms, \
             back to 90% of 2000 numbers/s after 900 ms"
        ]
    );
}

#[test]
fn recovery_at_a_lower_rate_then_back() {
    // 1/ms until the kill at 3000, stalled until 3400, 0.4/ms until 4000, then 1/ms.
    let f = |t: u64| match t {
        0..=3000 => t,
        3001..=3399 => 3000,
        3400..=4000 => 3004 + (t - 3400) * 2 / 5,
        _ => 3244 + (t - 4000),
    };
    let r = one_space(6000, f, &[(3000, "sequencer")]);
    assert_eq!(gaps(&r, MIN_GAP_MS), vec![gap(0, 3000, 3400)]);
    let recs = recovery(&r);
    assert_eq!(recs[0].pre_rate, 1000.0);
    // The stall is in progress at the kill (the last advance was seen at 3000 itself).
    assert_eq!(recs[0].first_new_ms, Some(400));
    // Window [3400, 3500] gains 40 (400/s); [3980, 4080] gains 88 (880/s); [3990, 4090]
    // gains 94 (940/s >= 900/s).
    assert_eq!(recs[0].back_to_90_ms, Some(990));
}

#[test]
fn slowdown_without_stall_never_gets_back() {
    let f = |t: u64| if t <= 1000 { t } else { 1000 + (t - 1000) / 2 };
    let r = one_space(3000, f, &[(1000, "proxy")]);
    assert!(gaps(&r, MIN_GAP_MS).is_empty());
    let recs = recovery(&r);
    assert_eq!(recs[0].first_new_ms, Some(0));
    assert_eq!(recs[0].back_to_90_ms, None);
    assert_eq!(
        summary_lines(&recs)[0],
        "recovery: proxy killed at 1000ms: first new number after 0 ms, \
         back to 90% of 1000 numbers/s never"
    );
}

#[test]
fn missing_rows_are_measured_by_their_times() {
    // No rows in (2000, 2060) and in (3100, 3200); the prefix is flat over [3000, 3300].
    let mut r = one_space(
        4000,
        |t| if (3000..3300).contains(&t) { 3000 } else { t },
        &[],
    );
    r.samples
        .retain(|(t, _)| !(2001..2060).contains(t) && !(3101..3200).contains(t));
    r.kills = vec![(2030, "leader".to_string())];
    // The 60 ms hole between rows is not a stall: the prefix grew across it.
    assert_eq!(gaps(&r, MIN_GAP_MS), vec![gap(0, 3000, 3300)]);
    let recs = recovery(&r);
    // Samples 1030 and 2000: 970 numbers over 970 ms.
    assert_eq!(recs[0].pre_rate, 1000.0);
    assert_eq!(recs[0].first_new_ms, Some(0));
    // The first sample at or after the kill is 2060.
    assert_eq!(recs[0].back_to_90_ms, Some(30));
}

#[test]
fn stall_until_the_end_never_recovers() {
    let r = one_space(2000, |t| t.min(1200), &[(1190, "sequencer")]);
    assert_eq!(gaps(&r, MIN_GAP_MS), vec![gap(0, 1200, 2000)]);
    let recs = recovery(&r);
    assert_eq!(recs[0].first_new_ms, None);
    assert_eq!(recs[0].back_to_90_ms, None);
    assert_eq!(
        summary_lines(&recs)[0],
        "recovery: sequencer killed at 1190ms: first new number never, \
         back to 90% of 1000 numbers/s never"
    );
}

#[test]
fn a_late_unrelated_stall_is_not_blamed_on_the_kill() {
    let f = |t: u64| if (2000..2100).contains(&t) { 2000 } else { t };
    let r = one_space(3000, f, &[(1000, "follower")]);
    assert_eq!(gaps(&r, MIN_GAP_MS), vec![gap(0, 2000, 2100)]);
    assert_eq!(recovery(&r)[0].first_new_ms, Some(0));
}

#[test]
fn the_longest_stall_near_the_kill_is_the_outage() {
    // A 30 ms hiccup right after the kill, progress, then the 500 ms outage.
    let f = |t: u64| match t {
        1010..=1039 => 1010,
        1100..=1599 => 1100,
        _ => t,
    };
    let r = one_space(3000, f, &[(1000, "leader")]);
    assert_eq!(
        gaps(&r, MIN_GAP_MS),
        vec![gap(0, 1010, 1040), gap(0, 1100, 1600)]
    );
    let recs = recovery(&r);
    assert_eq!(recs[0].first_new_ms, Some(600));
    assert_eq!(recs[0].back_to_90_ms, Some(600));
}

#[test]
fn back_to_90_stops_at_the_next_kill() {
    // Half rate after the first kill; full rate again only after the second, so the
    // window [1490, 1590] (950/s) straddling it does not count for the first.
    let f = |t: u64| match t {
        0..=1000 => t,
        1001..=1500 => 1000 + (t - 1000) / 2,
        _ => 1250 + (t - 1500),
    };
    let r = one_space(3000, f, &[(1000, "proxy"), (1500, "sequencer")]);
    let recs = recovery(&r);
    assert_eq!(recs[0].back_to_90_ms, None);
    assert_eq!(recs[1].pre_rate, 750.0);
    assert_eq!(recs[1].first_new_ms, Some(0));
    assert_eq!(recs[1].back_to_90_ms, Some(0));
}

#[test]
fn min_ms_filters_gaps() {
    // One flat sample interval: 20 ms from the first equal sample to the advance.
    let r = one_space(1000, |t| if t == 510 { 500 } else { t }, &[]);
    assert_eq!(gaps(&r, 20), vec![gap(0, 500, 520)]);
    assert!(gaps(&r, 21).is_empty());
}

#[test]
fn kill_without_samples_around_it() {
    let empty = Record {
        spaces: 1,
        samples: vec![],
        kills: vec![(10, "leader".to_string())],
    };
    let recs = recovery(&empty);
    assert_eq!(recs[0].pre_rate, 0.0);
    assert_eq!(recs[0].first_new_ms, None);
    assert_eq!(recs[0].back_to_90_ms, None);
    // A kill after the last sample: nothing is known in its windows.
    let r = one_space(1000, |t| t, &[(5000, "leader")]);
    assert_eq!(recovery(&r)[0].pre_rate, 0.0);
    assert_eq!(recovery(&r)[0].first_new_ms, None);
    assert_eq!(recovery(&r)[0].back_to_90_ms, None);
}

#[test]
fn summary_rounds_the_rate() {
    let recs = [KillRecovery {
        what: "leader".to_string(),
        at_ms: 42,
        pre_rate: 1999.6,
        first_new_ms: Some(7),
        back_to_90_ms: Some(123),
    }];
    assert_eq!(
        summary_lines(&recs),
        vec![
            "recovery: leader killed at 42ms: first new number after 7 ms, \
             back to 90% of 2000 numbers/s after 123 ms"
        ]
    );
}
