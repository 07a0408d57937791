// A scripted Anthropic Messages API on 127.0.0.1:0 for the real Claude Code CLI, in the e2e
// tests (./dev run's and push's) (the Rust tests have agent-core/tests/it/support/scripted_api.rs). Each streaming
// `POST /v1/messages` gets the next turn of the script as server-sent events; whatever else the
// CLI asks (non-streaming messages, count_tokens, probes) gets a harmless answer.
import http from 'node:http';

export const messageStart = (id, inputTokens = 10) => ({
  type: 'message_start',
  message: { id, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null,
    stop_sequence: null, usage: { input_tokens: inputTokens, output_tokens: 1 } },
});

export const textBlock = (index, parts) => [
  { type: 'content_block_start', index, content_block: { type: 'text', text: '' } },
  ...parts.map((text) => ({ type: 'content_block_delta', index, delta: { type: 'text_delta', text } })),
  { type: 'content_block_stop', index },
];

export const toolBlock = (index, id, name, input) => [
  { type: 'content_block_start', index, content_block: { type: 'tool_use', id, name, input: {} } },
  { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: JSON.stringify(input) } },
  { type: 'content_block_stop', index },
];

export const messageEnd = (stopReason, outputTokens = 5) => [
  { type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: outputTokens } },
  { type: 'message_stop' },
];

/** A turn that says `parts` and ends. */
export const textTurn = (id, parts) => [messageStart(id), ...textBlock(0, parts), ...messageEnd('end_turn')];

/** A turn that says `parts`, then calls Bash with `command`. */
export const bashTurn = (id, parts, toolId, command) => [
  messageStart(id), ...textBlock(0, parts),
  ...toolBlock(1, toolId, 'Bash', { command, description: 'scripted command' }), ...messageEnd('tool_use'),
];

export class ScriptedApi {
  constructor(turns) {
    this.turns = [...turns];
    this.requests = [];
    this.server = http.createServer((req, res) => this.#answer(req, res));
  }

  static async start(turns) {
    const api = new ScriptedApi(turns);
    await new Promise((resolve) => api.server.listen(0, '127.0.0.1', resolve));
    api.url = `http://127.0.0.1:${api.server.address().port}`;
    return api;
  }

  /** The streaming message requests made so far. */
  messageRequests() {
    return this.requests.filter((r) => r.path.startsWith('/v1/messages') && !r.path.includes('count_tokens') && r.body && r.body.stream === true);
  }

  close() {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(resolve));
  }

  #answer(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch { /* not JSON */ }
      const path = req.url.split('?')[0];
      this.requests.push({ method: req.method, path, body });
      const json = (status, value) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (req.method !== 'POST' || !path.startsWith('/v1/messages')) return json(200, {});
      if (path.endsWith('/count_tokens')) return json(200, { input_tokens: 10 });
      if (!body || body.stream !== true) {
        return json(200, { id: 'msg_side', type: 'message', role: 'assistant', model: body && body.model,
          content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', stop_sequence: null,
          usage: { input_tokens: 1, output_tokens: 1 } });
      }
      const turn = this.turns.shift();
      if (!turn) {
        return json(400, { type: 'error', error: { type: 'invalid_request_error', message: 'the script is exhausted' } });
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const event of turn) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      res.end();
    });
  }
}
