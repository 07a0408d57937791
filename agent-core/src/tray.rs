//! The tray menu as plain data, built from what the agent knows; the desktop shell only renders it.
//!
//! Keeping the model here (and not in the Tauri crate) means every line the tray shows is
//! tested as data: [`TrayModel::build`] is a pure function of its [`TrayInput`].

use flightdeck_protocol::desktop::LinkStatus;
use flightdeck_protocol::{Alert, RepoOperation, RepoState, RepoStatus, Severity, Task, TaskStatus};

/// Which of the three tray icon variants to show (`icons/tray-<name>.png`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrayIcon {
    /// Nothing running, nothing to look at.
    Idle,
    /// At least one task queued or running.
    Running,
    /// An unacknowledged warning or critical alert, or a repo with conflicts or gone missing.
    /// Wins over `Running`: a person is needed.
    Attention,
}

impl TrayIcon {
    /// The icon file stem under `icons/`.
    pub fn file_stem(self) -> &'static str {
        match self {
            TrayIcon::Idle => "tray-idle",
            TrayIcon::Running => "tray-running",
            TrayIcon::Attention => "tray-attention",
        }
    }
}

/// What clicking a menu entry does. Its [`TrayAction::id`] is the menu item id in the shell.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrayAction {
    /// Show and focus the window.
    OpenWindow,
    /// Show the window on this repo.
    ShowRepo(String),
    /// Show the window on this task.
    ShowTask(String),
    OpenHud,
    PauseWatching,
    ResumeWatching,
    Quit,
}

impl TrayAction {
    pub fn id(&self) -> String {
        match self {
            TrayAction::OpenWindow => "open".into(),
            TrayAction::ShowRepo(id) => format!("repo:{id}"),
            TrayAction::ShowTask(id) => format!("task:{id}"),
            TrayAction::OpenHud => "hud".into(),
            TrayAction::PauseWatching => "pause".into(),
            TrayAction::ResumeWatching => "resume".into(),
            TrayAction::Quit => "quit".into(),
        }
    }

    /// The action of a menu item id, as made by [`TrayAction::id`].
    pub fn parse(id: &str) -> Option<TrayAction> {
        Some(match id {
            "open" => TrayAction::OpenWindow,
            "hud" => TrayAction::OpenHud,
            "pause" => TrayAction::PauseWatching,
            "resume" => TrayAction::ResumeWatching,
            "quit" => TrayAction::Quit,
            _ => {
                if let Some(repo) = id.strip_prefix("repo:") {
                    TrayAction::ShowRepo(repo.into())
                } else if let Some(task) = id.strip_prefix("task:") {
                    TrayAction::ShowTask(task.into())
                } else {
                    return None;
                }
            }
        })
    }
}

/// One entry of the menu.
#[derive(Debug, Clone, PartialEq)]
pub enum TrayItem {
    /// A line that cannot be clicked (a heading, "No repos yet").
    Label(String),
    /// A clickable line.
    Action {
        action: TrayAction,
        text: String,
        enabled: bool,
    },
    Separator,
}

/// The whole tray: icon, tooltip and menu.
#[derive(Debug, Clone, PartialEq)]
pub struct TrayModel {
    pub icon: TrayIcon,
    pub tooltip: String,
    pub items: Vec<TrayItem>,
}

/// Everything the tray depends on.
#[derive(Debug, Clone, Copy)]
pub struct TrayInput<'a> {
    pub repos: &'a [RepoStatus],
    /// Tasks to consider; only queued and running ones are shown.
    pub tasks: &'a [Task],
    /// Alerts to consider; only unacknowledged ones count.
    pub alerts: &'a [Alert],
    pub paused: bool,
    pub link: LinkStatus,
    /// Whether a relay is configured, so Open HUD has somewhere to go.
    pub hud_available: bool,
}

/// Running tasks shown before "and N more".
const MAX_TASK_LINES: usize = 8;
/// Longest task title shown, in characters.
const MAX_TITLE_CHARS: usize = 40;

