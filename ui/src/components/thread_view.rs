use std::rc::Rc;

use flightdeck_protocol::Task;
use yew::prelude::*;

use super::{Shared, StatusBar, TranscriptItem};
use crate::connection::Connection;
use crate::transcript::Transcript;

/// Items rendered at first; older ones come back a page at a time. Consecutive chunks are
/// already one item each, so this bounds the DOM for very long transcripts.
const PAGE: usize = 300;

#[derive(Properties, PartialEq)]
pub struct ThreadViewProps {
    pub task: Option<Task>,
    pub transcript: Option<Shared<Transcript>>,
    /// Shown in the status bar when the page has no header (embed mode).
    #[prop_or_default]
    pub connection: Option<Connection>,
    #[prop_or_default]
    pub empty_text: Option<AttrValue>,
    /// Offered while the task is queued or running (owner and cockpit only).
    #[prop_or_default]
    pub on_cancel: Option<Callback<String>>,
}

/// A task's transcript, live. The scroll box is a reversed flex column, so the browser keeps it
/// pinned to the newest output while text streams (no scroll jumps, no JS measuring) and
/// leaves it alone once the reader scrolls up.
#[function_component(ThreadView)]
pub fn thread_view(props: &ThreadViewProps) -> Html {
    let shown = use_state(|| PAGE);
    let empty = Rc::new(Transcript::default());
    let transcript = props.transcript.as_ref().map_or(&empty, |t| &t.0);
    let items = &transcript.items;
    let start = items.len().saturating_sub(*shown);
    let on_more = {
        let shown = shown.clone();
        Callback::from(move |_: MouseEvent| shown.set(*shown + PAGE))
    };
    let status = props.task.as_ref().map(|t| t.status).or(transcript.status);
    html! {
        <section class="thread" aria-label="Task transcript">
            <header class="thread-head">
                if let Some(task) = &props.task {
                    <h2 class="thread-title" title={task.title.clone()}>{ &task.title }</h2>
                    <span class="executor">{ task.executor.as_str() }</span>
                    if let (Some(on_cancel), false) = (&props.on_cancel, task.status.is_terminal()) {
                        <button type="button" class="small cancel" onclick={
                            let on_cancel = on_cancel.clone();
                            let id = task.id.clone();
                            Callback::from(move |_: MouseEvent| on_cancel.emit(id.clone()))
                        }>{ "Cancel task" }</button>
                    }
                } else {
                    <h2 class="thread-title muted">{ "No task yet" }</h2>
                }
            </header>
            <div class="thread-scroll" tabindex="0" aria-label="Transcript, newest at the bottom">
                <div class="thread-items" id="transcript" aria-live="polite" aria-relevant="additions text" aria-atomic="false">
                    if start > 0 {
                        <button type="button" class="link more" onclick={on_more}>
                            { format!("Show {} earlier items", start.min(PAGE)) }
                        </button>
                    }
                    if items.is_empty() {
                        <p class="muted empty">{ props.empty_text.clone().unwrap_or_else(|| "Waiting for output…".into()) }</p>
                    }
                    // The keyed items alone in their element: yew diffs them as one keyed list.
                    <div class="items">
                        { for items[start..].iter().enumerate().map(|(i, item)| html! {
                            <TranscriptItem key={start + i} item={Shared(item.clone())} />
                        }) }
                    </div>
                </div>
            </div>
            <StatusBar status={status} usage={transcript.usage} events={transcript.event_count} connection={props.connection} />
        </section>
    }
}
