//! flightdeck-relay: the relay server.