impl TrayModel {
    pub fn build(input: TrayInput<'_>) -> TrayModel {
        let active: Vec<&Task> = input.tasks.iter().filter(|t| !t.status.is_terminal()).collect();
        // A task waiting for a decision needs attention whether or not its alert was seen.
        let waiting = active.iter().any(|t| t.status == TaskStatus::Waiting);
        let attention_alerts =
            input.alerts.iter().filter(|a| !a.acknowledged && a.severity >= Severity::Warning).count();
        let troubled_repos =
            input.repos.iter().filter(|r| r.conflicted_count > 0 || r.status == RepoState::Missing).count();

        let icon = if attention_alerts > 0 || troubled_repos > 0 || waiting {
            TrayIcon::Attention
        } else if !active.is_empty() {
            TrayIcon::Running
        } else {
            TrayIcon::Idle
        };

        let mut items = Vec::new();
        if input.repos.is_empty() {
            items.push(TrayItem::Label("No repos watched".into()));
        }
        for repo in input.repos {
            items.push(TrayItem::Action {
                action: TrayAction::ShowRepo(repo.id.clone()),
                text: repo_line(repo),
                enabled: true,
            });
        }
        items.push(TrayItem::Separator);
        if active.is_empty() {
            items.push(TrayItem::Label("No tasks running".into()));
        }
        for task in active.iter().take(MAX_TASK_LINES) {
            items.push(TrayItem::Action {
                action: TrayAction::ShowTask(task.id.clone()),
                text: task_line(task),
                enabled: true,
            });
        }
        if active.len() > MAX_TASK_LINES {
            items.push(TrayItem::Label(format!("and {} more", active.len() - MAX_TASK_LINES)));
        }
        items.push(TrayItem::Separator);
        items.push(TrayItem::Action { action: TrayAction::OpenWindow, text: "Open Flightdeck".into(), enabled: true });
        items.push(TrayItem::Action {
            action: TrayAction::OpenHud,
            text: "Open HUD in browser".into(),
            enabled: input.hud_available,
        });
        items.push(if input.paused {
            TrayItem::Action { action: TrayAction::ResumeWatching, text: "Resume watching".into(), enabled: true }
        } else {
            TrayItem::Action { action: TrayAction::PauseWatching, text: "Pause watching".into(), enabled: true }
        });
        items.push(TrayItem::Separator);
        items.push(TrayItem::Action { action: TrayAction::Quit, text: "Quit".into(), enabled: true });

        let tooltip = tooltip(input, active.len(), attention_alerts);
        TrayModel { icon, tooltip, items }
    }
}

/// `name  branch  ↑ahead ↓behind  N changed`, or what stops the repo from having those.
pub fn repo_line(repo: &RepoStatus) -> String {
    if repo.status == RepoState::Missing {
        return format!("{}  missing", repo.name);
    }
    let mut parts = vec![repo.name.clone()];
    let head = match (&repo.branch, &repo.head_sha) {
        (Some(branch), _) if !repo.detached => branch.clone(),
        (_, Some(sha)) => format!("detached {}", &sha[..sha.len().min(7)]),
        _ => "no commits".into(),
    };
    parts.push(head);
    let mut sync = Vec::new();
    if repo.ahead_count > 0 {
        sync.push(format!("↑{}", repo.ahead_count));
    }
    if repo.behind_count > 0 {
        sync.push(format!("↓{}", repo.behind_count));
    }
    if !sync.is_empty() {
        parts.push(sync.join(" "));
    }
    // `uncommittedCount` covers staged, unstaged and conflicted tracked paths; untracked files
    // are counted apart (SPEC 3.2, the watcher's `Counts`).
    let changed = repo.uncommitted_count + repo.untracked_count;
    if repo.conflicted_count > 0 {
        parts.push(format!("{} conflicted", repo.conflicted_count));
    }
    parts.push(if changed == 0 { "clean".into() } else { format!("{changed} changed") });
    if let Some(op) = repo.operation {
        let name = match op {
            RepoOperation::Rebase => "rebase",
            RepoOperation::Merge => "merge",
            RepoOperation::CherryPick => "cherry-pick",
            RepoOperation::Revert => "revert",
            RepoOperation::Bisect => "bisect",
        };
        parts.push(format!("{name} in progress"));
    }
    parts.join("  ")
}

/// `▶ title · repo` for a running task, `… title · repo` for a queued one.
pub fn task_line(task: &Task) -> String {
    let marker = match task.status {
        TaskStatus::Running => "▶",
        TaskStatus::Waiting => "✋",
        _ => "…",
    };
    format!("{marker} {} · {}", shorten(&task.title, MAX_TITLE_CHARS), task.repo)
}

fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

