// End-to-end tests of push (SPEC 13) with real parts: the relay binary, headless Chromium
// (Debian's, driven by playwright-core), the real flightdeck-agent running the real Claude Code
// CLI against a scripted Messages API, and a push service stand-in (lib/push-service.mjs) that
// checks VAPID and decrypts RFC 8291 as a browser vendor's service and a browser would.
//
// What no machine here can do is the browser's registration with its vendor's push service
// (Chromium asks Google's servers for an endpoint). That one call, PushManager.subscribe, is
// answered in the page with an endpoint of the stand-in and keys the test made; everything
// after it is real: the relay sends to the stand-in, which decrypts, and the decrypted
// message is delivered to the page's real service worker through the DevTools protocol
// (ServiceWorker.deliverPushMessage), exactly where a browser delivers it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { Relay, ROOT, until } from './lib/relay.mjs';
import { PushService } from './lib/push-service.mjs';
import { ScriptedApi, bashTurn, textTurn } from './lib/scripted-api.mjs';

const require = createRequire(path.join(ROOT, 'tools/package.json'));
const { chromium } = require('playwright-core');

const ARTIFACTS = path.join(ROOT, '.ci/artifacts');
const AGENT_BIN = process.env.FLIGHTDECK_AGENT_BIN || path.join(ROOT, 'target/debug/flightdeck-agent');
const CLAUDE_BIN = process.env.FLIGHTDECK_CLAUDE_BIN || path.join(ROOT, 'tools/node_modules/.bin/claude');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run'];

// The stand-in push service listens on 127.0.0.1 over http: allowed by this setting only.
process.env.FLIGHTDECK_RELAY_PUSH_ALLOW_PRIVATE_ENDPOINTS = '1';

let relay;
let browser;
let service;
let api;
let agent;
let agentLog = '';
let repoDir;
const keys = {};

