use flightdeck_protocol::RepoStatus;
use yew::prelude::*;

/// Most modified files listed before "and N more".
const MAX_FILES_SHOWN: usize = 50;

#[derive(Properties, PartialEq)]
pub struct RepoPanelProps {
    pub repo: Option<RepoStatus>,
    #[prop_or_default]
    pub title: Option<AttrValue>,
}

/// Branch, ahead/behind, counts and modified files of one repo.
#[function_component(RepoPanel)]
pub fn repo_panel(props: &RepoPanelProps) -> Html {
    let Some(repo) = &props.repo else {
        return html! {
            <section class="panel repo" aria-label="Repository status">
                <h3>{ props.title.clone().unwrap_or_else(|| "Repository".into()) }</h3>
                <p class="muted">{ "No status reported yet." }</p>
            </section>
        };
    };
    let branch = match (&repo.branch, repo.detached) {
        (_, true) => format!("detached at {}", repo.head_sha.as_deref().map_or("?", |s| &s[..s.len().min(8)])),
        (Some(b), false) => b.clone(),
        (None, false) => "no branch".into(),
    };
    let counts = [
        ("staged", repo.staged_count),
        ("modified", repo.uncommitted_count),
        ("untracked", repo.untracked_count),
        ("conflicted", repo.conflicted_count),
        ("stashes", repo.stash_count),
    ];
    let more = repo.modified_files.len().saturating_sub(MAX_FILES_SHOWN);
    html! {
        <section class="panel repo" aria-label="Repository status" data-testid="repo-panel">
            <h3>
                { props.title.clone().unwrap_or_else(|| AttrValue::from(repo.name.clone())) }
                <span class={classes!("badge", format!("rs-{}", repo.status.as_str()))}>{ repo.status.as_str() }</span>
            </h3>
            <p class="branch">
                <span class="label">{ "Branch " }</span><code>{ branch }</code>
                if let Some(up) = &repo.upstream { <span class="muted">{ format!(" → {up}") }</span> }
            </p>
            <p class="aheadbehind">
                <span title="commits ahead of upstream">{ format!("↑{}", repo.ahead_count) }</span>
                { " " }
                <span title="commits behind upstream">{ format!("↓{}", repo.behind_count) }</span>
                if let Some(op) = repo.operation {
                    <span class="badge warn">{ format!("{op:?} in progress").to_lowercase() }</span>
                }
            </p>
            if let Some(summary) = &repo.head_summary {
                <p class="head muted" title={repo.head_sha.clone().unwrap_or_default()}>{ summary }</p>
            }
            <ul class="counts">
                { for counts.iter().map(|(label, n)| html! {
                    <li class={classes!((*n == 0).then_some("zero"))}><strong>{ n }</strong>{ format!(" {label}") }</li>
                }) }
            </ul>
            if !repo.modified_files.is_empty() {
                <details class="files">
                    <summary>{ match repo.modified_files.len() {
                        1 => "1 changed file".to_string(),
                        n => format!("{n} changed files"),
                    } }</summary>
                    <ul>
                        { for repo.modified_files.iter().take(MAX_FILES_SHOWN).map(|f| html! { <li><code>{ f }</code></li> }) }
                    </ul>
                    if more > 0 || repo.modified_files_truncated {
                        <p class="muted">{ format!("and {more} more{}", if repo.modified_files_truncated { " (list truncated)" } else { "" }) }</p>
                    }
                </details>
            }
        </section>
    }
}
