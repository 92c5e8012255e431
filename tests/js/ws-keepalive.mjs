// A graphql-ws client holding a subscription open, as a status page does,
// against a server that pings every socket often (the test sets
// WS_PING_INTERVAL and WS_PONG_TIMEOUT to 1s): the client answers the pings
// by itself and is never closed. HOLD_SECONDS says how long (default 60).
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { authorization, fail, show, wsUrl } from './common.mjs';

const hold = Number(process.env.HOLD_SECONDS ?? 60) * 1000;
let closed;
let pings = 0;
const client = createClient({
  url: wsUrl,
  webSocketImpl: WebSocket,
  connectionParams: { authorization },
  lazy: false,
  retryAttempts: 0,
  on: {
    closed: (event) => (closed ??= event),
    opened: (socket) => socket.on('ping', () => pings++),
  },
});

const id = await new Promise((resolve, reject) => {
  client.subscribe(
    { query: '{ deployments(first: 1) { nodes { id } } }' },
    { next: (r) => resolve(r.data?.deployments?.nodes?.[0]?.id), error: reject, complete: () => {} },
  );
}).catch((e) => fail(`listing deployments: ${show(e)}`));
if (!id) fail('the user has no deployment to watch');

let messages = 0;
let error;
const stop = client.subscribe(
  { query: 'subscription($id: ID!) { deploymentUpdated(id: $id) { id status } }', variables: { id } },
  { next: () => messages++, error: (e) => (error = e), complete: () => {} },
);
await new Promise((resolve) => setTimeout(resolve, hold));
stop();
await client.dispose();
if (closed && closed.code !== 1000) fail(`closed with ${closed.code} ${closed.reason} after ${pings} pings`);
if (error) fail(`subscription failed: ${show(error)}`);
if (messages < 1) fail('the subscription sent nothing');
if (pings < hold / 2000) fail(`only ${pings} pings in ${hold / 1000} s`);
console.log(`ok    connected for ${hold / 1000} s, ${pings} pings answered, ${messages} message(s)`);