before(async () => {
  relay = await Relay.create();
  relay.admin('user', 'add', 'alice');
  keys.agent = relay.admin('key', 'create', '--user', 'alice', '--scope', 'agent');
  keys.owner = relay.admin('key', 'create', '--user', 'alice', '--scope', 'owner');
  await relay.start();
  service = await PushService.start();
  service.vapidKey = (await relay.api('GET', '/api/push/key', keys.owner)).publicKey;
  // Two Claude tasks, each asking to run one command and then saying it is done.
  api = await ScriptedApi.start([
    bashTurn('msg_a1', ['I will make the file.'], 'toolu_a', 'touch made-by-push.txt'),
    textTurn('msg_a2', ['Made the file.']),
    bashTurn('msg_b1', ['I will make another file.'], 'toolu_b', 'touch decided-elsewhere.txt'),
    textTurn('msg_b2', ['Made the other file.']),
  ]);

  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'fd-e2e-push-'));
  repoDir = path.join(parent, 'pushdemo');
  fs.mkdirSync(repoDir);
  const git = (...args) => execFileSync('git', args, { cwd: repoDir, stdio: 'pipe' });
  git('init', '-q', '-b', 'main');
  git('config', 'user.email', 'e2e@example.com');
  git('config', 'user.name', 'e2e');
  fs.writeFileSync(path.join(repoDir, 'README.md'), '# push demo\n');
  git('add', '.');
  git('commit', '-qm', 'start');
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'fd-e2e-push-home-'));
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('FLIGHTDECK_')) delete env[k];
  Object.assign(env, {
    FLIGHTDECK_AGENT_KEY: keys.agent,
    FLIGHTDECK_CLAUDE_BIN: CLAUDE_BIN,
    ANTHROPIC_BASE_URL: api.url,
    ANTHROPIC_API_KEY: 'test',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    HOME: home,
    RUST_LOG: 'warn',
  });
  agent = spawn(AGENT_BIN, ['run', '--relay', relay.base, '--repo', repoDir, '--agent-id', 'e2e-push',
    '--data-dir', path.join(parent, 'agent-data')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  agent.stderr.on('data', (d) => { agentLog += d.toString(); });
  await until(async () => {
    if (agent.exitCode !== null) throw new Error(`the agent exited: ${agentLog}`);
    return (await relay.api('GET', '/api/cockpit/repos', keys.owner)).repos.find((r) => r.name === 'pushdemo');
  }, 30000, 'the agent\'s repo on the relay');
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

after(async () => {
  if (agent && agent.exitCode === null) agent.kill('SIGTERM');
  await browser?.close();
  await service?.close();
  await api?.close();
  await relay?.stop();
});

/** A logged-in owner's browser context that may show notifications. */
async function ownerContext(subscription) {
  const context = await browser.newContext({ baseURL: relay.base, viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(['notifications'], { origin: relay.base });
  if (subscription) {
    // The one stand-in (see the header): the vendor's registration answers with the push
    // service stand-in's endpoint and the keys this test made.
    await context.addInitScript((json) => {
      const sub = {
        endpoint: json.endpoint,
        expirationTime: null,
        options: { userVisibleOnly: true, applicationServerKey: null },
        toJSON: () => json,
        getKey: () => null,
        unsubscribe: async () => { window.__fdUnsubscribed = true; return true; },
      };
      let subscribed = false;
      PushManager.prototype.subscribe = async function subscribe(options) {
        if (!options || !options.userVisibleOnly || !options.applicationServerKey) throw new Error('subscribe without a VAPID key');
        sub.options.applicationServerKey = options.applicationServerKey.buffer || options.applicationServerKey;
        subscribed = true;
        return sub;
      };
      PushManager.prototype.getSubscription = async function getSubscription() {
        return subscribed ? sub : null;
      };
    }, subscription.json);
  }
  const r = await context.request.post('/api/login', { data: { token: keys.owner } });
  assert.equal(r.status(), 200, await r.text());
  return context;
}

/**
 * Delivers push messages to the page's service worker as a push service would: the worker is
 * started first and each delivery waits until it runs. (Chromium stops an idle worker after 30 s,
 * and the second notification of the push test, delivered after Claude's first turn, failed to
 * show once in a few runs; a delivery into a stopping worker is the one cause found.)
 */
async function pushDeliverer(cdp) {
  const registrations = new Map();
  const versions = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations: list }) => {
    for (const r of list) registrations.set(r.scopeURL, r);
  });
  cdp.on('ServiceWorker.workerVersionUpdated', ({ versions: list }) => {
    for (const v of list) versions.set(v.versionId, v);
  });
  await cdp.send('ServiceWorker.enable');
  const scopeURL = `${relay.base}/`;
  const reg = await until(() => registrations.get(scopeURL), 10000, 'the service worker registration');
  const running = () => [...versions.values()].some((v) => v.registrationId === reg.registrationId
    && v.status === 'activated' && v.runningStatus === 'running');
  return async (payload) => {
    if (!running()) {
      await cdp.send('ServiceWorker.startWorker', { scopeURL });
      await until(() => running(), 10000, 'the service worker to run');
    }
    await cdp.send('ServiceWorker.deliverPushMessage',
      { origin: relay.base, registrationId: reg.registrationId, data: JSON.stringify(payload) });
  };
}

async function notifications(page) {
  return page.evaluate(async () => {
    const reg = await navigator.serviceWorker.ready;
    const list = await reg.getNotifications();
    return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, actions: (n.actions || []).map((a) => a.action), data: n.data }));
  });
}

async function taskStatus(id) {
  return (await relay.api('GET', `/api/cockpit/tasks/${id}`, keys.owner)).task.status;
}

test('the dashboard is an installable web app: manifest, service worker, icons', async () => {
  // A browser profile of its own: Chromium never offers to install from an incognito context,
  // which is what `browser.newContext()` makes.
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'fd-e2e-push-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS, baseURL: relay.base,
  });
  const login = await context.request.post('/api/login', { data: { token: keys.owner } });
  assert.equal(login.status(), 200, await login.text());
  const page = context.pages()[0] || await context.newPage();
  await page.goto('/hud/alice');
  await page.locator('[data-testid="push-panel"]').waitFor({ timeout: 15000 });
  await page.evaluate(() => navigator.serviceWorker.ready);
  const cdp = await context.newCDPSession(page);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(installabilityErrors, [], JSON.stringify(installabilityErrors));
  const manifest = await (await context.request.get('/manifest.webmanifest')).json();
  assert.equal(manifest.start_url, '/');
  assert.equal(manifest.display, 'standalone');
  for (const size of ['192x192', '512x512']) {
    const icon = manifest.icons.find((i) => i.sizes === size);
    assert.ok(icon, `an icon of ${size}`);
    const r = await context.request.get(icon.src);
    assert.equal(r.status(), 200);
    assert.equal(r.headers()['content-type'], 'image/png');
  }
  const sw = await context.request.get('/sw.js');
  assert.equal(sw.status(), 200);
  assert.match(sw.headers()['content-type'], /javascript/);
  // Offline, a page of the relay still opens (the shell), saying the relay is out of reach.
  await context.setOffline(true);
  const offline = await context.newPage();
  await offline.goto(`${relay.base}/hud/alice`).catch(() => undefined);
  await offline.locator('h1', { hasText: 'Offline' }).waitFor({ timeout: 10000 });
  await context.setOffline(false);
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
});

