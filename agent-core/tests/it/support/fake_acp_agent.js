#!/usr/bin/env node
// A scripted ACP agent for the `acp` executor's tests: JSON-RPC over stdio, one message a line.
// The first argument says how it behaves:
//   good        a well-behaved agent; the prompt's words pick what the turn does (see `turn`)
//   garbage     writes a line that is not JSON-RPC and waits
//   silent      never answers `initialize`
//   exit        exits in the middle of its turn, with something on stderr
//   escape      asks to read a file outside the working tree, and fails the turn with the answer
//   stubborn    ignores session/cancel (the client must end it)
// With a second argument `load` it offers loadSession (sessions live in that process only; a
// loaded session's id is taken as given and its history replayed).
'use strict';

const mode = process.argv[2] || 'good';
const canLoad = process.argv[3] === 'load';
let nextId = 1000;
const waiting = new Map(); // our request id -> resolve
let promptId = null;
let cancelled = null; // resolve of the cancel wait

function send(message) {
  process.stdout.write(JSON.stringify({ jsonrpc: '2.0', ...message }) + '\n');
}
function request(method, params) {
  const id = nextId++;
  send({ id, method, params });
  return new Promise((resolve) => waiting.set(id, resolve));
}
function update(sessionId, update) {
  send({ method: 'session/update', params: { sessionId, update } });
}
function say(sessionId, text) {
  update(sessionId, { sessionUpdate: 'agent_message_chunk', content: { type: 'text', text } });
}

async function turn(id, params) {
  const sessionId = params.sessionId;
  const text = params.prompt.map((b) => b.text || '').join(' ');
  const cwd = process.cwd();
  if (mode === 'exit') {
    say(sessionId, 'Starting the work');
    process.stderr.write('fatal: the model connection dropped\n');
    process.exit(3);
  }
  if (mode === 'escape') {
    const answer = await request('fs/read_text_file', { sessionId, path: cwd + '/../outside.txt' });
    const why = answer.error ? answer.error.message : 'read it: ' + answer.result.content;
    send({ id, error: { code: -32603, message: 'cannot read outside.txt: ' + why } });
    return;
  }
  if (mode === 'stubborn' || text.includes('wait-for-cancel')) {
    say(sessionId, 'Working on it');
    if (mode === 'stubborn') return; // never answers
    await new Promise((resolve) => (cancelled = resolve));
    send({ id, result: { stopReason: 'cancelled' } });
    return;
  }
  if (text.includes('resume')) {
    say(sessionId, 'Resumed ' + sessionId);
    send({ id, result: { stopReason: 'end_turn' } });
    return;
  }
  update(sessionId, { sessionUpdate: 'agent_thought_chunk', content: { type: 'text', text: 'Thinking about it' } });
  update(sessionId, {
    sessionUpdate: 'plan',
    entries: [
      { content: 'Read the README', priority: 'high', status: 'completed' },
      { content: 'Write notes', priority: 'medium', status: 'in_progress' },
    ],
  });
  say(sessionId, 'I will read ');
  say(sessionId, 'the README.');
  update(sessionId, {
    sessionUpdate: 'tool_call', toolCallId: 'call_1', title: 'Read README.md', kind: 'read', status: 'pending',
    rawInput: { path: cwd + '/README.md' },
  });
  const read = await request('fs/read_text_file', { sessionId, path: cwd + '/README.md' });
  update(sessionId, {
    sessionUpdate: 'tool_call_update', toolCallId: 'call_1', status: 'completed',
    content: [{ type: 'content', content: { type: 'text', text: read.result.content } }],
  });
  update(sessionId, { sessionUpdate: 'usage_update', used: 1000, size: 200000, cost: { amount: 0.0125, currency: 'USD' } });
  if (text.includes('ask')) {
    const toolCall = { toolCallId: 'call_2', title: 'Write allowed.txt', kind: 'edit', rawInput: { path: cwd + '/allowed.txt' } };
    update(sessionId, { sessionUpdate: 'tool_call', ...toolCall, status: 'pending' });
    const answer = await request('session/request_permission', {
      sessionId, toolCall,
      options: [
        { optionId: 'yes-always', name: 'Always allow', kind: 'allow_always' },
        { optionId: 'yes', name: 'Allow', kind: 'allow_once' },
        { optionId: 'no', name: 'Reject', kind: 'reject_once' },
      ],
    });
    const outcome = answer.result.outcome;
    if (outcome.outcome === 'selected' && outcome.optionId === 'yes') {
      await request('fs/write_text_file', { sessionId, path: cwd + '/allowed.txt', content: 'written after an allow\n' });
      update(sessionId, { sessionUpdate: 'tool_call_update', toolCallId: 'call_2', status: 'completed', rawOutput: 'wrote it' });
      say(sessionId, 'Done: allowed.');
    } else {
      const chosen = outcome.outcome + ' ' + (outcome.optionId || '-');
      update(sessionId, { sessionUpdate: 'tool_call_update', toolCallId: 'call_2', status: 'failed', rawOutput: 'rejected: ' + chosen });
      say(sessionId, 'Understood: ' + chosen + '.');
    }
    send({ id, result: { stopReason: 'end_turn', usage: { inputTokens: 300, outputTokens: 40, totalTokens: 340 } } });
    return;
  }
  if (text.includes('terminal')) {
    const created = await request('terminal/create', { sessionId, command: 'sh', args: ['-c', 'echo from-terminal; echo oops >&2; exit 2'] });
    const terminalId = created.result.terminalId;
    const exit = await request('terminal/wait_for_exit', { sessionId, terminalId });
    const output = await request('terminal/output', { sessionId, terminalId });
    await request('terminal/release', { sessionId, terminalId });
    say(sessionId, `exit ${exit.result.exitCode}; output ${JSON.stringify(output.result.output)}`);
    send({ id, result: { stopReason: 'end_turn' } });
    return;
  }
  await request('fs/write_text_file', { sessionId, path: cwd + '/notes/summary.txt', content: 'notes\n' });
  say(sessionId, ' All done.');
  send({ id, result: { stopReason: 'end_turn', usage: { inputTokens: 200, outputTokens: 30, totalTokens: 230 } } });
}

