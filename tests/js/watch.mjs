// Keeps subscriptions open for bench/writes, so the change reader works as
// it does with users watching: one graphql-ws connection per user, one
// `deploymentUpdated` subscription per line of the targets file
// ("<user uuid> <deployment uuid>"), tokens signed with the given HS256
// secret. Runs until SIGTERM, then prints how many messages arrived.
//   node watch.mjs ws://127.0.0.1:8097/graphql/ws <secret> <targets file>
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, secret, targetsFile] = process.argv.slice(2);
const base64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

function token(user) {
  const unsigned = `${base64url({ alg: 'HS256', typ: 'JWT' })}.${base64url({
    sub: user,
    exp: Math.floor(Date.now() / 1000) + 3600,
  })}`;
  const signature = crypto.createHmac('sha256', secret).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}

const byUser = new Map();
for (const line of fs.readFileSync(targetsFile, 'utf8').split('\n')) {
  const [user, deployment] = line.trim().split(/\s+/);
  if (!user || !deployment) continue;
  if (!byUser.has(user)) byUser.set(user, []);
  byUser.get(user).push(deployment);
}

let messages = 0;
let errors = 0;
const query = 'subscription($id: ID!) { deploymentUpdated(id: $id) { id status health replicas { status } } }';
for (const [user, deployments] of byUser) {
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token(user)}` },
    retryAttempts: 0,
  });
  for (const id of deployments) {
    client.subscribe(
      { query, variables: { id } },
      {
        next: (result) => (result.errors ? errors++ : messages++),
        error: (e) => {
          errors++;
          console.error('watch:', e?.message ?? e);
        },
        complete: () => {},
      },
    );
  }
}

process.on('SIGTERM', () => {
  console.error(`watch: ${messages} messages, ${errors} errors`);
  process.exit(0);
});
