// Starts the real relay binary for the tests: a temp data dir, a free port, admin CLI for users and keys.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const RELAY_BIN = process.env.FLIGHTDECK_RELAY_BIN || path.join(ROOT, 'target/debug/flightdeck-relay');
export const UI_DIST = path.join(ROOT, 'ui/dist');

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function until(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export class Relay {
  constructor(dataDir, port) {
    this.dataDir = dataDir;
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.proc = null;
    this.log = '';
  }

  /** `toml`: a config file for the relay (e.g. a `[runner]` table); `{dataDir}` in it is replaced. */
  static async create({ toml } = {}) {
    if (!fs.existsSync(RELAY_BIN)) throw new Error(`relay binary not found at ${RELAY_BIN}; build it or set FLIGHTDECK_RELAY_BIN`);
    if (!fs.existsSync(path.join(UI_DIST, 'flightdeck_ui.js'))) throw new Error('ui/dist is not built: run ui/build.sh');
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fd-e2e-'));
    const relay = new Relay(dataDir, await freePort());
    if (toml) {
      relay.config = path.join(dataDir, 'relay.toml');
      fs.writeFileSync(relay.config, toml.replaceAll('{dataDir}', dataDir));
    }
    return relay;
  }

  admin(...args) {
    return execFileSync(RELAY_BIN, ['--data-dir', this.dataDir, ...args], {
      encoding: 'utf8',
      env: this.#env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  }

  #env() {
    // The bundle is read from ui/dist whatever the build profile of the relay.
    // The relay reads every FLIGHTDECK_RELAY_* variable as a setting and refuses unknown ones,
    // so the tests' own FLIGHTDECK_RELAY_BIN must not reach it.
    const env = { ...process.env, FLIGHTDECK_RELAY_UI_DIR: UI_DIST, RUST_LOG: process.env.RUST_LOG || 'warn' };
    delete env.FLIGHTDECK_RELAY_BIN;
    if (this.config) env.FLIGHTDECK_RELAY_CONFIG = this.config;
    return env;
  }

  async start() {
    this.proc = spawn(RELAY_BIN, ['--data-dir', this.dataDir, 'serve', '--bind', `127.0.0.1:${this.port}`], {
      env: this.#env(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.proc.stderr.on('data', (d) => {
      this.log += d.toString();
    });
    const proc = this.proc;
    await until(async () => {
      if (proc.exitCode !== null) throw new Error(`relay exited: ${this.log}`);
      const r = await fetch(`${this.base}/healthz`);
      return r.ok;
    }, 20000, 'the relay to answer /healthz');
  }

  /** SIGKILL: no graceful shutdown, as in a crash. */
  async kill() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  }

  async stop() {
    await this.kill();
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A REST call with a key. */
  async api(method, p, key, body) {
    const r = await fetch(`${this.base}${p}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${p}: HTTP ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
}
