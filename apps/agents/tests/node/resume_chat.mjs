// A chat UI's round trip through the AI SDK's own DefaultChatTransport with its default body:
// send a message, hang up after the first text delta (a page reload, a lost connection),
// then `reconnectToStream({chatId})` (what `useChat({resume: true})` calls) and fold the
// resumed stream into the final UIMessage. The transport validates every chunk against the
// SDK's schema. Prints {"before", "message", "errors"} as JSON.
//
//   node resume_chat.mjs <base url> <token> <agent id> <chat id> <text>
import { DefaultChatTransport, readUIMessageStream } from 'ai';

const [baseUrl, token, agentId, chatId, text] = process.argv.slice(2);
const errors = [];
const transport = new DefaultChatTransport({
  api: `${baseUrl}/internal/agents/${agentId}/chat`,
  headers: { Authorization: `Bearer ${token}` },
});

const controller = new AbortController();
const before = [];
const stream = await transport.sendMessages({
  chatId,
  trigger: 'submit-message',
  messageId: undefined,
  messages: [{ id: 'msg-1', role: 'user', parts: [{ type: 'text', text }] }],
  abortSignal: controller.signal,
});
const reader = stream.getReader();
for (;;) {
  const { value, done } = await reader.read();
  if (done) break;
  before.push(value.type);
  if (value.type === 'text-delta') {
    controller.abort();
    await reader.cancel().catch(() => {});
    break;
  }
}

const resumed = await transport.reconnectToStream({ chatId });
let message = null;
if (resumed === null) {
  errors.push('reconnectToStream found no active stream (204)');
} else {
  for await (const m of readUIMessageStream({ stream: resumed, onError: (e) => errors.push(String(e)) })) {
    message = m;
  }
}
console.log(JSON.stringify({ before, message, errors }));