function serve(message) {
  if (message.id !== undefined && message.method === undefined) {
    const resolve = waiting.get(message.id);
    waiting.delete(message.id);
    if (resolve) resolve(message);
    return;
  }
  const { id, method, params } = message;
  if (method === 'initialize') {
    if (mode === 'silent') return;
    send({ id, result: { protocolVersion: 1, agentCapabilities: { loadSession: canLoad }, authMethods: [] } });
  } else if (method === 'session/new') {
    const result = {
      sessionId: 'sess-' + process.pid,
      modes: { currentModeId: 'ask', availableModes: [{ id: 'ask', name: 'Ask' }, { id: 'auto', name: 'Auto' }] },
    };
    if (canLoad) {
      // The loading agent also lets the client choose a model.
      result.models = { currentModelId: 'small', availableModels: [{ modelId: 'small', name: 'Small' }, { modelId: 'big', name: 'Big' }] };
    }
    send({ id, result });
  } else if (method === 'session/load') {
    // The history, replayed: not part of the new turn.
    update(params.sessionId, { sessionUpdate: 'user_message_chunk', content: { type: 'text', text: 'the old prompt' } });
    say(params.sessionId, 'the old answer');
    send({ id, result: {} });
  } else if (method === 'session/set_mode' || method === 'session/set_model') {
    send({ id, result: {} });
  } else if (method === 'session/prompt') {
    promptId = id;
    turn(id, params).catch((err) => send({ id, error: { code: -32603, message: String(err) } }));
  } else if (method === 'session/cancel') {
    if (cancelled) cancelled();
  } else if (id !== undefined) {
    send({ id, error: { code: -32601, message: 'no such method ' + method } });
  }
}

if (mode === 'stubborn') {
  process.on('SIGTERM', () => {}); // only SIGKILL ends it
}
if (mode === 'garbage') {
  process.stdout.write('Welcome to the fake agent! Loading...\n');
}
let buffered = '';
process.stdin.on('data', (data) => {
  buffered += data;
  let at;
  while ((at = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, at);
    buffered = buffered.slice(at + 1);
    if (line.trim()) serve(JSON.parse(line));
  }
});
process.stdin.on('end', () => process.exit(0));
void promptId;
