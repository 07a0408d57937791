use std::rc::Rc;

use flightdeck_protocol::Alert;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct AlertListProps {
    pub alerts: Rc<Vec<Alert>>,
    pub on_ack: Callback<String>,
}

/// Unacknowledged alerts, each with an Acknowledge button.
#[function_component(AlertList)]
pub fn alert_list(props: &AlertListProps) -> Html {
    html! {
        <section class="panel alerts" aria-label="Alerts">
            <h3>{ "Alerts" }</h3>
            if props.alerts.is_empty() {
                <p class="muted">{ "Nothing needs attention." }</p>
            }
            <ul>
                { for props.alerts.iter().map(|a| {
                    let id = a.id.clone();
                    let on_ack = props.on_ack.clone();
                    html! {
                        <li key={a.id.clone()} class={classes!("alert", a.severity.as_str())} data-alert-id={a.id.clone()}>
                            <span class={classes!("badge", format!("sev-{}", a.severity.as_str()))}>{ a.severity.as_str() }</span>
                            <span class="alert-msg">{ &a.message }</span>
                            <button type="button" class="small" aria-label={format!("Acknowledge: {}", a.message)}
                                    onclick={Callback::from(move |_: MouseEvent| on_ack.emit(id.clone()))}>
                                { "Acknowledge" }
                            </button>
                        </li>
                    }
                }) }
            </ul>
        </section>
    }
}
