// `./dev run` on a machine without a display, as a new user meets it: scripts/headless.sh (what
// `./dev run` runs there) started in a fresh git repo with a fresh HOME and data dir, a PATH
// without any Claude Code CLI on it, and no FLIGHTDECK_CLAUDE_BIN: the Claude Code CLI the agent
// runs must be the one `./dev` installs into tools/. A task started from the HUD's route
// (`POST /api/hud/start`) runs the real CLI against a scripted Messages API.
//
// Env: like the other e2e tests; the script builds the relay and the agent itself (cargo).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { ROOT, until, freePort } from './lib/relay.mjs';
import { ScriptedApi, textTurn } from './lib/scripted-api.mjs';

const TOOLS_BIN = path.join(ROOT, 'tools/node_modules/.bin');

/** A PATH as a new user has it: without tools/node_modules/.bin or any other `claude`. */
function userPath() {
  return (process.env.PATH || '/usr/bin:/bin')
    .split(':')
    .filter((dir) => dir && path.resolve(dir) !== TOOLS_BIN && !fs.existsSync(path.join(dir, 'claude')))
    .join(':');
}

/** Starts scripts/headless.sh in `repo`; resolves once it printed its HUD URL. */
async function devRun({ repo, home, data, port, api, env = {} }) {
  const childEnv = { ...process.env };
  delete childEnv.FLIGHTDECK_CLAUDE_BIN;
  delete childEnv.FLIGHTDECK_AGENT_CLAUDE_BIN;
  Object.assign(childEnv, { PATH: userPath(), HOME: home, XDG_DATA_HOME: data, USER: 'alice',
    FLIGHTDECK_START_DIR: repo, FLIGHTDECK_PORT: String(port), ANTHROPIC_BASE_URL: api.url,
    ANTHROPIC_API_KEY: 'test', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', ...env });
  // Cargo and rustup live in the real HOME; the fresh HOME is the agent's and Claude's.
  childEnv.CARGO_HOME = process.env.CARGO_HOME || path.join(os.homedir(), '.cargo');
  childEnv.RUSTUP_HOME = process.env.RUSTUP_HOME || path.join(os.homedir(), '.rustup');
  childEnv.PATH = `${path.join(childEnv.CARGO_HOME, 'bin')}:${childEnv.PATH}`;
  const child = spawn('bash', [path.join(ROOT, 'scripts/headless.sh')], { cwd: repo, env: childEnv, detached: true,
    stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const stop = async () => {
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
    await exited;
  };
  try {
    // The first build of the two binaries may take minutes on a cold target dir.
    await until(() => {
      if (child.exitCode !== null) throw new Error(`headless.sh exited ${child.exitCode}:\n${out}`);
      return out.includes('Flightdeck is running');
    }, 20 * 60 * 1000, 'headless.sh to print its HUD URL');
  } catch (e) {
    await stop();
    throw e;
  }
  const keys = Object.fromEntries(fs.readFileSync(path.join(data, 'flightdeck-dev/keys.env'), 'utf8')
    .trim().split('\n').map((l) => l.split('=')));
  return { stop, keys, output: () => out };
}

function gitRepo(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const git = (...args) => execFileSync('git', args, { cwd: dir, stdio: 'pipe' });
  git('init', '-q', '-b', 'main');
  git('-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '--allow-empty', '-m', 'start');
  return dir;
}

async function api(port, method, route, key, body) {
  const r = await fetch(`http://127.0.0.1:${port}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

/** Starts a Claude task from the HUD's route once the agent's repo is known; its id. */
async function startFromHud(port, owner, prompt) {
  await until(async () => (await api(port, 'GET', '/api/cockpit/repos', owner)).body?.repos?.some((r) => r.name === 'project'),
    60000, 'the relay to list the agent\'s repo');
  const started = await api(port, 'POST', '/api/hud/start', owner, { repo: 'alice/project', prompt });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  return started.body.sessionId;
}

async function ended(port, owner, id) {
  return until(async () => {
    const { body } = await api(port, 'GET', `/api/cockpit/tasks/${id}`, owner);
    return ['completed', 'failed', 'cancelled', 'interrupted'].includes(body?.task?.status) && body.task;
  }, 120000, `task ${id} to end`);
}

async function events(port, owner, id) {
  return (await api(port, 'GET', `/api/cockpit/tasks/${id}/events?after=0&limit=500`, owner)).body.events;
}

test('./dev run: a Claude task started from the HUD runs the Claude Code CLI ./dev installed in tools/', async () => {
  assert.ok(fs.existsSync(path.join(TOOLS_BIN, 'claude')), 'the Claude Code CLI is not installed: run `npm ci` in tools/');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fd-dev-run-'));
  const llm = await ScriptedApi.start([textTurn('msg_1', ['Hello from the dev run.'])]);
  const port = await freePort();
  const run = await devRun({ repo: gitRepo(path.join(tmp, 'project')), home: path.join(tmp, 'home'),
    data: path.join(tmp, 'data'), port, api: llm });
  try {
    const id = await startFromHud(port, run.keys.OWNER_KEY, 'say hello');
    const task = await ended(port, run.keys.OWNER_KEY, id);
    const transcript = await events(port, run.keys.OWNER_KEY, id);
    assert.equal(task.status, 'completed', `${JSON.stringify(task)}\n${JSON.stringify(transcript)}\n${run.output()}`);
    const said = transcript.filter((e) => e.event.kind === 'chunk').map((e) => e.event.text).join('');
    assert.match(said, /Hello from the dev run\./);
    assert.ok(task.sessionId, 'the Claude session started, so the task can be continued');
  } finally {
    await run.stop();
    await llm.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('./dev run: a Claude task whose CLI cannot start ends failed at the relay, with why, and cannot be replied to', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fd-dev-run-'));
  const llm = await ScriptedApi.start([]);
  const port = await freePort();
  const missing = path.join(tmp, 'no-such-claude');
  const run = await devRun({ repo: gitRepo(path.join(tmp, 'project')), home: path.join(tmp, 'home'),
    data: path.join(tmp, 'data'), port, api: llm, env: { FLIGHTDECK_AGENT_CLAUDE_BIN: missing } });
  try {
    const owner = run.keys.OWNER_KEY;
    const id = await startFromHud(port, owner, 'say hello');
    const task = await ended(port, owner, id);
    assert.equal(task.status, 'failed', JSON.stringify(task));
    assert.match(task.error, /Claude Code CLI not found/);
    // Nothing at the relay still says it waits to run: the task, the HUD's status and the last
    // status event all say failed.
    const transcript = await events(port, owner, id);
    const statuses = transcript.filter((e) => e.event.kind === 'status').map((e) => e.event.status);
    assert.equal(statuses.at(-1), 'failed', JSON.stringify(transcript));
    const session = await api(port, 'GET', '/api/hud/session?repo=alice/project', owner);
    assert.equal(session.body.status, 'failed', JSON.stringify(session.body));
    const reply = await api(port, 'POST', `/api/cockpit/tasks/${id}/reply`, owner, { prompt: 'go on' });
    assert.equal(reply.status, 409, JSON.stringify(reply.body));
    assert.equal(reply.body.error.code, 'not_resumable');
  } finally {
    await run.stop();
    await llm.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
