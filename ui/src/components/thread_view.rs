use std::rc::Rc;

use flightdeck_protocol::{Executor, Task, TaskSource};
use yew::prelude::*;

use super::{ReplyBox, Shared, StatusBar, TranscriptItem};
use crate::connection::Connection;
use crate::transcript::{Transcript, Usage};

/// Items rendered at first; older ones come back a page at a time. Consecutive chunks are
/// already one item each, so this bounds the DOM for very long transcripts.
const PAGE: usize = 300;

/// One turn of a conversation: a task and its transcript (none before its first event).
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub task: Task,
    pub transcript: Option<Shared<Transcript>>,
}

#[derive(Properties, PartialEq)]
pub struct ThreadViewProps {
    /// The conversation's turns, oldest first; empty when no task is shown.
    pub turns: Rc<Vec<Turn>>,
    /// Shown in the status bar when the page has no header (embed mode).
    #[prop_or_default]
    pub connection: Option<Connection>,
    #[prop_or_default]
    pub empty_text: Option<AttrValue>,
    /// Offered while the last turn is queued, running or waiting (owner and cockpit only).
    #[prop_or_default]
    pub on_cancel: Option<Callback<String>>,
    /// The owner: may decide permission requests and reply under the last turn.
    #[prop_or_default]
    pub owner: bool,
}

/// How close to the bottom (px) still counts as reading the newest output.
const FOLLOW_SLACK_PX: i32 = 48;

/// A conversation, live: every turn's transcript in order, and the owner's reply box under
/// the last one. The transcript is the one scroll box (output blocks never scroll on their
/// own); after each render it is scrolled to the newest line while the reader is at the
/// bottom. A reader who scrolled up is left alone and gets a "Jump to latest" button.
#[function_component(ThreadView)]
pub fn thread_view(props: &ThreadViewProps) -> Html {
    let shown = use_state(|| PAGE);
    let scroller = use_node_ref();
    // A plain cell, not state: scrolling must not re-render; only the button's visibility does.
    let following = use_mut_ref(|| true);
    let show_jump = use_state_eq(|| false);
    {
        let (scroller, following) = (scroller.clone(), following.clone());
        use_effect(move || {
            if *following.borrow() {
                if let Some(el) = scroller.cast::<web_sys::Element>() {
                    el.set_scroll_top(el.scroll_height());
                }
            }
        });
    }
    let on_scroll = {
        let (scroller, following, show_jump) = (scroller.clone(), following.clone(), show_jump.clone());
        Callback::from(move |_: Event| {
            if let Some(el) = scroller.cast::<web_sys::Element>() {
                let at_bottom = el.scroll_height() - el.scroll_top() - el.client_height() <= FOLLOW_SLACK_PX;
                *following.borrow_mut() = at_bottom;
                show_jump.set(!at_bottom);
            }
        })
    };
    let on_jump = {
        let (scroller, following, show_jump) = (scroller.clone(), following.clone(), show_jump.clone());
        Callback::from(move |_: MouseEvent| {
            *following.borrow_mut() = true;
            show_jump.set(false);
            if let Some(el) = scroller.cast::<web_sys::Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        })
    };
    let turns = &*props.turns;
    let first = turns.first().map(|t| &t.task);
    let last = turns.last();
    let total: usize = turns.iter().map(|t| t.transcript.as_ref().map_or(0, |tr| tr.items.len())).sum();
    let mut skip = total.saturating_sub(*shown);
    let hidden = skip;
    let on_more = {
        let shown = shown.clone();
        Callback::from(move |_: MouseEvent| shown.set(*shown + PAGE))
    };
    let status = last.map(|t| t.task.status).or_else(|| last.and_then(|t| t.transcript.as_ref()?.status));
    let events: usize = turns.iter().filter_map(|t| t.transcript.as_ref()).map(|t| t.event_count).sum();
    let usage = turns.iter().filter_map(|t| t.transcript.as_ref()?.usage).reduce(|a, b| Usage {
        input_tokens: a.input_tokens + b.input_tokens,
        output_tokens: a.output_tokens + b.output_tokens,
        total_cost_usd: a.total_cost_usd + b.total_cost_usd,
    });
    // Unknown when any turn's cost is (a session started in a terminal reports none).
    let cost = usage.and_then(|u| {
        let unknown = turns.iter().any(|t| super::known_cost(t.task.source, Some(0.0)).is_none());
        (!unknown).then(|| AttrValue::from(super::format_cost(u.total_cost_usd)))
    });
    // A session started in a terminal is stopped there: Flightdeck does not run it.
    let running = last
        .filter(|t| !t.task.status.is_terminal() && t.task.source != TaskSource::External)
        .map(|t| t.task.id.clone());
    html! {
        <section class="thread" aria-label="Task transcript">
            <header class="thread-head">
                if let Some(task) = first {
                    <h2 class="thread-title" title={task.title.clone()}>{ &task.title }</h2>
                    <span class="executor">{ task.executor.as_str() }</span>
                    if task.source == TaskSource::External {
                        <span class="badge started-in-terminal" title="A Claude Code session started in a terminal, seen through its hooks">
                            { "started in terminal" }
                        </span>
                    }
                    if turns.len() > 1 {
                        <span class="turn-count muted">{ format!("{} turns", turns.len()) }</span>
                    }
                    if let (Some(on_cancel), Some(id)) = (&props.on_cancel, running) {
                        <button type="button" class="small cancel" onclick={
                            let on_cancel = on_cancel.clone();
                            Callback::from(move |_: MouseEvent| on_cancel.emit(id.clone()))
                        }>{ "Cancel task" }</button>
                    }
                } else {
                    <h2 class="thread-title muted">{ "No task yet" }</h2>
                }
            </header>
            <div class="thread-scroll" tabindex="0" aria-label="Transcript, newest at the bottom" ref={scroller}
                 onscroll={on_scroll}>
                <div class="thread-items" id="transcript" aria-live="polite" aria-relevant="additions text" aria-atomic="false">
                    if hidden > 0 {
                        <button type="button" class="link more" onclick={on_more}>
                            { format!("Show {} earlier items", hidden.min(PAGE)) }
                        </button>
                    }
                    if total == 0 && !turns.iter().any(|t| turn_prompt(t).is_some()) {
                        <p class="muted empty">{ props.empty_text.clone().unwrap_or_else(|| "Waiting for output…".into()) }</p>
                    }
                    <div class="turns">
                        { for turns.iter().map(|turn| {
                            let len = turn.transcript.as_ref().map_or(0, |t| t.items.len());
                            let start = skip.min(len);
                            skip -= start;
                            html! {
                                <div class="turn" key={turn.task.id.clone()} data-task-id={turn.task.id.clone()}>
                                    if start == 0 {
                                        if let Some(prompt) = turn_prompt(turn) {
                                            <div class="msg user" data-testid="user-message">
                                                <div class="who">{ "You" }</div>
                                                <div class="prose">{ prompt }</div>
                                            </div>
                                        }
                                    }
                                    { turn_items(turn, start, props.owner) }
                                </div>
                            }
                        }) }
                    </div>
                </div>
            </div>
            if *show_jump {
                <button type="button" class="jump-latest" data-testid="jump-latest" onclick={on_jump}>
                    { "↓ Jump to latest" }
                </button>
            }
            if let Some(last) = last.filter(|_| props.owner) {
                { match reply_offer(&last.task) {
                    ReplyOffer::Box => html! {
                        <ReplyBox task_id={AttrValue::from(last.task.id.clone())} status={last.task.status} />
                    },
                    ReplyOffer::Refused(why) => html! {
                        <p class="reply-refused muted" data-testid="no-reply">{ why }</p>
                    },
                    ReplyOffer::Nothing => html! {},
                } }
            }
            <StatusBar status={status} usage={usage} cost={cost} events={events} connection={props.connection} />
        </section>
    }
}

