use flightdeck_protocol::api::HudSettings;
use web_sys::HtmlInputElement;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct SettingsTogglesProps {
    pub settings: Option<HudSettings>,
    pub on_change: Callback<HudSettings>,
}

/// The owner's switches: whether the HUD is public, and whether it may be embedded.
#[function_component(SettingsToggles)]
pub fn settings_toggles(props: &SettingsTogglesProps) -> Html {
    let Some(settings) = props.settings else {
        return html! { <section class="panel settings"><h3>{ "Sharing" }</h3><p class="muted">{ "Loading…" }</p></section> };
    };
    let toggle = |apply: fn(&mut HudSettings, bool)| {
        let on_change = props.on_change.clone();
        Callback::from(move |e: Event| {
            let mut next = settings;
            apply(&mut next, e.target_unchecked_into::<HtmlInputElement>().checked());
            on_change.emit(next);
        })
    };
    html! {
        <section class="panel settings" aria-label="Sharing">
            <h3>{ "Sharing" }</h3>
            <div class="switch">
                <input type="checkbox" id="setting-public" role="switch" checked={settings.public}
                       onchange={toggle(|s, v| s.public = v)} />
                <label for="setting-public">{ "Public: anyone with the link can watch" }</label>
            </div>
            <div class="switch">
                <input type="checkbox" id="setting-embed" role="switch" checked={settings.embed_allowed}
                       onchange={toggle(|s, v| s.embed_allowed = v)} />
                <label for="setting-embed">{ "Allow embedding (/embed/…)" }</label>
            </div>
        </section>
    }
}
