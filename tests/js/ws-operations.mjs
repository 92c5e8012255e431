// Queries, mutations, a subscription and error answers over one graphql-ws
// (graphql-transport-ws) connection, as Apollo/urql/Relay clients run them
// when everything goes over the socket; the error answers must match HTTP's.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { authorization, post, show, uniqueName, wsUrl } from './common.mjs';

class StepFailed extends Error {}
const check = (ok, message) => {
  if (!ok) throw new StepFailed(message);
};

// What the client reports on a failed connection or operation, made readable.
function describe(e) {
  if (Array.isArray(e)) return `error message: ${show(e)}`; // protocol 'error' message
  if (e && typeof e.code === 'number') return `socket closed: code ${e.code}${e.reason ? `, reason "${e.reason}"` : ''}`;
  // ws reports a refused connection or upgrade as an ErrorEvent wrapping an Error.
  const error = e?.error ?? e;
  return error?.message ? `${error.message}${error.code ? ` (${error.code})` : ''}` : show(e);
}

function timeout(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new StepFailed(`${what}: no answer within ${ms} ms`)), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

let connectionError;
const client = createClient({
  url: wsUrl,
  webSocketImpl: WebSocket,
  connectionParams: { authorization },
  lazy: false, // connect (and authenticate) now, so a refused connection shows first
  retryAttempts: 0, // a failure must fail the step, not be retried silently
  onNonLazyError: (e) => (connectionError = e),
});

// One query or mutation: its single result. A protocol `error` message (the
// operation was rejected before executing) comes back as `{ errors }` too.
async function execute(query, variables) {
  const t = timeout(10_000, 'operation');
  try {
    return await Promise.race([
      t.promise,
      new Promise((resolve, reject) => {
        let result;
        client.subscribe(
          { query, variables },
          {
            next: (r) => (result = r),
            error: (e) => (Array.isArray(e) ? resolve({ errors: e, errorMessage: true }) : reject(new StepFailed(describe(e)))),
            complete: () => (result ? resolve(result) : reject(new StepFailed('completed without a result'))),
          },
        );
      }),
    ]);
  } finally {
    t.cancel();
  }
}

const codes = (errors) => (errors ?? []).map((e) => e.extensions?.code);
// The parts of an error that must not depend on the transport.
const shape = ({ data, errors }) => ({
  data,
  errors: (errors ?? []).map((e) => ({ message: e.message, path: e.path, code: e.extensions?.code })),
});
// A create whose non-null `statusHistory` fails (limit over 100): the null
// must propagate through the non-null `createDeployment` to `data`.
const badCreate = (name) => `mutation {
  createDeployment(input: {name: "${name}", targetReplicas: 1, resources: {cpuCores: 1, memoryMb: 64, storageGb: 1}}) {
    id statusHistory(limit: 1000) { newStatus }
  }
}`;

