// Checks vserve with the official OpenAI client: completions and chat
// completions, streaming and not, usage, n, stop strings, logprobs and the
// error mapping. Run by openai.sh; exits non-zero on the first failure.
import OpenAI from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.VSERVE_BASE_URL, apiKey: process.env.VSERVE_API_KEY });
const model = "stories260K";
let failures = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

await check("models", async () => {
  const list = await client.models.list();
  assert.equal(list.data[0].id, model);
});

await check("completion", async () => {
  const r = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 24, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices.length, 1);
  assert.match(r.choices[0].text, /Lily|girl|boy|day/);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 24);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 24);
});

await check("completion stream with usage", async () => {
  const stream = await client.completions.create({
    model, prompt: "Once upon a time", max_tokens: 24, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) { text += c.text; if (c.finish_reason) finish = c.finish_reason; }
    if (chunk.usage) usage = chunk.usage;
  }
  const ref = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 24, temperature: 0 });
  assert.equal(text, ref.choices[0].text, "streamed text equals the non-streamed text (greedy)");
  assert.equal(finish, "length");
  assert.equal(usage.completion_tokens, 24);
});

await check("completion n=2, stop string, logprobs", async () => {
  const r = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 40, n: 2, stop: ["."], logprobs: 2, seed: 7 });
  assert.equal(r.choices.length, 2);
  for (const c of r.choices) {
    assert.ok(!c.text.includes("."), "stop string excluded");
    assert.ok(c.logprobs.tokens.length > 0);
    assert.equal(c.logprobs.tokens.length, c.logprobs.token_logprobs.length);
  }
});

await check("chat", async () => {
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 16, logprobs: true, top_logprobs: 2 });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.ok(r.choices[0].logprobs.content.length > 0);
  assert.ok("cached_tokens" in r.usage.prompt_tokens_details);
});

await check("chat stream", async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "system", content: "You tell stories." }, { role: "user", content: "Once upon a time" }],
    max_tokens: 20, stream: true, stream_options: { include_usage: true }, temperature: 0.8, seed: 1,
  });
  let text = "", role = null, finish = null, usage = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(role, "assistant");
  assert.ok(text.length > 0);
  assert.ok(["stop", "length"].includes(finish));
  assert.ok(usage.completion_tokens > 0);
});

await check("chat stream helper (runner API)", async () => {
  const runner = client.beta.chat.completions.stream({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 8 });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.role, "assistant");
});

await check("errors map to client exceptions", async () => {
  await assert.rejects(client.completions.create({ model: "nope", prompt: "x", max_tokens: 1 }), (e) => e.status === 404);
  await assert.rejects(client.completions.create({ model, prompt: "x", max_tokens: 100000 }),
    (e) => e.status === 400 && /maximum context length is 512 tokens/.test(e.message));
  const bad = new OpenAI({ baseURL: process.env.VSERVE_BASE_URL, apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e.status === 401);
});

if (failures > 0) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
