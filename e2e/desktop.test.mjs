// End-to-end test of the desktop app: the real `flightdeck` binary (with the built ui/dist inside)
// driven through tauri-driver and WebKitWebDriver, under Xvfb when there is no display.
//
//   ui/build.sh && cargo build -p flightdeck-desktop && node --test e2e/desktop.test.mjs
//
// Env: FLIGHTDECK_DESKTOP_BIN (default target/debug/flightdeck). The app gets a temp data dir
// (FLIGHTDECK_DATA_DIR) and a temp git repo (FLIGHTDECK_REPOS). Screenshots go to .ci/artifacts/.
// No sleeps: every wait is a condition polled until a deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, Relay, until } from './lib/relay.mjs';
import { DesktopDriver, have } from './lib/desktop-driver.mjs';

const BIN = process.env.FLIGHTDECK_DESKTOP_BIN || path.join(ROOT, 'target/debug/flightdeck');
const ARTIFACTS = path.join(ROOT, '.ci/artifacts');
const REPO_NAME = 'e2e-desk-repo';

let tmp;
let repo;
let driver;

function git(cwd, ...args) {
  return execFileSync('git', ['-C', cwd, ...args], { encoding: 'utf8' });
}

async function shot(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  fs.writeFileSync(file, await driver.screenshot());
  return file;
}

/** The window's visible text. */
function bodyText() {
  return driver.script('return document.body ? document.body.innerText : "";');
}

before(async () => {
  for (const program of ['tauri-driver', 'WebKitWebDriver', 'dbus-run-session']) {
    assert.ok(have(program), `${program} is needed (run .ci/install)`);
  }
  if (!process.env.DISPLAY) assert.ok(have('xvfb-run'), 'xvfb-run is needed without a display');
  assert.ok(fs.existsSync(BIN), `${BIN} is missing: cargo build -p flightdeck-desktop`);

  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flightdeck-desktop-e2e-'));
  repo = path.join(tmp, REPO_NAME);
  fs.mkdirSync(repo);
  git(repo, 'init', '-q', '-b', 'main');
  git(repo, '-c', 'user.email=e2e@example.com', '-c', 'user.name=E2E', 'commit', '-q', '--allow-empty', '-m', 'first');
  fs.writeFileSync(path.join(repo, 'notes.txt'), 'not committed yet\n');

  driver = await DesktopDriver.start({
    FLIGHTDECK_DATA_DIR: path.join(tmp, 'data'),
    FLIGHTDECK_REPOS: repo,
    // A stand-in Claude Code CLI that asks to run a command (see lib/fake-claude.mjs).
    FLIGHTDECK_CLAUDE_BIN: path.join(ROOT, 'e2e/lib/fake-claude.mjs'),
    // Made by a test when the stand-in notification daemon should click the notification.
    FLIGHTDECK_E2E_CLICK: path.join(tmp, 'click-notification'),
    RUST_LOG: 'info',
  });
  await driver.launch(BIN);
});

