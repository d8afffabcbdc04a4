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
  },
  streamed: {
    text: deltas.join(''),
    finalText: await result.text,
    steps: steps.map((s) => ({ finishReason: s.finishReason, toolCalls: s.toolCalls.map((c) => c.toolName) })),
    toolExecutions: calls,
    errors,
  },
}));
