//! Temporary stand-in for `redact::StreamRedactor` (per-event redaction, never holds).
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightdeck_protocol::{SeqEvent, TaskEvent};

use crate::redact::Redactor;

pub struct StreamRedactor {
    redactor: Arc<Redactor>,
}

impl StreamRedactor {
    pub fn new(redactor: Arc<Redactor>, _hold: Duration) -> Self {
        StreamRedactor { redactor }
    }
    pub fn push(&mut self, seq: u64, event: TaskEvent, _now: Instant) -> Vec<SeqEvent> {
        vec![SeqEvent { seq, event: self.redactor.redact_event(&event) }]
    }
    pub fn deadline(&self) -> Option<Instant> {
        None
    }
    pub fn flush_due(&mut self, _now: Instant) -> Vec<SeqEvent> {
        Vec::new()
    }
    pub fn finish(&mut self) -> Vec<SeqEvent> {
        Vec::new()
    }
}

/// Temporary: `Redactor::redact_alert` until the streaming redactor lands.
pub trait RedactAlert {
    fn redact_alert(&self, alert: &flightdeck_protocol::Alert) -> flightdeck_protocol::Alert;
}

impl RedactAlert for Redactor {
    fn redact_alert(&self, alert: &flightdeck_protocol::Alert) -> flightdeck_protocol::Alert {
        let mut alert = alert.clone();
        alert.message = self.redact(&alert.message).into_owned();
        alert
    }
}
