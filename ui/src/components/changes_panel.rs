use std::collections::HashSet;

use flightdeck_protocol::event::DiffStatus;
use yew::prelude::*;

use super::Shared;
use crate::patch::{classify, sections, totals};
use crate::transcript::Item;

/// Files are shown expanded at first when the whole patch is at most this many lines.
const EXPAND_UP_TO_LINES: usize = 400;

#[derive(Properties, PartialEq)]
pub struct ChangesPanelProps {
    pub item: Shared<Item>,
}

fn status_word(status: DiffStatus) -> &'static str {
    match status {
        DiffStatus::Added => "added",
        DiffStatus::Modified => "modified",
        DiffStatus::Deleted => "deleted",
        DiffStatus::Renamed => "renamed",
    }
}

/// What a task changed (the `diff` event, SPEC 12): totals, then one row per file that opens to
/// its part of the patch, `+`/`-` lines coloured. Binary files are listed without a patch; a
/// patch cut at the cap says so. A file's patch is only in the DOM while it is open.
#[function_component(ChangesPanel)]
pub fn changes_panel(props: &ChangesPanelProps) -> Html {
    let Item::Changes { files, patch, truncated } = &*props.item.0 else { return html! {} };
    let small = patch.lines().count() <= EXPAND_UP_TO_LINES;
    let open = {
        let initial: HashSet<usize> = if small { (0..files.len()).collect() } else { HashSet::new() };
        use_state(move || initial)
    };
    let parts = sections(files, patch);
    let (additions, deletions) = totals(files);
    let count = files.len();
    html! {
        <section class="changes" data-testid="changes" aria-label="Changes">
            <header class="changes-head">
                <strong>{ "Changes" }</strong>
                <span class="muted">{ format!("{count} file{} changed", if count == 1 { "" } else { "s" }) }</span>
                <span class="add">{ format!("+{additions}") }</span>
                <span class="del">{ format!("−{deletions}") }</span>
            </header>
            if *truncated {
                <p class="muted note" data-testid="changes-truncated">
                    { "The patch was cut at 1 MiB: every changed file is listed, the last ones without their lines." }
                </p>
            }
            <ul class="change-files">
                { for files.iter().zip(parts).enumerate().map(|(i, (file, part))| {
                    let expanded = open.contains(&i);
                    let toggle = {
                        let open = open.clone();
                        Callback::from(move |_: MouseEvent| {
                            let mut next = (*open).clone();
                            if !next.remove(&i) {
                                next.insert(i);
                            }
                            open.set(next);
                        })
                    };
                    let status = status_word(file.status);
                    let name = match &file.old_path {
                        Some(old) => format!("{old} → {}", file.path),
                        None => file.path.clone(),
                    };
                    let body_id = format!("change-{i}");
                    html! {
                        <li class="change-file" key={file.path.clone()} data-path={file.path.clone()} data-status={status}>
                            <button type="button" class="change-head" aria-expanded={expanded.to_string()}
                                    aria-controls={body_id.clone()} onclick={toggle}>
                                <span class={classes!("badge", format!("ds-{status}"))}>{ status }</span>
                                <code class="change-path">{ name }</code>
                                if file.binary {
                                    <span class="badge" data-testid="binary">{ "binary" }</span>
                                } else {
                                    <span class="add">{ format!("+{}", file.additions) }</span>
                                    <span class="del">{ format!("−{}", file.deletions) }</span>
                                }
                            </button>
                            if expanded {
                                <div class="change-body" id={body_id}>
                                    { match (file.binary, part) {
                                        (true, _) => html! { <p class="muted">{ "Binary file: no lines to show." }</p> },
                                        (false, Some(section)) => html! {
                                            <pre class="patch">
                                                { for classify(section).into_iter().map(|(kind, line)| html! {
                                                    <span class={kind.class()}>{ line }{ "\n" }</span>
                                                }) }
                                            </pre>
                                        },
                                        (false, None) if *truncated => html! { <p class="muted">{ "Past the patch's cap." }</p> },
                                        (false, None) => html! { <p class="muted">{ "No lines changed (a rename or a mode change)." }</p> },
                                    } }
                                </div>
                            }
                        </li>
                    }
                }) }
            </ul>
        </section>
    }
}
