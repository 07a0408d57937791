//! The views, one component per file. They read the store through `use_app` (or props) and
//! never know whether the data came from the relay or from the desktop shell.

mod alert_list;
mod app;
mod changes_panel;
mod cockpit_page;
mod connection_indicator;
mod dashboard_page;
mod desktop_settings;
mod hud_page;
mod new_task_form;
mod permission_card;
mod push_panel;
mod reply_box;
mod repo_panel;
mod settings_toggles;
mod start_form;
mod status_bar;
mod task_list;
mod thread_view;
mod tool_card;
mod transcript_item;

pub use alert_list::{AlertList, AlertListProps};
pub use app::{App, AppProps};
pub use changes_panel::{ChangesPanel, ChangesPanelProps};
pub use cockpit_page::CockpitPage;
pub use connection_indicator::{ConnectionIndicator, ConnectionIndicatorProps};
pub use dashboard_page::{DashboardPage, DashboardPageProps};
pub use desktop_settings::DesktopSettings;
pub use hud_page::{HudPage, HudPageProps};
pub use new_task_form::{NewTaskForm, NewTaskFormProps};
pub use permission_card::{PermissionCard, PermissionCardProps};
pub use push_panel::PushPanel;
pub use reply_box::{ReplyBox, ReplyBoxProps};
pub use repo_panel::{RepoPanel, RepoPanelProps};
pub use settings_toggles::{SettingsToggles, SettingsTogglesProps};
pub use start_form::{StartForm, StartFormProps, StartTask};
pub use status_bar::{StatusBar, StatusBarProps};
pub use task_list::{TaskList, TaskListProps};
pub use thread_view::{ThreadView, ThreadViewProps, Turn};
pub use tool_card::{ToolCard, ToolCardProps};
pub use transcript_item::{TranscriptItem, TranscriptItemProps};

use std::rc::Rc;

/// An `Rc` whose equality is identity: props holding one re-render only when the store
/// replaced the value, never by comparing a long transcript's text.
#[derive(Debug)]
pub struct Shared<T>(pub Rc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        Shared(Rc::clone(&self.0))
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// `$0.0123`
pub fn format_cost(usd: f64) -> String {
    if usd >= 1.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.4}")
    }
}

/// What a task cost, when that is known: a session started in a terminal is seen through
/// Claude Code's hooks, which report tokens but never a cost (its `usage` says 0): unknown, not
/// free.
pub fn known_cost(source: flightdeck_protocol::TaskSource, usd: Option<f64>) -> Option<String> {
    usd.filter(|_| source != flightdeck_protocol::TaskSource::External).map(format_cost)
}

/// `05-17 09:03` (UTC): a task's time in a list. By hand rather than with chrono's `format`,
/// whose format-string parser is a few kilobytes of bundle for one pattern.
pub fn short_time(at: &chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!("{:02}-{:02} {:02}:{:02}", at.month(), at.day(), at.hour(), at.minute())
}

/// `12.3k`
pub fn format_count(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 10_000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_cost(0.002), "$0.0020");
        assert_eq!(format_cost(12.5), "$12.50");
        // Issue 22: a terminal session showed "$0.0000".
        use flightdeck_protocol::TaskSource;
        assert_eq!(known_cost(TaskSource::External, Some(0.0)), None);
        assert_eq!(known_cost(TaskSource::Local, Some(0.0)).as_deref(), Some("$0.0000"));
        assert_eq!(known_cost(TaskSource::Local, None), None);
        assert_eq!(format_count(950), "950");
        assert_eq!(format_count(12_345), "12.3k");
        assert_eq!(short_time(&"2026-05-17T09:03:59Z".parse().unwrap()), "05-17 09:03");
    }
}
