use std::rc::Rc;

use flightdeck_protocol::{Task, TaskSource};
use yew::prelude::*;

use super::known_cost;

#[derive(Properties, PartialEq)]
pub struct TaskListProps {
    pub tasks: Rc<Vec<Task>>,
    pub selected: Option<AttrValue>,
    pub on_select: Callback<String>,
}

/// Tasks with status badges (`waiting` stands out: a decision is pending); choosing one shows
/// its conversation. A follow-up turn is marked as a reply.
#[function_component(TaskList)]
pub fn task_list(props: &TaskListProps) -> Html {
    html! {
        <section class="panel tasks" aria-label="Tasks">
            <h3>{ "Tasks" }</h3>
            if props.tasks.is_empty() {
                <p class="muted">{ "No tasks yet." }</p>
            }
            <ul class="task-list">
                { for props.tasks.iter().map(|t| {
                    let id = t.id.clone();
                    let on_select = props.on_select.clone();
                    let selected = props.selected.as_deref() == Some(t.id.as_str());
                    html! {
                        <li key={t.id.clone()}>
                            <button type="button" class={classes!("task-row", selected.then_some("selected"))}
                                    aria-pressed={selected.to_string()} data-task-id={t.id.clone()}
                                    onclick={Callback::from(move |_: MouseEvent| on_select.emit(id.clone()))}>
                                <span class={classes!("badge", format!("st-{}", t.status.as_str()))}>{ t.status.as_str() }</span>
                                <span class="task-title">{ &t.title }</span>
                                <span class="task-meta muted">
                                    if t.source == TaskSource::External {
                                        <span class="started-in-terminal" title="A Claude Code session started in a terminal">{ "started in terminal · " }</span>
                                    } else if t.parent_task_id.is_some() { { "↳ reply · " } }
                                    { format!("{} · {}", t.repo, super::short_time(&t.created_at)) }
                                    if let Some(c) = known_cost(t.source, t.cost_usd) { { format!(" · {c}") } }
                                    // Where it ran (SPEC 10).
                                    if t.placement == Some(flightdeck_protocol::Placement::Container) { { " · in a container" } }
                                </span>
                            </button>
                        </li>
                    }
                }) }
            </ul>
        </section>
    }
}