fn tooltip(input: TrayInput<'_>, active: usize, attention_alerts: usize) -> String {
    let mut parts = vec![match input.repos.len() {
        1 => "1 repo".to_string(),
        n => format!("{n} repos"),
    }];
    match active {
        0 => {}
        1 => parts.push("1 task running".into()),
        n => parts.push(format!("{n} tasks running")),
    }
    match attention_alerts {
        0 => {}
        1 => parts.push("1 alert".into()),
        n => parts.push(format!("{n} alerts")),
    }
    if input.paused {
        parts.push("watching paused".into());
    }
    match input.link {
        LinkStatus::Off => {}
        LinkStatus::Connected => parts.push("relay connected".into()),
        LinkStatus::Connecting => parts.push("relay connecting".into()),
        LinkStatus::Disconnected => parts.push("relay offline".into()),
        LinkStatus::Stopped => parts.push("relay stopped this agent".into()),
    }
    format!("Flightdeck: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use flightdeck_protocol::{AlertKind, Executor, TaskPayload, TaskSource};

    use super::*;

    fn repo(name: &str, edit: impl FnOnce(&mut RepoStatus)) -> RepoStatus {
        let mut r = RepoStatus::new(format!("id-{name}"), name);
        r.branch = Some("main".into());
        r.head_sha = Some("0123456789abcdef".into());
        edit(&mut r);
        r
    }

    fn task(id: &str, title: &str, status: TaskStatus) -> Task {
        let created = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Task {
            status,
            ..Task::queued(id, title, "demo", Executor::Shell, TaskPayload::default(), TaskSource::Local, created)
        }
    }

    fn alert(severity: Severity, acknowledged: bool) -> Alert {
        Alert {
            id: "a1".into(),
            severity,
            kind: AlertKind::TaskFailed,
            repo: None,
            task_id: None,
            agent_id: None,
            message: "boom".into(),
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            acknowledged,
            acknowledged_at: None,
        }
    }

    #[test]
    fn repo_lines() {
        let table: Vec<(RepoStatus, &str)> = vec![
            (repo("clean", |_| {}), "clean  main  clean"),
            (
                repo("busy", |r| {
                    r.ahead_count = 2;
                    r.behind_count = 1;
                    r.uncommitted_count = 3;
                }),
                "busy  main  ↑2 ↓1  3 changed",
            ),
            (
                repo("counts", |r| {
                    r.uncommitted_count = 1;
                    r.staged_count = 1;
                    r.untracked_count = 2;
                }),
                "counts  main  3 changed",
            ),
            (
                repo("head", |r| {
                    r.detached = true;
                    r.branch = None;
                }),
                "head  detached 0123456  clean",
            ),
            (
                repo("empty", |r| {
                    r.branch = None;
                    r.head_sha = None;
                }),
                "empty  no commits  clean",
            ),
            (
                repo("gone", |r| {
                    r.status = RepoState::Missing;
                }),
                "gone  missing",
            ),
            (
                repo("rebasing", |r| {
                    r.conflicted_count = 1;
                    r.uncommitted_count = 1;
                    r.operation = Some(RepoOperation::CherryPick);
                }),
                "rebasing  main  1 conflicted  1 changed  cherry-pick in progress",
            ),
        ];
        for (input, expected) in table {
            assert_eq!(repo_line(&input), expected, "{}", input.name);
        }
    }

    #[test]
    fn task_lines() {
        let long = "x".repeat(60);
        let table = [
            (task("t1", "echo hi", TaskStatus::Running), "▶ echo hi · demo".to_string()),
            (task("t2", "fix the tests\nand more", TaskStatus::Queued), "… fix the tests · demo".to_string()),
            (task("t3", &long, TaskStatus::Running), format!("▶ {}… · demo", "x".repeat(39))),
            (task("t4", "make the file", TaskStatus::Waiting), "✋ make the file · demo".to_string()),
        ];
        for (input, expected) in table {
            assert_eq!(task_line(&input), expected);
        }
    }

    type Case<'a> = (&'a [RepoStatus], &'a [Task], &'a [Alert], TrayIcon);

    #[test]
    fn icon_follows_tasks_and_alerts() {
        let running = [task("t1", "a", TaskStatus::Running)];
        let finished = [task("t2", "b", TaskStatus::Completed), task("t3", "c", TaskStatus::Failed)];
        let queued = [task("t4", "d", TaskStatus::Queued)];
        let critical = [alert(Severity::Critical, false)];
        let acked = [alert(Severity::Critical, true)];
        let info = [alert(Severity::Info, false)];
        let conflicted = [repo("c", |r| r.conflicted_count = 2)];
        let clean = [repo("c", |_| {})];
        #[rustfmt::skip]
        let table: Vec<Case<'_>> = vec![
            (&[], &[], &[], TrayIcon::Idle),
            (&clean, &finished, &[], TrayIcon::Idle),
            (&clean, &running, &[], TrayIcon::Running),
            (&clean, &queued, &[], TrayIcon::Running),
            (&clean, &running, &critical, TrayIcon::Attention),
            (&clean, &running, &acked, TrayIcon::Running),
            (&clean, &[], &info, TrayIcon::Idle),
            (&conflicted, &[], &[], TrayIcon::Attention),
        ];
        for (i, (repos, tasks, alerts, expected)) in table.into_iter().enumerate() {
            let model = TrayModel::build(TrayInput {
                repos,
                tasks,
                alerts,
                paused: false,
                link: LinkStatus::Off,
                hud_available: false,
            });
            assert_eq!(model.icon, expected, "case {i}");
        }
    }

    fn texts(model: &TrayModel) -> Vec<String> {
        model
            .items
            .iter()
            .map(|item| match item {
                TrayItem::Label(text) => format!("[{text}]"),
                TrayItem::Action { action, text, enabled } => {
                    format!("{}{text} ({})", if *enabled { "" } else { "disabled " }, action.id())
                }
                TrayItem::Separator => "---".into(),
            })
            .collect()
    }

    #[test]
    fn menu_lists_repos_tasks_and_the_fixed_actions() {
        let repos = [repo("alpha", |r| r.uncommitted_count = 1), repo("beta", |_| {})];
        let tasks = [task("t1", "cargo test", TaskStatus::Running), task("t2", "old", TaskStatus::Completed)];
        let model = TrayModel::build(TrayInput {
            repos: &repos,
            tasks: &tasks,
            alerts: &[],
            paused: false,
            link: LinkStatus::Connected,
            hud_available: true,
        });
        assert_eq!(
            texts(&model),
            [
                "alpha  main  1 changed (repo:id-alpha)",
                "beta  main  clean (repo:id-beta)",
                "---",
                "▶ cargo test · demo (task:t1)",
                "---",
                "Open Flightdeck (open)",
                "Open HUD in browser (hud)",
                "Pause watching (pause)",
                "---",
                "Quit (quit)",
            ]
        );
        assert_eq!(model.tooltip, "Flightdeck: 2 repos, 1 task running, relay connected");

        let empty = TrayModel::build(TrayInput {
            repos: &[],
            tasks: &[],
            alerts: &[],
            paused: true,
            link: LinkStatus::Off,
            hud_available: false,
        });
        assert_eq!(
            texts(&empty),
            [
                "[No repos watched]",
                "---",
                "[No tasks running]",
                "---",
                "Open Flightdeck (open)",
                "disabled Open HUD in browser (hud)",
                "Resume watching (resume)",
                "---",
                "Quit (quit)",
            ]
        );
        assert_eq!(empty.tooltip, "Flightdeck: 0 repos, watching paused");
    }

    #[test]
    fn many_running_tasks_are_summarised() {
        let tasks: Vec<Task> = (0..11).map(|i| task(&format!("t{i}"), "t", TaskStatus::Running)).collect();
        let model = TrayModel::build(TrayInput {
            repos: &[],
            tasks: &tasks,
            alerts: &[],
            paused: false,
            link: LinkStatus::Off,
            hud_available: false,
        });
        let task_lines = model
            .items
            .iter()
            .filter(|i| matches!(i, TrayItem::Action { action: TrayAction::ShowTask(_), .. }))
            .count();
        assert_eq!(task_lines, MAX_TASK_LINES);
        assert!(model.items.contains(&TrayItem::Label("and 3 more".into())));
        assert_eq!(model.tooltip, "Flightdeck: 0 repos, 11 tasks running");
    }

    #[test]
    fn action_ids_round_trip() {
        for action in [
            TrayAction::OpenWindow,
            TrayAction::ShowRepo("r:1".into()),
            TrayAction::ShowTask("0190-abc".into()),
            TrayAction::OpenHud,
            TrayAction::PauseWatching,
            TrayAction::ResumeWatching,
            TrayAction::Quit,
        ] {
            assert_eq!(TrayAction::parse(&action.id()), Some(action));
        }
        assert_eq!(TrayAction::parse("nope"), None);
    }
}
