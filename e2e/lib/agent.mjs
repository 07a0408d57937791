// A scripted agent on the relay's /api/ws: what the real flightdeck-agent would send, by hand,
// so a test controls every event and its timing.
import crypto from 'node:crypto';
import { connect } from './ws.mjs';
import { until } from './relay.mjs';

export class FakeAgent {
  constructor(ws, agentId) {
    this.ws = ws;
    this.agentId = agentId;
    this.received = [];
    ws.on('message', (text) => {
      const msg = JSON.parse(text);
      this.received.push(msg);
      if (msg.type === 'ping') this.send({ type: 'pong', timestamp: msg.timestamp });
    });
  }

  static async connect(relay, key, { agentId = 'e2e-box', repos = [] } = {}) {
    const ws = await connect(`ws://127.0.0.1:${relay.port}/api/ws?token=${encodeURIComponent(key)}`);
    const agent = new FakeAgent(ws, agentId);
    agent.send({ type: 'agent-status', agentId, status: 'online', capabilities: ['claude', 'shell'], version: 'e2e' });
    await agent.waitFor((m) => m.type === 'welcome', 10000, 'welcome');
    agent.send({
      type: 'git-status',
      full: true,
      repos: repos.map((name) => ({
        id: `repo-${name}`,
        name,
        branch: 'main',
        upstream: 'origin/main',
        status: 'dirty',
        uncommittedCount: 2,
        untrackedCount: 1,
        aheadCount: 1,
        modifiedFiles: ['src/lib.rs', 'README.md'],
        headSummary: 'Add the HUD',
        updatedAt: new Date().toISOString(),
      })),
    });
    return agent;
  }

  send(msg) {
    this.ws.send(JSON.stringify(msg));
  }

  waitFor(pred, timeoutMs, what) {
    return until(() => this.received.find(pred), timeoutMs, what);
  }

  /** Creates a running claude task in `repo`; returns it. */
  startTask(repo, title, id = crypto.randomUUID()) {
    const task = {
      id,
      title,
      repo,
      executor: 'claude',
      payload: { repo, prompt: title },
      status: 'running',
      source: 'local',
      createdAt: new Date().toISOString(),
      startedAt: new Date().toISOString(),
      lastSeq: 0,
    };
    this.send({ type: 'task-update', task });
    this.seq = this.seq || {};
    this.seq[id] = 0;
    return task;
  }

  /** Sends the task's new state (`task-update`): `changes` over the task as last sent. */
  updateTask(task, changes) {
    Object.assign(task, changes);
    this.send({ type: 'task-update', task });
    return task;
  }

  /** Takes over a task the relay sent (`task` message): reports it running; returns it. */
  async runRelayTask(relay, key, taskId) {
    const { task } = await relay.api('GET', `/api/cockpit/tasks/${taskId}`, key);
    this.seq = this.seq || {};
    this.seq[taskId] = 0;
    return this.updateTask(task, { status: 'running', startedAt: new Date().toISOString(), agentId: this.agentId });
  }

  /** The `permission-decision` the relay sends for a request (SPEC 8). */
  waitForDecision(taskId, requestId, timeoutMs = 10000) {
    return this.waitFor(
      (m) => m.type === 'permission-decision' && m.taskId === taskId && m.requestId === requestId,
      timeoutMs,
      `permission-decision ${requestId} on the agent socket`,
    );
  }

  event(taskId, event) {
    this.seq[taskId] += 1;
    this.send({ type: 'task-event', taskId, seq: this.seq[taskId], event });
  }

  chunk(taskId, text, stream = 'assistant') {
    this.event(taskId, { kind: 'chunk', text, stream });
  }

  close() {
    this.ws.close();
  }
}
