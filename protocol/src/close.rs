//! WebSocket close codes used by Flightdeck (SPEC section 3).

/// Normal closure; also used when a connection goes stale (no pong).
pub const NORMAL: u16 = 1000;
/// The server or client is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// Policy violation: failed auth, too many invalid frames.
pub const POLICY: u16 = 1008;
/// A frame larger than the configured limit.
pub const TOO_BIG: u16 = 1009;
/// An internal error.
pub const INTERNAL: u16 = 1011;
/// A newer connection with the same `agentId` replaced this one.
pub const REPLACED: u16 = 4000;
/// The viewer could not keep up; its outbound queue overflowed.
pub const TOO_SLOW: u16 = 4001;
/// The key this socket authenticated with was revoked.
pub const KEY_REVOKED: u16 = 4401;

/// The reason string sent with each code.
pub fn reason(code: u16) -> &'static str {
    match code {
        NORMAL => "normal",
        GOING_AWAY => "going away",
        POLICY => "policy violation",
        TOO_BIG => "message too big",
        INTERNAL => "internal error",
        REPLACED => "replaced",
        TOO_SLOW => "too slow",
        KEY_REVOKED => "key revoked",
        _ => "",
    }
}