test('subscribe on the dashboard, get the push, Allow from the notification: the real Claude task continues', async () => {
  const phone = service.subscribe();
  const context = await ownerContext(phone);
  const page = await context.newPage();
  await page.goto('/hud/alice');
  const panel = page.locator('[data-testid="push-panel"]');
  await panel.waitFor({ timeout: 15000 });
  await panel.locator('[data-testid="push-device-name"]').fill('Test phone');
  await panel.locator('[data-testid="push-enable"]').click();
  await panel.locator('[data-testid="push-note"]').waitFor({ timeout: 10000 });
  const device = panel.locator('[data-testid="push-device"]', { hasText: 'Test phone' });
  await device.waitFor({ timeout: 10000 });
  assert.match(await device.innerText(), /this device/);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await panel.screenshot({ path: path.join(ARTIFACTS, 'push-panel.png') });
  const listed = (await relay.api('GET', '/api/push/subscriptions', keys.owner)).subscriptions;
  assert.equal(listed.length, 1);
  assert.deepEqual([...listed[0].kinds].sort(), ['completed', 'failed', 'needs_input']);
  // Another device of the same owner, for the `resolved` message.
  const laptop = service.subscribe();
  await relay.api('POST', '/api/push/subscriptions', keys.owner, { ...laptop.json, device: 'Laptop', kinds: ['needs_input'] });

  const cdp = await context.newCDPSession(page);
  const deliver = await pushDeliverer(cdp);

  // A real Claude task asks to run a command: the phone is told, with Allow and Deny.
  const { task } = await relay.api('POST', '/api/cockpit/tasks', keys.owner,
    { executor: 'claude', repo: 'pushdemo', payload: { prompt: 'Make the file made-by-push.txt' } });
  const asked = await until(() => service.messagesFor(phone.id).find((m) => m.payload.kind === 'needs_input'),
    60000, `the needs_input push (errors: ${service.errors.join('; ')}; agent: ${agentLog})`);
  const p = asked.payload;
  assert.equal(p.v, 1);
  assert.equal(p.taskId, task.id);
  assert.equal(p.repo, 'pushdemo');
  assert.equal(p.user, 'alice');
  assert.match(p.body, /touch made-by-push\.txt/);
  assert.ok(p.requestId && p.actionToken, 'a request id and a token');
  assert.deepEqual(p.actions.map((a) => a.action), ['allow', 'deny']);
  assert.ok(p.url.includes('/hud/alice/pushdemo'), p.url);
  assert.equal(asked.headers.urgency, 'high');
  assert.ok(asked.headers.topic, 'a Topic collapses repeats of the request');
  assert.ok(Number(asked.headers.ttl) > 0 && Number(asked.headers.ttl) <= 86400, asked.headers.ttl);
  assert.equal(await taskStatus(task.id), 'waiting');

  // The browser decrypted it; its service worker shows it.
  await deliver(p);
  const [shown] = await until(async () => {
    const list = await notifications(page);
    return list.length ? list : null;
  }, 10000, 'the notification');
  assert.equal(shown.title, p.title);
  assert.equal(shown.body, p.body);
  assert.equal(shown.tag, p.requestId);
  assert.deepEqual(shown.actions, ['allow', 'deny']);

  // Allow, exactly as a tap on the action runs it in the worker.
  const worker = await until(() => context.serviceWorkers().find((w) => w.url().endsWith('/sw.js')), 10000, 'the worker');
  const result = await worker.evaluate(async (tag) => {
    const [n] = await self.registration.getNotifications({ tag });
    return self.handleNotificationClick(n, 'allow');
  }, p.requestId);
  assert.equal(result.ok, true, JSON.stringify(result));
  await until(async () => (await taskStatus(task.id)) === 'completed', 60000, `the task to finish: ${agentLog}`);
  assert.ok(fs.existsSync(path.join(repoDir, 'made-by-push.txt')), 'Claude ran the allowed command');
  const { events } = await relay.api('GET', `/api/cockpit/tasks/${task.id}/events?after=0&limit=500`, keys.owner);
  const decision = events.map((e) => e.event).find((e) => e.kind === 'permission_decision');
  assert.equal(decision.decidedBy, 'push');
  assert.equal(decision.behavior, 'allow');
  assert.equal((await notifications(page)).length, 0, 'the tapped notification is closed');
  // The laptop is told it was decided, and the token is spent.
  await until(() => service.messagesFor(laptop.id).find((m) => m.payload.kind === 'resolved' && m.payload.requestId === p.requestId),
    10000, 'the resolved push to the other device');
  const again = await fetch(`${relay.base}/api/push/act`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: p.actionToken, behavior: 'deny' }) });
  assert.equal(again.status, 403);
  // The phone asked for completions too.
  await until(() => service.messagesFor(phone.id).find((m) => m.payload.kind === 'completed' && m.payload.taskId === task.id),
    10000, 'the completed push');

  // A second request decided elsewhere (REST): the notification on the phone closes.
  const second = (await relay.api('POST', '/api/cockpit/tasks', keys.owner,
    { executor: 'claude', repo: 'pushdemo', payload: { prompt: 'Make the other file' } })).task;
  const asked2 = await until(() => service.messagesFor(phone.id).find((m) => m.payload.kind === 'needs_input' && m.payload.taskId === second.id),
    60000, 'the second needs_input push');
  await deliver(asked2.payload);
  await until(async () => (await notifications(page)).length === 1, 10000, 'the second notification');
  // A tap on a body opens its url: the HUD shows that task (the first one here, while the
  // repo's current task is the second).
  const opened = await context.newPage();
  await opened.goto(p.url);
  const card = opened.locator('#transcript [data-testid="permission-card"]');
  await card.waitFor({ timeout: 15000 });
  assert.equal(await card.locator('[data-testid="perm-command"]').innerText(), 'touch made-by-push.txt');
  await opened.close();
  await relay.api('POST', `/api/cockpit/tasks/${second.id}/permissions/${asked2.payload.requestId}`, keys.owner, { behavior: 'allow' });
  const resolved = await until(() => service.messagesFor(phone.id).find((m) => m.payload.kind === 'resolved' && m.payload.requestId === asked2.payload.requestId),
    10000, 'the resolved push');
  await deliver(resolved.payload);
  await until(async () => (await notifications(page)).length === 0, 10000, 'the notification decided elsewhere to close');
  await until(async () => (await taskStatus(second.id)) === 'completed', 60000, 'the second task to finish');
  // The spent token of a request decided elsewhere changes nothing.
  const late = await fetch(`${relay.base}/api/push/act`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: asked2.payload.actionToken, behavior: 'deny' }) });
  assert.equal(late.status, 403);
  assert.deepEqual(service.errors, []);

  // Remove the phone from the dashboard: the relay forgets it, the browser unsubscribes.
  await device.getByRole('button', { name: /Remove/ }).click();
  await until(async () => (await relay.api('GET', '/api/push/subscriptions', keys.owner)).subscriptions.length === 1, 10000, 'the removal');
  // The page unsubscribes after the relay answered, then says so.
  await panel.locator('[data-testid="push-note"]', { hasText: 'Removed.' }).waitFor({ timeout: 10000 });
  assert.equal(await page.evaluate(() => window.__fdUnsubscribed === true), true);
  await until(async () => (await panel.locator('[data-testid="push-device"]').count()) === 1, 10000, 'the list without the phone');
  assert.match(await panel.locator('[data-testid="push-device"]').innerText(), /Laptop/);
  await context.close();
});
