// Reads one agent turn from POST /internal/agents/{id}/chat (stream: true) with the Vercel AI
// SDK's own stream reader, exactly as a chat UI's transport does: parseJsonEventStream
// validates every chunk against the SDK's uiMessageChunkSchema, readUIMessageStream folds
// them into a UIMessage. Prints {"status", "headers", "message", "errors"} as JSON.
//
//   node read_stream.mjs <base url> <token> <agent id> <request body JSON>
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from 'ai';

const [baseUrl, token, agentId, bodyJson] = process.argv.slice(2);
const errors = [];
const response = await fetch(`${baseUrl}/internal/agents/${agentId}/chat`, {
  method: 'POST',
  headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
  body: JSON.stringify({ ...JSON.parse(bodyJson), stream: true }),
});
const headers = {
  'content-type': response.headers.get('content-type'),
  'x-vercel-ai-ui-message-stream': response.headers.get('x-vercel-ai-ui-message-stream'),
};
if (!response.ok) {
  console.log(JSON.stringify({ status: response.status, headers, message: null, errors: [await response.text()] }));
  process.exit(0);
}
const chunks = parseJsonEventStream({ stream: response.body, schema: uiMessageChunkSchema }).pipeThrough(
  new TransformStream({
    transform(part, controller) {
      // A chunk outside the protocol fails here, as it would in a strict SDK client.
      if (!part.success) throw part.error;
      controller.enqueue(part.value);
    },
  }),
);
let message = null;
for await (const current of readUIMessageStream({
  stream: chunks,
  onError: (error) => errors.push(String(error?.message ?? error)),
})) {
  message = current;
}
console.log(JSON.stringify({ status: response.status, headers, message, errors }));