const steps = {
  async '(a) query deployments'() {
    const r = await execute('{ deployments(first: 5) { totalCount nodes { id name } } }');
    check(!r.errors?.length, `errors: ${show(r.errors)}`);
    check(typeof r.data?.deployments?.totalCount === 'number', `no totalCount in ${show(r)}`);
    return `totalCount ${r.data.deployments.totalCount}, ${r.data.deployments.nodes.length} node(s)`;
  },

  async '(b) mutation createDeployment'(state) {
    const name = uniqueName('ws');
    const r = await execute(`mutation {
      createDeployment(input: {name: "${name}", targetReplicas: 3, resources: {cpuCores: 0.5, memoryMb: 512, storageGb: 10}}) {
        id name status health statusHistory { oldStatus newStatus reason }
      }
    }`);
    check(!r.errors?.length, `errors: ${show(r.errors)}`);
    const d = r.data?.createDeployment;
    check(d?.name === name, `expected name ${name} in ${show(r)}`);
    check(d.status === 'PENDING', `status ${d.status}, expected PENDING`);
    check(
      d.statusHistory.length === 1 && d.statusHistory[0].newStatus === 'PENDING',
      `statusHistory ${show(d.statusHistory)}, expected one entry with newStatus PENDING`,
    );
    state.id = d.id;
    return `${d.id} ${d.name} ${d.status} ${d.health}`;
  },

  async '(c) subscription deploymentUpdated + scale over the same socket'({ id }) {
    const updates = client.iterate({
      query: 'subscription($id: ID!) { deploymentUpdated(id: $id) { id targetReplicas health } }',
      variables: { id },
    });
    const t = timeout(5_000, 'subscription');
    try {
      const first = await Promise.race([t.promise, updates.next()]);
      check(!first.done, 'subscription completed before its first message');
      check(!first.value.errors?.length, `first message has errors: ${show(first.value.errors)}`);
      check(first.value.data?.deploymentUpdated?.targetReplicas === 3, `first message ${show(first.value)}, expected targetReplicas 3`);
    } finally {
      t.cancel();
    }

    const scaled = await execute('mutation($id: ID!) { scaleDeployment(id: $id, targetReplicas: 4) { id targetReplicas } }', { id });
    check(!scaled.errors?.length, `scaleDeployment errors: ${show(scaled.errors)}`);
    check(scaled.data?.scaleDeployment?.targetReplicas === 4, `scaleDeployment answered ${show(scaled)}`);

    const t2 = timeout(5_000, 'subscription message with targetReplicas 4 after scaling');
    const seen = [];
    try {
      for (;;) {
        const next = await Promise.race([t2.promise, updates.next()]);
        check(!next.done, `subscription completed before targetReplicas 4; saw ${show(seen)}`);
        check(!next.value.errors?.length, `subscription message has errors: ${show(next.value.errors)}`);
        seen.push(next.value.data?.deploymentUpdated?.targetReplicas);
        if (seen.at(-1) === 4) break;
      }
    } finally {
      t2.cancel();
      await updates.return(); // completes the subscription on the server
    }
    return `first message targetReplicas 3, then ${show(seen)} after scaling`;
  },

  async '(d) query with a NOT_FOUND error'() {
    const r = await execute('{ deployment(id: "not-a-uuid") { id } }');
    check(r.data?.deployment === null, `expected data.deployment === null, got ${show(r)}`);
    check(codes(r.errors).includes('NOT_FOUND'), `expected an error with code NOT_FOUND, got ${show(r.errors)}`);
    return `data ${show(r.data)}, error codes ${show(codes(r.errors))}`;
  },

  async '(e) mutation whose non-null field fails, WebSocket vs HTTP'() {
    const ws = await execute(badCreate(uniqueName('ws-bad')));
    const http = await post(badCreate(uniqueName('ws-bad')));
    for (const [via, r] of [['WebSocket', ws], ['HTTP', http]]) {
      check(r.data === null, `${via}: expected data === null (null propagated to the root), got ${show(r)}`);
      check(codes(r.errors).includes('BAD_USER_INPUT'), `${via}: expected an error with code BAD_USER_INPUT, got ${show(r.errors)}`);
    }
    check(show(shape(ws)) === show(shape(http)), `WebSocket answered ${show(shape(ws))}\n    but HTTP answered ${show(shape(http))}`);
    return `both: data null, errors ${show(shape(ws).errors)}`;
  },
};

console.log(`graphql-ws client on ${wsUrl}`);
const state = {};
let exitCode = 0;
try {
  for (const [name, step] of Object.entries(steps)) {
    try {
      console.log(`ok    ${name}: ${await step(state)}`);
    } catch (e) {
      const reason = e instanceof StepFailed ? e.message : describe(e);
      console.error(`FAIL  ${name}: ${reason}`);
      if (connectionError && describe(connectionError) !== reason) console.error(`      connection: ${describe(connectionError)}`);
      exitCode = 1;
      break;
    }
  }
} finally {
  await client.dispose();
}
process.exit(exitCode);
