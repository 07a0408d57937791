use std::rc::Rc;

use yew::prelude::*;

use super::{CockpitPage, DashboardPage, HudPage};
use crate::env::Mode;
use crate::hooks::{use_feed, AppContext};
use crate::realtime::FeedConfig;
use crate::state::Store;

#[derive(Properties, PartialEq)]
pub struct AppProps {
    pub mode: Mode,
}

/// The root: owns the store, starts the feed, provides the context, picks the page.
#[function_component(App)]
pub fn app(props: &AppProps) -> Html {
    let store = use_reducer(Store::default);
    let config = match &props.mode {
        Mode::Hud { context, backend } => {
            let mut topics = vec![format!("hud:{}/{}", context.username, context.repo)];
            if context.is_owner && !context.embed_mode {
                topics.extend(["alerts".to_string(), "tasks".to_string()]);
            }
            FeedConfig { backend: backend.clone(), ws_url: Some(context.ws_url.clone()), topics }
        }
        Mode::Dashboard { context, backend } => {
            let mut topics = vec![format!("dashboard:{}", context.username)];
            if context.is_owner {
                topics.extend(["repos", "agents", "tasks", "alerts"].map(String::from));
            }
            FeedConfig { backend: backend.clone(), ws_url: Some(context.ws_url.clone()), topics }
        }
        Mode::Cockpit { backend, ws_url } => FeedConfig {
            backend: backend.clone(),
            ws_url: ws_url.clone(),
            topics: ["agents", "repos", "tasks", "alerts"].map(String::from).to_vec(),
        },
    };
    let backend = config.backend.clone();
    let subscribe = use_feed(config, &store);
    let context = AppContext { store, backend, subscribe };
    html! {
        <ContextProvider<AppContext> context={context}>
            { match &props.mode {
                Mode::Hud { context, .. } => html! { <HudPage context={Rc::new(context.clone())} /> },
                Mode::Dashboard { context, .. } => html! { <DashboardPage context={Rc::new(context.clone())} /> },
                Mode::Cockpit { .. } => html! { <CockpitPage /> },
            } }
        </ContextProvider<AppContext>>
    }
}
