//! flightdeck-ui: the yew app.