after(async () => {
  if (driver) await driver.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('the window shows the watched repo in cockpit mode', async () => {
  await until(
    async () => (await driver.script('return document.querySelector("[data-mode=cockpit]") !== null;')) === true,
    30000,
    'the cockpit to render',
  );
  const text = await until(async () => {
    const t = await bodyText();
    return t.includes(REPO_NAME) && t.includes('main') ? t : null;
  }, 30000, `the repo ${REPO_NAME} in the window`);
  assert.match(text, /untracked|changed|dirty/i, 'the repo panel shows the untracked file');
  // No relay is configured: the header says so instead of claiming a connection.
  await until(async () => /Local only \(no relay\)/.test(await bodyText()), 30000, 'the relay link badge');
  await shot('desktop-repo');
});

test('a shell task started from the window streams its output into the transcript', async () => {
  // The form's selects are yew-controlled: set the value and fire `change` as a user would.
  await driver.script(`
    const select = document.querySelector('#new-task-executor');
    select.value = 'shell';
    select.dispatchEvent(new Event('change', { bubbles: true }));
  `);
  await until(
    async () => (await driver.script('return document.querySelector("#new-task-text").placeholder;')) === 'cargo test',
    10000,
    'the form to switch to a shell command',
  );
  // The task holds until the test lets it go, so the running state is there to be seen.
  const go = path.join(tmp, 'go');
  const textarea = await driver.find('#new-task-text');
  await driver.type(textarea, `echo hello-from-the-desktop-e2e; while [ ! -e ${go} ]; do sleep 0.05; done; ls`);
  const start = await driver.find('form.new-task button[type=submit]');
  await until(
    async () => (await driver.script('return document.querySelector("form.new-task button[type=submit]").disabled;')) === false,
    10000,
    'the Start button to enable',
  );
  await driver.click(start);

  const transcriptText = () =>
    driver.script('const el = document.querySelector("#transcript"); return el ? el.innerText : "";');
  await until(
    async () => (await transcriptText()).includes('hello-from-the-desktop-e2e'),
    30000,
    'the first output line in the transcript',
  );
  // The tray follows live (the app logs each change; Xvfb has no tray host to look at).
  await until(() => driver.logIncludes('tray updated icon=Running'), 10000, 'the tray to show a running task');
  await shot('desktop-task-running');

  fs.writeFileSync(go, '');
  const transcript = await until(async () => {
    const t = await transcriptText();
    return t.includes('notes.txt') ? t : null;
  }, 30000, 'the rest of the output in the transcript');
  assert.match(transcript, /hello-from-the-desktop-e2e/);
  await until(async () => /completed/.test(await bodyText()), 30000, 'the task to complete');
  await until(
    () => /tray updated icon=Idle[^\n]*\n(?![\s\S]*tray updated icon=Running)/.test(driver.logText(100000)),
    10000,
    'the tray to be idle again',
  );
  // A desktop notification said so (seen on the session bus).
  await until(
    () => /member=Notify[\s\S]*string "Task completed"/.test(driver.logText(200000)),
    10000,
    'a "Task completed" notification',
  );
  const file = await shot('desktop-task');
  assert.ok(fs.statSync(file).size > 10000, 'the screenshot has content');

  // The same task, read straight from the agent's database through a command.
  const answer = await driver.request('POST', driver.s('/execute/async'), {
    script: `const done = arguments[arguments.length - 1];
      window.__TAURI_INTERNALS__.invoke('list_tasks', { query: { status: 'completed' } }).then(done, (e) => done({ error: e }));`,
    args: [],
  });
  assert.equal(answer.total, 1, JSON.stringify(answer));
  assert.equal(answer.tasks[0].executor, 'shell');
  assert.equal(answer.tasks[0].repo, REPO_NAME);

  const error = await driver.request('POST', driver.s('/execute/async'), {
    script: `const done = arguments[arguments.length - 1];
      window.__TAURI_INTERNALS__.invoke('remove_repo', { id: 'no-such-repo' }).then(() => done(null), (e) => done(e));`,
    args: [],
  });
  assert.equal(error.code, 'repo_not_found', JSON.stringify(error));
});

test('a Claude task that asks to run a command waits in the window until it is allowed there', async () => {
  await driver.script(`
    const select = document.querySelector('#new-task-executor');
    select.value = 'claude';
    select.dispatchEvent(new Event('change', { bubbles: true }));
  `);
  await until(
    async () => (await driver.script('return document.querySelector("#new-task-text").placeholder;')) === 'What should Claude do?',
    10000,
    'the form to switch to a Claude prompt',
  );
  const textarea = await driver.find('#new-task-text');
  await driver.script('document.querySelector("#new-task-text").value = "";');
  await driver.type(textarea, 'make the file');
  await until(
    async () => (await driver.script('return document.querySelector("form.new-task button[type=submit]").disabled;')) === false,
    10000,
    'the Start button to enable',
  );
  await driver.click(await driver.find('form.new-task button[type=submit]'));
  const claudeTasks = () =>
    driver.request('POST', driver.s('/execute/async'), {
      script: `const done = arguments[arguments.length - 1];
        window.__TAURI_INTERNALS__.invoke('list_tasks', { query: { executor: 'claude' } }).then(done, (e) => done({ error: e }));`,
      args: [],
    });
  await until(async () => {
    const tasks = await claudeTasks();
    return tasks.tasks && tasks.tasks[0] && tasks.tasks[0].status === 'waiting';
  }, 30000, 'the Claude task to wait for a decision');
  // Shown in the window (whatever task it showed before).
  await driver.script(`
    const row = [...document.querySelectorAll('.task-list .task-row')].find((b) => b.innerText.includes('make the file'));
    if (row) row.click();
  `);

  // The request shows in the window with its command and the buttons.
  const card = '[data-testid="permission-card"]';
  await until(
    async () => (await driver.script(`const c = document.querySelector('${card}'); return c ? c.innerText : '';`)).includes('touch made-by-claude.txt'),
    30000,
    'the permission request in the window',
  );
  assert.equal(await driver.script(`return document.querySelectorAll('${card} [data-testid="allow"]').length;`), 1);
  // The tray needs attention, and a notification names the tool (seen on the session bus).
  await until(() => driver.logIncludes('tray updated icon=Attention'), 10000, 'the tray to ask for attention');
  await until(
    () => /member=Notify[\s\S]*string "Claude needs your decision[^"]*"[\s\S]*Bash/.test(driver.logText(300000)),
    10000,
    'a notification naming the tool',
  );
  await shot('desktop-permission');
  assert.ok(!fs.existsSync(path.join(repo, 'made-by-claude.txt')), 'nothing ran before the decision');

  // Look at another task, then click the notification: the window opens on the request again.
  await driver.script(`
    const row = [...document.querySelectorAll('.task-list .task-row')].find((b) => b.innerText.includes('hello-from-the-desktop'));
    row.click();
  `);
  await until(
    async () => (await driver.script(`return document.querySelectorAll('${card}').length;`)) === 0,
    10000,
    'another task to be shown',
  );
  fs.writeFileSync(path.join(tmp, 'click-notification'), '');
  await until(() => driver.logIncludes('notification clicked: opening the window on the task'), 10000, 'the click to reach the app');
  await until(
    async () => (await driver.script(`return document.querySelectorAll('${card} [data-testid="allow"]').length;`)) === 1,
    10000,
    'the window to show the request again',
  );

  await driver.script(`document.querySelector('${card} [data-testid="allow"]').click();`);
  await until(() => fs.existsSync(path.join(repo, 'made-by-claude.txt')), 30000, 'the command to run after Allow');
  await until(
    async () => (await driver.script(`const c = document.querySelector('${card}'); return c ? c.innerText : '';`)).includes('Allowed'),
    30000,
    'the card to show the decision',
  );
  const answer = await until(async () => {
    const tasks = await claudeTasks();
    return tasks.tasks && tasks.tasks[0] && tasks.tasks[0].status === 'completed' ? tasks : null;
  }, 30000, 'the Claude task to complete');
  assert.equal(answer.tasks[0].sessionId, 'fake-session-1', JSON.stringify(answer));
});

test('labels stay beside their controls at the default size', async () => {
  const wrapped = await driver.script(`
    const out = [];
    for (const label of document.querySelectorAll('label')) {
      const r = label.getBoundingClientRect();
      if (r.width <= 1 || label.classList.contains('visually-hidden')) continue;
      const line = parseFloat(getComputedStyle(label).lineHeight) || 20;
      if (r.height > line * 1.5) out.push('two lines: ' + label.textContent);
      const control = label.htmlFor && document.getElementById(label.htmlFor);
      // A label and its control side by side in a row must stay side by side.
      const row = label.parentElement;
      if (control && control.parentElement === row && getComputedStyle(row).display.includes('flex')) {
        const c = control.getBoundingClientRect();
        if (Math.abs((r.top + r.height / 2) - (c.top + c.height / 2)) > 12) out.push('apart from its control: ' + label.textContent);
      }
    }
    return out;
  `);
  assert.deepEqual(wrapped, []);
});

test('turning the relay on asks about earlier tasks (only new ones by default); a watched repo can be removed', async () => {
  const relay = await Relay.create();
  await relay.start();
  try {
    relay.admin('user', 'add', 'alice');
    const agentKey = relay.admin('key', 'create', '--user', 'alice', '--scope', 'agent').match(/fdk_[0-9a-f]+/)[0];
    const ownerKey = relay.admin('key', 'create', '--user', 'alice', '--scope', 'owner').match(/fdk_[0-9a-f]+/)[0];
    // Earlier tests ran tasks on this machine: that is the history in question.
    const local = await driver.script('return document.querySelectorAll("[data-task-id], .task-list li").length;');
    assert.ok(local > 0, 'the window lists earlier local tasks');

    await driver.type(await driver.find('#set-relay-url'), relay.base);
    await driver.type(await driver.find('#set-relay-user'), 'alice');
    await driver.type(await driver.find('#set-key'), agentKey);
    await driver.click(await driver.find('section.settings form button[type=submit]'));
    await until(async () => /Upload your earlier tasks too\?/.test(await bodyText()), 10000, 'the question about earlier tasks');
    // What was typed stays in the fields while the question is open.
    assert.equal(await driver.script('return document.querySelector("#set-relay-url").value;'), relay.base);
    assert.equal(await driver.script('return document.querySelector("#set-relay-user").value;'), 'alice');
    await shot('desktop-upload-question');
    await driver.click(await driver.find('.ask button.primary'));
    await until(async () => /Relay: connected/.test(await bodyText()), 30000, 'the header to say the relay is connected');
    await until(async () => {
      const repos = await relay.api('GET', '/api/cockpit/repos', ownerKey);
      return repos.repos.some((r) => r.name === REPO_NAME);
    }, 30000, 'the repo at the relay');
    const tasks = await relay.api('GET', '/api/cockpit/tasks', ownerKey);
    assert.deepEqual(tasks.tasks.map((t) => t.title), [], 'earlier tasks were uploaded without asking');

    // Stop watching the repo from the settings.
    await driver.click(await driver.find('.paths button.remove'));
    await until(
      async () => (await driver.script('return document.querySelectorAll(".paths li").length;')) === 0,
      10000,
      'the repo to leave the watched list',
    );
    await shot('desktop-repo-removed');
  } finally {
    await relay.stop();
  }
});

test('closing the window hides it and keeps the app; a second launch shows it again', async () => {
  // Its own X display and D-Bus session, so the WebDriver-driven app above is not involved.
  // Each step waits for a condition with a deadline (desktop-window.py polls for 30 s).
  const win = `/usr/bin/python3 ${path.join(ROOT, 'e2e/lib/desktop-window.py')}`;
  const script = `
    set -e
    "$BIN" & app=$!
    ${win} wait viewable Flightdeck
    ${win} close Flightdeck
    ${win} wait unmapped Flightdeck
    kill -0 $app && echo "still running after close"
    "$BIN" && echo "second launch handed over and exited"
    ${win} wait viewable Flightdeck
    kill -0 $app && echo "one instance, window back"
    kill $app; wait $app || true
  `;
  const child = spawn(
    'xvfb-run',
    ['-a', '-s', '-screen 0 1280x800x24', 'dbus-run-session', '--', 'bash', '-c', script],
    {
      env: {
        ...process.env,
        BIN,
        FLIGHTDECK_DATA_DIR: path.join(tmp, 'data-close'),
        FLIGHTDECK_REPOS: repo,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const code = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 120000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  assert.equal(code, 0, output.slice(-3000));
  for (const line of [
    "window 'Flightdeck' is unmapped",
    'still running after close',
    'second launch handed over and exited',
    'one instance, window back',
  ]) {
    assert.ok(output.includes(line), `${line}\n${output.slice(-3000)}`);
  }
});
