// The openai npm package against a Praxis edge: one streamed response, then a
// conversation continued by previous_response_id. Prints what it saw as one JSON line.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.env.PRAXIS_EDGE_URL}/v1`, apiKey: "unused" });

const stream = await client.responses.create({
  model: "echo",
  input: "hello from node",
  stream: true,
});
let deltas = "";
let completed = null;
for await (const event of stream) {
  if (event.type === "response.output_text.delta") deltas += event.delta;
  if (event.type === "response.completed") completed = event.response;
}

const next = await client.responses.create({
  previous_response_id: completed.id,
  input: "and again",
});
const items = await client.conversations.items.list(next.conversation.id, { order: "asc" });

console.log(
  JSON.stringify({
    deltas,
    streamed: completed.output_text ?? completed.output[0].content[0].text,
    next: next.output_text,
    same: next.conversation.id === completed.conversation.id,
    items: items.data.map((i) => [i.role, i.content[0].text]),
  }),
);
