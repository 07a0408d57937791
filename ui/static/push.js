// The browser's side of "Notify me on this device" (SPEC 13), loaded by the relay's pages as
// /assets/push.js. It registers the service worker (/sw.js, scope /: the offline shell and the
// push handler, which also make the HUD installable), and gives the ui app one small object,
// `window.FlightdeckPush`, whose methods return promises:
//   state()               -> {supported, permission, subscribed, id}
//   enable({kinds, device}) asks for permission, subscribes with the relay's VAPID key and
//                         registers the subscription -> the relay's {subscription}
//   list() / remove(id) / test() -> the relay's answers
// Errors are Error objects whose message is the relay's (or the browser's) own words.
'use strict';
(function () {
  const supported = typeof navigator !== 'undefined' && 'serviceWorker' in navigator &&
    typeof window !== 'undefined' && 'PushManager' in window && 'Notification' in window;
  const STORE_KEY = 'flightdeck.push.subscription';

  function b64urlToBytes(text) {
    const pad = '='.repeat((4 - (text.length % 4)) % 4);
    const raw = atob((text + pad).replace(/-/g, '+').replace(/_/g, '/'));
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
    return out;
  }

  function bytesToB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let raw = '';
    for (let i = 0; i < bytes.length; i += 1) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: {} };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) { /* not JSON */ }
    if (!response.ok) {
      const message = json && json.error && json.error.message ? json.error.message : `The relay answered ${response.status}.`;
      const error = new Error(message);
      error.status = response.status;
      error.code = json && json.error ? json.error.code : undefined;
      throw error;
    }
    return json;
  }

  function register() {
    return navigator.serviceWorker.register('/sw.js', { scope: '/' });
  }

  async function registration() {
    await register();
    return navigator.serviceWorker.ready;
  }

  async function state() {
    if (!supported) return { supported: false, permission: 'unsupported', subscribed: false, id: null };
    const reg = await navigator.serviceWorker.getRegistration('/');
    const sub = reg ? await reg.pushManager.getSubscription() : null;
    const id = sub ? localStorage.getItem(STORE_KEY) : null;
    return { supported: true, permission: Notification.permission, subscribed: !!(sub && id), id };
  }

  async function enable(options) {
    if (!supported) throw new Error('This browser cannot show notifications from a web page (on iPhone and iPad: add the HUD to the home screen first).');
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') {
      throw new Error(permission === 'denied'
        ? 'Notifications are blocked for this site: allow them in the browser\'s site settings, then try again.'
        : 'Notifications were not allowed.');
    }
    const reg = await registration();
    const { publicKey } = await api('GET', '/api/push/key');
    let sub = await reg.pushManager.getSubscription();
    if (sub && sub.options && sub.options.applicationServerKey &&
        bytesToB64url(sub.options.applicationServerKey) !== publicKey) {
      await sub.unsubscribe(); // made for another relay key
      sub = null;
    }
    if (!sub) {
      sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlToBytes(publicKey) });
    }
    const json = sub.toJSON();
    const answer = await api('POST', '/api/push/subscriptions', {
      endpoint: json.endpoint,
      keys: json.keys,
      device: options && options.device ? String(options.device) : undefined,
      kinds: options && options.kinds ? options.kinds : undefined,
    });
    localStorage.setItem(STORE_KEY, answer.subscription.id);
    return answer;
  }

  async function remove(id) {
    const answer = await api('DELETE', `/api/push/subscriptions/${encodeURIComponent(id)}`);
    if (supported && localStorage.getItem(STORE_KEY) === id) {
      localStorage.removeItem(STORE_KEY);
      const reg = await navigator.serviceWorker.getRegistration('/');
      const sub = reg ? await reg.pushManager.getSubscription() : null;
      if (sub) await sub.unsubscribe();
    }
    return answer;
  }

  window.FlightdeckPush = {
    supported,
    state,
    enable,
    remove,
    list: () => api('GET', '/api/push/subscriptions'),
    test: () => api('POST', '/api/push/test'),
  };

  // The worker is what makes the web app installable and usable offline: the dashboard (where
  // the app starts) registers it once the page has loaded, so that installing it never
  // competes with the page's own bundle; `enable` registers it wherever it is called.
  if (supported) {
    const later = () => {
      if (window.DASHBOARD_CONTEXT) register().catch(() => undefined);
    };
    if (document.readyState === 'complete') later();
    else window.addEventListener('load', later, { once: true });
  }
})();
