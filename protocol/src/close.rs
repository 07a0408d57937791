//! WebSocket close codes used by Flightdeck (SPEC section 3).

/// Normal closure; also used when a connection goes stale (no pong).
pub const NORMAL: u16 = 1000;
/// The server or client is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// A WebSocket protocol error (RFC 6455): reserved bits, unknown opcodes, an unmasked client
/// frame, a bad control frame, a stray continuation.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text frame that is not valid UTF-8 (RFC 6455).
pub const INVALID_DATA: u16 = 1007;
/// Policy violation: failed auth, too many invalid frames.
pub const POLICY: u16 = 1008;
/// A frame larger than the configured limit.
pub const TOO_BIG: u16 = 1009;
/// An internal error.
pub const INTERNAL: u16 = 1011;
/// The relay lost events meant for this socket (its node's broker link overflowed): reconnect
/// for fresh state.
pub const SERVICE_RESTART: u16 = 1012;
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
        PROTOCOL_ERROR => "protocol error",
        INVALID_DATA => "invalid utf-8",
        POLICY => "policy violation",
        TOO_BIG => "message too big",
        INTERNAL => "internal error",
        SERVICE_RESTART => "reconnect for fresh state",
        REPLACED => "replaced",
        TOO_SLOW => "too slow",
        KEY_REVOKED => "key revoked",
        _ => "",
    }
}
