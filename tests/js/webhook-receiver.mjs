// A webhook receiver for the tests: every delivery is verified with the
// Standard Webhooks reference library (`standardwebhooks`), not with
// deployql's code, and logged; GET /log answers the log.
//
// Paths: /ok/<name> answers 200; /flaky/<name> answers 500 to the first
// two attempts of each webhook-id, then 200; /slow/<name> answers 200
// after SLOW_MS (30 s by default); /fail/<name> always 500. PUT
// /secrets/<name> with a JSON list of secrets sets what <name>'s
// deliveries are verified with (each secret is tried on its own).
// Prints `listening <port>` once it listens.
import http from "node:http";
import { Webhook } from "standardwebhooks";

const slowMs = Number(process.env.SLOW_MS ?? 30000);
const secrets = new Map();
const log = [];
const attemptsById = new Map();

function read(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

const server = http.createServer(async (request, response) => {
  const body = await read(request);
  const [, kind, name] = request.url.split("/");
  if (request.method === "GET" && kind === "log") {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify(log));
    return;
  }
  if (request.method === "PUT" && kind === "secrets") {
    secrets.set(name, JSON.parse(body));
    response.writeHead(204).end();
    return;
  }
  const receivedAt = Date.now();
  const headers = {
    "webhook-id": request.headers["webhook-id"],
    "webhook-timestamp": request.headers["webhook-timestamp"],
    "webhook-signature": request.headers["webhook-signature"],
  };
  // Which of the registered secrets verify this delivery.
  const verifiedWith = [];
  let payload = null;
  for (const [index, secret] of (secrets.get(name) ?? []).entries()) {
    try {
      payload = new Webhook(secret).verify(body, headers);
      verifiedWith.push(index);
    } catch {
      // not signed with this one
    }
  }
  const id = headers["webhook-id"];
  const attempt = (attemptsById.get(id) ?? 0) + 1;
  attemptsById.set(id, attempt);
  const entry = { name, kind, id, attempt, verifiedWith, payload, receivedAt, answeredAt: null };
  log.push(entry);
  let status = 200;
  if (kind === "flaky" && attempt <= 2) status = 500;
  if (kind === "fail") status = 500;
  if (kind === "slow") await new Promise((resolve) => setTimeout(resolve, slowMs));
  entry.answeredAt = Date.now();
  entry.status = status;
  response.writeHead(status, { "content-type": "text/plain" });
  response.end(status === 200 ? "ok" : "try again");
});

server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
