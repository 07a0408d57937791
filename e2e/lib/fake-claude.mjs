#!/usr/bin/env node
// A stand-in for the Claude Code CLI for the desktop end-to-end test, speaking the same
// stream-json control protocol (SPEC 8): it takes the handshake and the prompt on stdin, asks to
// run `touch made-by-claude.txt` (a `can_use_tool` control request), and waits for the answer.
// Allowed, it creates the file in its working directory, as the real tool would; denied, it does
// not. Then it reports the turn's `result` and exits when its stdin closes.
import fs from 'node:fs';
import readline from 'node:readline';

const out = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const rl = readline.createInterface({ input: process.stdin });
let seen = 0;
const requestId = 'req-desktop-1';
const command = 'touch made-by-claude.txt';

rl.on('line', (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  seen += 1;
  if (seen === 2) {
    // The handshake and the prompt have arrived.
    out({ type: 'system', subtype: 'init', model: 'fake-claude', session_id: 'fake-session-1' });
    out({ type: 'control_request', request_id: requestId,
      request: { subtype: 'can_use_tool', tool_name: 'Bash', input: { command, description: 'Create the file' } } });
    return;
  }
  if (msg.type === 'control_response' && msg.response && msg.response.request_id === requestId) {
    const allowed = msg.response.response && msg.response.response.behavior === 'allow';
    out({ type: 'assistant', message: { id: 'msg_1', role: 'assistant',
      content: [{ type: 'tool_use', id: 'toolu_desk', name: 'Bash', input: { command } }] } });
    if (allowed) fs.writeFileSync('made-by-claude.txt', '');
    out({ type: 'user', message: { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_desk',
      content: allowed ? '' : 'denied', is_error: !allowed }] } });
    out({ type: 'result', subtype: 'success', is_error: false, result: allowed ? 'Made the file.' : 'Did not make it.',
      total_cost_usd: 0, usage: { input_tokens: 10, output_tokens: 5 } });
  }
});
rl.on('close', () => process.exit(0));
