// A receiver of somebody else's, in Node, verifying deliveries as docs/webhooks.md shows: the
// standardwebhooks package, the endpoint's secret, the raw body and the three headers.
// Reads one JSON object per line on stdin, {secret, headers, body}, and writes one JSON line per
// delivery: {ok: true, event} or {ok: false, error}.
// Usage: node verify_webhook.mjs
import { createInterface } from "node:readline";
import { Webhook } from "standardwebhooks";

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { secret, headers, body } = JSON.parse(line);
  try {
    const event = new Webhook(secret).verify(Buffer.from(body, "utf8"), headers);
    console.log(JSON.stringify({ ok: true, event }));
  } catch (error) {
    console.log(JSON.stringify({ ok: false, error: `${error.name}: ${error.message}` }));
  }
}
