use std::rc::Rc;

use yew::prelude::*;

use crate::realtime::{Feed, FeedConfig, PollTarget};
use crate::state::Store;

/// Starts the live feed for `config` (again when it changes; stopped on unmount), keeps the
/// polling fallback pointed at the shown task, and returns the `subscribe` callback.
#[hook]
pub fn use_feed(config: FeedConfig, store: &UseReducerHandle<Store>) -> Callback<String> {
    let feed = use_mut_ref(|| None::<Feed>);
    let poll_target: PollTarget = use_mut_ref(|| None);
    {
        let feed = feed.clone();
        let poll_target = poll_target.clone();
        let dispatcher = store.dispatcher();
        use_effect_with(config, move |config| {
            let on_action = Callback::from(move |action| dispatcher.dispatch(action));
            *feed.borrow_mut() = Some(Feed::start(config.clone(), on_action, poll_target));
            move || {
                feed.borrow_mut().take();
            }
        });
    }
    // A plain write, no render: the poll loop reads it when it wakes up.
    *poll_target.borrow_mut() =
        store.shown_task_id().map(|id| (id.to_string(), store.transcript(id).map_or(0, |t| t.last_seq)));
    let subscribe = use_memo((), move |_| {
        Callback::from(move |topic: String| {
            if let Some(feed) = feed.borrow().as_ref() {
                feed.subscribe(vec![topic]);
            }
        })
    });
    (*Rc::clone(&subscribe)).clone()
}
