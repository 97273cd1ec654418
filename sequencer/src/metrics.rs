//! The sequencer's metrics (`mason sequencer --metrics-listen`): requests and numbers
//! handed out per space, the epoch it serves, its watermarks, and its inbox's depth. The
//! runtime counts requests as they arrive and copies the rest from the node on a timer.

use crate::node::SeqNode;
use mason_common::metrics::{self, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use mason_common::msg::GetSeq;
use mason_common::types::SpaceMask;

pub(crate) struct SeqMetrics {
    requests_vec: IntCounterVec,
    numbers_vec: IntCounterVec,
    watermark_vec: IntGaugeVec,
    /// Per space, made as spaces are first seen (at most 64).
    requests: Vec<IntCounter>,
    numbers: Vec<IntCounter>,
    watermark: Vec<IntGauge>,
    epoch: IntGauge,
    sessions: IntGauge,
    pub(crate) inbox: IntGauge,
    next_sample: u64,
}

impl SeqMetrics {
    pub(crate) fn new() -> SeqMetrics {
        let requests = metrics::counter_vec(
            "mason_sequencer_requests_total",
            "Number requests (GetSeq) received that ask for numbers of this space.",
            &["space"],
        );
        let numbers = metrics::counter_vec(
            "mason_sequencer_numbers_total",
            "Numbers of this space handed out (the next number the space would hand out).",
            &["space"],
        );
        let watermark = metrics::gauge_vec(
            "mason_sequencer_watermark",
            "Garbage-collection watermark per space: every number below is bound for good.",
            &["space"],
        );
        SeqMetrics {
            requests_vec: requests,
            numbers_vec: numbers,
            watermark_vec: watermark,
            requests: Vec::new(),
            numbers: Vec::new(),
            watermark: Vec::new(),
            epoch: metrics::gauge(
                "mason_sequencer_epoch",
                "The epoch this sequencer serves (0: none, a backup).",
            ),
            sessions: metrics::gauge(
                "mason_sequencer_direct_sessions",
                "Direct-baseline client sessions the sequencer remembers.",
            ),
            inbox: metrics::gauge(
                "mason_sequencer_inbox_events",
                "Events waiting in the sequencer's inbox (its queue depth).",
            ),
            next_sample: 0,
        }
    }

    pub(crate) fn request(&mut self, req: &GetSeq) {
        for s in SpaceMask(req.space_mask).iter() {
            let s = s as usize;
            while self.requests.len() <= s {
                let label = self.requests.len().to_string();
                self.requests
                    .push(self.requests_vec.with_label_values(&[&label]));
            }
            self.requests[s].inc();
        }
    }

    /// Copies the node's state, at most every `metrics::SAMPLE_EVERY`.
    pub(crate) fn sample(&mut self, node: &SeqNode, now: u64) {
        if !metrics::due(&mut self.next_sample, now) {
            return;
        }
        self.epoch
            .set(i64::try_from(node.active_epoch().unwrap_or(0)).unwrap_or(i64::MAX));
        let Some(seq) = node.sequencer() else {
            return;
        };
        self.sessions
            .set(i64::try_from(seq.sessions()).unwrap_or(i64::MAX));
        while self.numbers.len() < seq.counters().len() {
            let label = self.numbers.len().to_string();
            self.numbers
                .push(self.numbers_vec.with_label_values(&[&label]));
            self.watermark
                .push(self.watermark_vec.with_label_values(&[&label]));
        }
        for (c, n) in self.numbers.iter().zip(seq.counters()) {
            metrics::advance(c, *n);
        }
        for (g, w) in self.watermark.iter().zip(seq.watermarks()) {
            g.set(i64::try_from(*w).unwrap_or(i64::MAX));
        }
    }
}
