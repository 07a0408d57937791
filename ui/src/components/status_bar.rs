use flightdeck_protocol::TaskStatus;
use yew::prelude::*;

use super::{format_count, ConnectionIndicator};
use crate::connection::Connection;
use crate::transcript::Usage;

#[derive(Properties, PartialEq)]
pub struct StatusBarProps {
    pub status: Option<TaskStatus>,
    pub usage: Option<Usage>,
    /// The cost of the shown turns, when it is known (see [`super::known_cost`]).
    #[prop_or_default]
    pub cost: Option<AttrValue>,
    pub events: usize,
    /// Shown here when the page has no header (embed mode).
    #[prop_or_default]
    pub connection: Option<Connection>,
}

/// Task status, token usage and cost, in a bar of fixed height (nothing moves as numbers change).
#[function_component(StatusBar)]
pub fn status_bar(props: &StatusBarProps) -> Html {
    let status = props.status.map_or("idle", TaskStatus::as_str);
    html! {
        <footer class="statusbar" aria-label="Task status">
            <span class={classes!("badge", format!("st-{status}"))} data-testid="task-status">{ status }</span>
            if let Some(u) = props.usage {
                <span class="usage" data-testid="usage">
                    { format!("{} in · {} out", format_count(u.input_tokens), format_count(u.output_tokens)) }
                </span>
                if let Some(cost) = &props.cost {
                    <span class="cost" data-testid="cost">{ cost }</span>
                }
            }
            <span class="events">{ format!("{} events", props.events) }</span>
            if let Some(c) = props.connection {
                <ConnectionIndicator connection={c} />
            }
        </footer>
    }
}
