//! Connection state of seed 001: the socket and the REST API, and the reconnect backoff.
//! Pure, so the rules are tested on the host.

/// What the connection indicator shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indicator {
    /// Socket open and API reachable (green).
    Connected,
    /// One of the two (yellow).
    Partial,
    /// Neither (red).
    Disconnected,
}

impl Indicator {
    /// The `data-state` attribute tests read.
    pub fn as_str(self) -> &'static str {
        match self {
            Indicator::Connected => "connected",
            Indicator::Partial => "partial",
            Indicator::Disconnected => "disconnected",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Indicator::Connected => "Connected",
            Indicator::Partial => "Partial",
            Indicator::Disconnected => "Disconnected",
        }
    }
}

/// The two halves of being connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connection {
    pub socket_open: bool,
    pub api_reachable: bool,
}

impl Connection {
    pub fn indicator(self) -> Indicator {
        match (self.socket_open, self.api_reachable) {
            (true, true) => Indicator::Connected,
            (false, false) => Indicator::Disconnected,
            _ => Indicator::Partial,
        }
    }
}

/// Reconnect delays: 1, 2, 4, 8 ... seconds, capped at 30, back to 1 once a socket opens.
#[derive(Debug, Clone)]
pub struct Backoff {
    next_ms: u32,
}

impl Backoff {
    pub const FIRST_MS: u32 = 1_000;
    pub const CAP_MS: u32 = 30_000;

    pub fn new() -> Backoff {
        Backoff { next_ms: Backoff::FIRST_MS }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay_ms(&mut self) -> u32 {
        let delay = self.next_ms;
        self.next_ms = (self.next_ms.saturating_mul(2)).min(Backoff::CAP_MS);
        delay
    }

    /// Called when a socket opens.
    pub fn reset(&mut self) {
        self.next_ms = Backoff::FIRST_MS;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicator_table() {
        let cases = [
            (true, true, Indicator::Connected),
            (true, false, Indicator::Partial),
            (false, true, Indicator::Partial),
            (false, false, Indicator::Disconnected),
        ];
        for (socket_open, api_reachable, want) in cases {
            assert_eq!(Connection { socket_open, api_reachable }.indicator(), want);
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u32> = (0..8).map(|_| b.next_delay_ms()).collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        b.reset();
        assert_eq!(b.next_delay_ms(), 1_000);
    }
}
