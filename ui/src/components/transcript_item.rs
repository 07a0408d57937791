use flightdeck_protocol::event::ChunkStream;
use flightdeck_protocol::TaskStatus;
use yew::prelude::*;

use super::{ChangesPanel, PermissionCard, Shared, ToolCard};
use crate::ansi;
use crate::markdown::{blocks, Block};
use crate::transcript::Item;

#[derive(Properties, PartialEq)]
pub struct TranscriptItemProps {
    pub item: Shared<Item>,
    /// The task (turn) the item belongs to, and its status: a permission card needs both.
    #[prop_or_default]
    pub task_id: AttrValue,
    #[prop_or_default]
    pub task_status: Option<TaskStatus>,
    /// The owner: permission cards offer their buttons.
    #[prop_or_default]
    pub can_decide: bool,
}

/// One transcript item. Its props compare by identity, so only items the last batch of events
/// touched re-render.
#[function_component(TranscriptItem)]
pub fn transcript_item(props: &TranscriptItemProps) -> Html {
    match &*props.item.0 {
        Item::Message { stream: ChunkStream::Assistant, text } => html! {
            <div class="msg assistant">
                { for blocks(text).into_iter().map(|b| match b {
                    Block::Text(t) => html! { <div class="prose">{ t }</div> },
                    Block::Code { lang, code } => html! {
                        <pre class="code" data-lang={lang.to_string()}><code>{ code }</code></pre>
                    },
                }) }
            </div>
        },
        Item::Message { stream, text } => {
            let (class, label) = match stream {
                ChunkStream::Stderr => ("term stderr", "stderr"),
                ChunkStream::Thinking => ("term thinking", "thinking"),
                _ => ("term stdout", "stdout"),
            };
            // Off-screen blocks are neither laid out nor painted (`content-visibility: auto` in
            // style.css); until it has been, a block counts as tall as its lines, so the scroll
            // height is right before the browser has looked at it.
            let lines = text.matches('\n').count().max(1);
            let size = format!("contain-intrinsic-block-size: auto calc({lines}lh + 1rem)");
            // Colours of the terminal as styled spans; other escape sequences removed.
            html! {
                <pre class={class} aria-label={label} style={size}>
                    { for ansi::parse(text).into_iter().map(|(style, run)| {
                        if style == ansi::Style::default() {
                            html! { { run } }
                        } else {
                            html! { <span class={style.classes()}>{ run }</span> }
                        }
                    }) }
                </pre>
            }
        }
        Item::Tool(_) => html! { <ToolCard item={props.item.clone()} /> },
        Item::Status { status, model } => html! {
            <div class="status-line">
                <span class={classes!("badge", format!("st-{}", status.as_str()))}>{ status.as_str() }</span>
                if let Some(m) = model { <span class="model">{ m }</span> }
            </div>
        },
        Item::Done { summary } => html! {
            <div class="task-done" data-testid="done">
                <strong>{ "Completed" }</strong>
                if let Some(summary) = summary { { ": " }{ summary } }
            </div>
        },
        Item::Changes { .. } => html! { <ChangesPanel item={props.item.clone()} /> },
        Item::Error { error } => html! {
            <div class="task-error" role="alert"><strong>{ "Error: " }</strong>{ ansi::strip(error) }</div>
        },
        Item::UserMessage { text } => html! {
            <div class="msg user" data-testid="user-message">
                <div class="who">{ "You" }</div>
                <div class="prose">{ text }</div>
            </div>
        },
        Item::Runner { failed, message } => html! {
            <div class={classes!("runner-step", failed.then_some("failed"))} data-testid="runner-step">
                <span aria-hidden="true">{ "▣ " }</span>{ "container: " }{ message }
            </div>
        },
        Item::Permission(_) => html! {
            <PermissionCard item={props.item.clone()} task_id={props.task_id.clone()}
                            task_status={props.task_status} can_decide={props.can_decide} />
        },
    }
}