/// What the owner gets under the last turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
enum ReplyOffer {
    /// The reply box (disabled until the turn has ended).
    Box,
    /// Why this conversation cannot be continued from here.
    Refused(String),
    /// Not a conversation at all (a shell task), or one run in a terminal and continued there.
    Nothing,
}

fn reply_offer(task: &Task) -> ReplyOffer {
    if task.executor != Executor::Claude || task.source == TaskSource::External {
        return ReplyOffer::Nothing;
    }
    if let Some(why) = flightdeck_protocol::rules::reply_refusal(task) {
        return ReplyOffer::Refused(format!("No reply here: {why}."));
    }
    // A turn that ended without a Claude session never ran (the CLI missing, a bad repo): there
    // is nothing to resume, and the relay would refuse the reply.
    if task.status.is_terminal() && task.session_id.is_none() {
        return ReplyOffer::Refused(
            "No reply here: this turn ended before Claude started, so there is no session to continue. Start a new task instead.".into(),
        );
    }
    ReplyOffer::Box
}

/// The prompt shown above a turn when its transcript has no `user_message` of its own yet
/// (a turn still queued, or one recorded before conversations existed).
fn turn_prompt(turn: &Turn) -> Option<String> {
    if turn.transcript.as_ref().is_some_and(|t| t.has_user_message()) {
        return None;
    }
    turn.task.payload.prompt.clone().filter(|p| !p.trim().is_empty())
}

fn turn_items(turn: &Turn, start: usize, owner: bool) -> Html {
    let Some(transcript) = &turn.transcript else { return html! {} };
    let task_id = AttrValue::from(turn.task.id.clone());
    let status = Some(turn.task.status);
    html! {
        // The keyed items alone in their element: yew diffs them as one keyed list.
        <div class="items">
            { for transcript.items[start..].iter().enumerate().map(|(i, item)| html! {
                <TranscriptItem key={start + i} item={Shared(item.clone())} task_id={task_id.clone()}
                                task_status={status} can_decide={owner} />
            }) }
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_protocol::{TaskPayload, TaskStatus};

    fn task(executor: Executor, source: TaskSource, status: TaskStatus, session: Option<&str>) -> Task {
        let at = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut task = Task::queued("t", "t", "r", executor, TaskPayload::default(), source, at);
        task.status = status;
        task.session_id = session.map(str::to_string);
        task
    }

    /// Issue 22: a task that failed before its turn ran still offered a Reply box.
    #[test]
    fn a_reply_is_offered_only_where_there_is_a_session_to_continue() {
        use Executor::{Claude, Shell};
        use TaskSource::{External, Local, Remote};
        use TaskStatus::{Completed, Failed, Queued, Running};
        let offer = |e, src, st, sess| reply_offer(&task(e, src, st, sess));
        assert_eq!(offer(Claude, Remote, Completed, Some("s")), ReplyOffer::Box);
        assert_eq!(offer(Claude, Local, Failed, Some("s")), ReplyOffer::Box);
        // Not ended yet: the box, disabled until it ends (the session id may come later).
        assert_eq!(offer(Claude, Remote, Queued, None), ReplyOffer::Box);
        assert_eq!(offer(Claude, Remote, Running, None), ReplyOffer::Box);
        assert!(matches!(offer(Claude, Remote, Failed, None), ReplyOffer::Refused(why) if why.contains("no session")));
        assert_eq!(offer(Shell, Remote, Completed, None), ReplyOffer::Nothing);
        assert_eq!(offer(Claude, External, Completed, Some("s")), ReplyOffer::Nothing);
    }
}
