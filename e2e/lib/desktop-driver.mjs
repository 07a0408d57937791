// tauri-driver (in front of WebKitWebDriver) for the desktop app, and a small W3C WebDriver
// client over plain fetch. When there is no DISPLAY the driver runs under Xvfb; it always runs in
// its own D-Bus session, so the app's single-instance lock never meets a Flightdeck the user runs.
import { spawn, execFileSync } from 'node:child_process';
import { freePort, until } from './relay.mjs';

/** Whether a program is on PATH. */
export function have(program) {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export class DesktopDriver {
  /** Starts tauri-driver; `env` goes to it and so to WebKitWebDriver and the app it launches. */
  static async start(env = {}) {
    const port = await freePort();
    const nativePort = await freePort();
    const driverArgs = ['tauri-driver', '--port', String(port), '--native-port', String(nativePort)];
    // dbus-monitor prints the desktop notifications the app sends, so tests can see them in the
    // log; a stand-in notification daemon answers them and clicks one when a test asks
    // (lib/fake-notifications.py, FLIGHTDECK_E2E_CLICK).
    const daemon = new URL('./fake-notifications.py', import.meta.url).pathname;
    const inSession = [
      'dbus-run-session',
      '--',
      'sh',
      '-c',
      `dbus-monitor --session "interface=org.freedesktop.Notifications,member=Notify" & /usr/bin/python3 ${daemon} & exec "$@"`,
      'sh',
      ...driverArgs,
    ];
    const args = process.env.DISPLAY
      ? inSession
      : ['xvfb-run', '-a', '-s', '-screen 0 1280x800x24', ...inSession];
    // Its own process group, so stop() ends Xvfb, D-Bus, the drivers and the app together.
    const child = spawn(args[0], args.slice(1), {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const driver = new DesktopDriver(child, `http://127.0.0.1:${port}`);
    child.stdout.on('data', (d) => driver.log.push(d.toString()));
    child.stderr.on('data', (d) => driver.log.push(d.toString()));
    child.on('exit', (code, signal) => {
      driver.exited = { code, signal };
    });
    await until(async () => {
      if (driver.exited) throw new Error(`tauri-driver exited: ${driver.logText()}`);
      const r = await fetch(`${driver.base}/status`);
      return r.ok;
    }, 30000, 'tauri-driver to listen');
    return driver;
  }

  constructor(child, base) {
    this.child = child;
    this.base = base;
    this.log = [];
    this.exited = null;
    this.session = null;
  }

  /** The end of what the driver, WebKitWebDriver and the app wrote (the app logs to stderr). */
  logText(chars = 4000) {
    return this.log.join('').slice(-chars);
  }

  logIncludes(text) {
    return this.log.join('').includes(text);
  }

  async request(method, path, body) {
    const r = await fetch(`${this.base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    const json = text ? JSON.parse(text) : {};
    if (!r.ok) {
      throw new Error(`${method} ${path}: ${r.status} ${json.value?.error ?? ''} ${json.value?.message ?? text}`);
    }
    return json.value;
  }

  /** Launches the app (a new WebDriver session). */
  async launch(application) {
    const value = await this.request('POST', '/session', {
      capabilities: { alwaysMatch: { browserName: 'wry', 'tauri:options': { application } } },
    });
    this.session = value.sessionId;
    return value;
  }

  s(path) {
    return `/session/${this.session}${path}`;
  }

  /** Runs a script in the window and returns its value. */
  script(source, ...args) {
    return this.request('POST', this.s('/execute/sync'), { script: source, args });
  }

  async find(css) {
    const value = await this.request('POST', this.s('/element'), { using: 'css selector', value: css });
    return Object.values(value)[0];
  }

  click(element) {
    return this.request('POST', this.s(`/element/${element}/click`), {});
  }

  type(element, text) {
    return this.request('POST', this.s(`/element/${element}/value`), { text });
  }

  text(element) {
    return this.request('GET', this.s(`/element/${element}/text`));
  }

  /** The whole window as a PNG. */
  async screenshot() {
    return Buffer.from(await this.request('GET', this.s('/screenshot')), 'base64');
  }

  async stop() {
    if (this.session) {
      // Ends the app too; a failure here must not keep the process tree alive.
      await this.request('DELETE', this.s('')).catch(() => {});
      this.session = null;
    }
    if (!this.exited) {
      try {
        process.kill(-this.child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await until(() => this.exited, 10000, 'tauri-driver to exit').catch(() => {
        try {
          process.kill(-this.child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      });
    }
  }
}
