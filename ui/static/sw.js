// Flightdeck's service worker (SPEC 13), served by the relay at /sw.js with scope /.
//
// - Offline shell: pages come from the network (with navigation preload); when the network is
//   gone, a page says the relay cannot be reached. Nothing else is cached or passed through.
// - Push: each message is the relay's JSON payload (decrypted by the browser). `needs_input`
//   shows Allow/Deny actions (where the platform shows actions) and is tagged with its request
//   id; `resolved` closes the notification of that request on this device (it was decided
//   elsewhere). A tap on an action posts the notification's one-use token to /api/push/act; a
//   tap on the body focuses a window of the relay on the notification's url, or opens one.
'use strict';

const CACHE = 'flightdeck-shell-v2';
// What the offline page needs, kept at install. Nothing else goes through this worker: a page
// and its bundle (a megabyte of wasm) load straight from the relay, as fast as without a worker.
const SHELL = ['/assets/style.css', '/assets/web-192.png'];
const OFFLINE_PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Offline · Flightdeck</title>
<link rel="stylesheet" href="/assets/style.css"></head><body><main class="error-page">
<h1>Offline</h1><p>This device cannot reach your Flightdeck relay right now. The page reloads when you try again.</p>
<p><a href="">Try again</a></p></main></body></html>`;

self.addEventListener('install', (event) => {
  // A missing file (a relay without a built bundle) must not keep the worker from installing.
  event.waitUntil(caches.open(CACHE)
    .then((cache) => Promise.all(SHELL.map((url) => cache.add(url).catch(() => undefined))))
    .then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(Promise.all([
    caches.keys().then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n)))),
    // The browser starts a navigation's request while this worker wakes up.
    self.registration.navigationPreload ? self.registration.navigationPreload.enable() : undefined,
  ]).then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (request.mode === 'navigate') {
    event.respondWith((async () => {
      try {
        return (await event.preloadResponse) || await fetch(request);
      } catch (_) {
        return new Response(OFFLINE_PAGE, { status: 503, headers: { 'Content-Type': 'text/html; charset=utf-8' } });
      }
    })());
    return;
  }
  if (SHELL.includes(url.pathname)) {
    event.respondWith(fetch(request).catch(() => caches.match(request).then((hit) => hit || Response.error())));
  }
  // Anything else: the browser fetches it itself.
});

/** Shows one push message (the relay's payload), or closes what a `resolved` one names. */
async function showPush(p) {
  if (p.kind === 'resolved') {
    const open = await self.registration.getNotifications(p.requestId ? { tag: p.requestId } : undefined);
    for (const n of open) {
      if (!p.requestId || (n.data && n.data.requestId === p.requestId)) n.close();
    }
    return;
  }
  const options = {
    body: p.body || '',
    tag: p.requestId || p.taskId || undefined,
    data: p,
    icon: '/assets/web-192.png',
    badge: '/assets/web-192.png',
    timestamp: Date.now(),
    requireInteraction: p.kind === 'needs_input',
    renotify: p.kind === 'needs_input',
  };
  if (p.kind === 'needs_input' && Array.isArray(p.actions) && p.actionToken) {
    options.actions = p.actions.map((a) => ({ action: a.action, title: a.title }));
  }
  await self.registration.showNotification(p.title || 'Flightdeck', options);
}

self.addEventListener('push', (event) => {
  let payload;
  try {
    payload = event.data ? event.data.json() : null;
  } catch (_) {
    payload = null;
  }
  if (!payload || typeof payload !== 'object') {
    payload = { v: 1, kind: 'message', title: 'Flightdeck', body: event.data ? event.data.text() : '' };
  }
  event.waitUntil(showPush(payload));
});

/** Focuses a window of this relay showing `url`, or opens one. */
async function openUrl(url) {
  const target = new URL(url || '/', self.location.origin).href;
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const client of windows) {
    if (client.url === target && 'focus' in client) return client.focus();
  }
  for (const client of windows) {
    if ('navigate' in client && new URL(client.url).origin === self.location.origin) {
      await client.focus();
      return client.navigate(target);
    }
  }
  return self.clients.openWindow(target);
}

/**
 * What a tap on a notification does: `allow` or `deny` decides the request with the
 * notification's one-use token (no session needed); anything else opens its url. When the
 * decision is refused (already decided, token expired), a notification says so and a tap on it
 * opens the request. Named on `self` so a test can run exactly what a tap runs.
 */
async function handleNotificationClick(notification, action) {
  const p = notification.data || {};
  notification.close();
  if ((action === 'allow' || action === 'deny') && p.actionToken) {
    let response;
    try {
      response = await fetch('/api/push/act', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token: p.actionToken, behavior: action }),
        credentials: 'omit',
      });
    } catch (_) {
      response = null;
    }
    if (response && response.ok) return { ok: true, status: response.status };
    let message = response ? `The relay answered ${response.status}.` : 'The relay could not be reached.';
    try {
      const body = response ? await response.json() : null;
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (_) { /* keep the status */ }
    await self.registration.showNotification('Could not decide from the notification', {
      body: `${message} Open the task to decide there.`,
      tag: `${p.requestId || p.taskId || 'flightdeck'}-failed`,
      data: { ...p, actionToken: undefined, actions: undefined },
      icon: '/assets/web-192.png',
    });
    return { ok: false, status: response ? response.status : 0, message };
  }
  await openUrl(p.url);
  return { ok: true, opened: p.url || '/' };
}
self.handleNotificationClick = handleNotificationClick;

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(handleNotificationClick(event.notification, event.action));
});
