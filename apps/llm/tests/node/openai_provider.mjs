// Drives our /v1 with @ai-sdk/openai's default model, `openai(id)`, which speaks OpenAI's
// Responses API: generateText once, then streamText with a tool the SDK itself executes, in a
// loop of steps until the model answers. Prints {"generated", "streamed"} as JSON.
//
//   node openai_provider.mjs <base url> <token> <model>
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';

const [baseUrl, token, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: `${baseUrl}/v1`, apiKey: token });

const generated = await generateText({ model: openai(model), prompt: 'hello from the ai sdk' });
// A follow-up turn with the first answer in its history: the SDK sends that answer as an
// item_reference to the stored response item (store is on by default).
const followUp = await generateText({
  model: openai(model),
  messages: [{ role: 'user', content: 'hello from the ai sdk' }, ...generated.response.messages,
             { role: 'user', content: 'and once more' }],
});

const calls = [];
const result = streamText({
  model: openai(model),
  prompt: 'which projects do we have?',
  tools: {
    projects_list: tool({
      description: 'List the projects',
      inputSchema: jsonSchema({ type: 'object', properties: {} }),
      execute: async (input) => {
        calls.push(input);
        return 'Roadmap, Treasury';
      },
    }),
  },
  stopWhen: stepCountIs(4),
});
const deltas = [];
const errors = [];
for await (const part of result.fullStream) {
  if (part.type === 'text-delta') deltas.push(part.text);
  if (part.type === 'error') errors.push(String(part.error?.message ?? part.error));
}
const steps = await result.steps;
console.log(JSON.stringify({
  generated: {
    text: generated.text,
    finishReason: generated.finishReason,
    usage: generated.usage,
    responseId: generated.response?.id,
    followUp: followUp.text,
    followUpBody: followUp.request?.body,
  },
  streamed: {
    text: deltas.join(''),
    finalText: await result.text,
    steps: steps.map((s) => ({ finishReason: s.finishReason, toolCalls: s.toolCalls.map((c) => c.toolName) })),
    toolExecutions: calls,
    errors,
  },
}));
