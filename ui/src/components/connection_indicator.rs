use yew::prelude::*;

use crate::connection::Connection;

#[derive(Properties, PartialEq)]
pub struct ConnectionIndicatorProps {
    pub connection: Connection,
}

/// Seed 001's dot: green Connected, yellow Partial, red Disconnected. `data-state` is for tests.
#[function_component(ConnectionIndicator)]
pub fn connection_indicator(props: &ConnectionIndicatorProps) -> Html {
    let indicator = props.connection.indicator();
    let title = format!(
        "Live updates: {}; API: {}",
        if props.connection.socket_open { "connected" } else { "down" },
        if props.connection.api_reachable { "reachable" } else { "unreachable" }
    );
    html! {
        <div id="connection-indicator" class={classes!("conn", indicator.as_str())} data-state={indicator.as_str()}
             role="status" aria-live="polite" title={title}>
            <span class="dot" aria-hidden="true"></span>
            <span class="conn-label">{ indicator.label() }</span>
        </div>
    }
}
