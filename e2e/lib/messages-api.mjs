// A scripted Anthropic Messages API on 127.0.0.1:0 for the real Claude Code CLI (the node twin
// of agent-core's tests/it/support/scripted_api.rs): each streaming `POST /v1/messages` gets the
// next scripted text as server-sent events; anything else the CLI asks gets a harmless answer.
import http from 'node:http';

function textTurn(id, text) {
  return [
    { type: 'message_start', message: { id, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [],
      stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } } },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 5 } },
    { type: 'message_stop' },
  ];
}

export class MessagesApi {
  /** Starts the API; `texts` are the answers of the streaming requests, in order. */
  static async start(texts) {
    const api = new MessagesApi();
    api.texts = [...texts];
    api.streamed = 0;
    api.server = http.createServer((req, res) => api.answer(req, res));
    await new Promise((resolve) => api.server.listen(0, '127.0.0.1', resolve));
    api.url = `http://127.0.0.1:${api.server.address().port}`;
    return api;
  }

  answer(req, res) {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      let body = {};
      try { body = JSON.parse(raw); } catch { /* a probe without a body */ }
      const json = (status, value) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const url = req.url || '';
      if (req.method !== 'POST' || !url.startsWith('/v1/messages')) return json(200, {});
      if (url.includes('count_tokens')) return json(200, { input_tokens: 10 });
      if (body.stream !== true) {
        return json(200, { id: 'msg_side', type: 'message', role: 'assistant', model: body.model,
          content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', stop_sequence: null,
          usage: { input_tokens: 1, output_tokens: 1 } });
      }
      const text = this.texts.shift();
      if (text === undefined) {
        return json(400, { type: 'error', error: { type: 'invalid_request_error', message: 'the script is exhausted' } });
      }
      this.streamed += 1;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const event of textTurn(`msg_${this.streamed}`, text)) {
        res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      }
      res.end();
    });
  }

  close() {
    this.server.closeAllConnections?.();
    return new Promise((resolve) => this.server.close(resolve));
  }
}
