//! Renders the tray model of `flightdeck_agent_core::tray` into Tauri's tray icon and menu.
//! What the tray shows is decided there (and tested as data); this only draws it.

use flightdeck_agent_core::tray::{TrayIcon as IconState, TrayItem, TrayModel};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Runtime};

pub const TRAY_ID: &str = "flightdeck";

/// The icon of a state: the @2x renders, which panels scale down crisply.
pub fn icon(state: IconState) -> Image<'static> {
    let bytes: &'static [u8] = match state {
        IconState::Idle => include_bytes!("../../icons/tray-idle@2x.png"),
        IconState::Running => include_bytes!("../../icons/tray-running@2x.png"),
        IconState::Attention => include_bytes!("../../icons/tray-attention@2x.png"),
    };
    Image::from_bytes(bytes).expect("the tray icons are valid PNG files")
}

pub fn menu<R: Runtime, M: Manager<R>>(app: &M, model: &TrayModel) -> tauri::Result<Menu<R>> {
    let menu = Menu::new(app)?;
    for item in &model.items {
        match item {
            TrayItem::Label(text) => menu.append(&MenuItem::new(app, text, false, None::<&str>)?)?,
            TrayItem::Action { action, text, enabled } => {
                menu.append(&MenuItem::with_id(app, action.id(), text, *enabled, None::<&str>)?)?
            }
            TrayItem::Separator => menu.append(&PredefinedMenuItem::separator(app)?)?,
        }
    }
    Ok(menu)
}

/// Creates the tray icon; menu clicks go to `on_action` as menu item ids.
pub fn create<R: Runtime>(
    app: &AppHandle<R>,
    model: &TrayModel,
    on_action: impl Fn(&AppHandle<R>, &str) + Send + Sync + 'static,
) -> tauri::Result<TrayIcon<R>> {
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(model.icon))
        .tooltip(&model.tooltip)
        .menu(&menu(app, model)?)
        .show_menu_on_left_click(true)
        .on_menu_event(move |app, event| on_action(app, event.id().as_ref()))
        .build(app)
}

/// Brings the tray up to date with `model`, touching only what changed since `previous`.
pub fn apply<R: Runtime>(app: &AppHandle<R>, model: &TrayModel, previous: Option<&TrayModel>) -> tauri::Result<()> {
    let Some(tray) = app.tray_by_id(TRAY_ID) else { return Ok(()) };
    if previous.map(|p| p.icon) != Some(model.icon) {
        tray.set_icon(Some(icon(model.icon)))?;
    }
    if previous.map(|p| &p.tooltip) != Some(&model.tooltip) {
        tray.set_tooltip(Some(&model.tooltip))?;
    }
    if previous.map(|p| &p.items) != Some(&model.items) {
        tray.set_menu(Some(menu(app, model)?))?;
    }
    Ok(())
}
