// Reads POST /internal/llm/stream with the Vercel AI SDK's own stream reader: every chunk is
// validated against the SDK's uiMessageChunkSchema and folded into a UIMessage, as a chat
// UI's transport would. Prints {"status", "headers", "message", "errors"} as JSON.
//
//   node read_llm_stream.mjs <base url> <token> <request body JSON>
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from 'ai';

const [baseUrl, token, bodyJson] = process.argv.slice(2);
const errors = [];
const response = await fetch(`${baseUrl}/internal/llm/stream`, {
  method: 'POST',
  headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
  body: bodyJson,
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
      if (!part.success) throw part.error; // a chunk outside the protocol fails, as in a strict client
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
