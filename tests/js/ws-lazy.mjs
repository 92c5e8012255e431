// The graphql-ws client as urql's and Apollo's graphql-ws setups create it:
// lazy (a socket opened for the first operation and closed with 1000 once
// none is left) and, here, with no retries, so a socket the server drops
// without answering the client's close fails the operation started on it.
// Each operation is awaited before the next starts, so each one begins just
// as the previous socket is closing.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { authorization, show, uniqueName, wsUrl } from './common.mjs';

const closes = [];
const client = createClient({
  url: wsUrl,
  webSocketImpl: WebSocket,
  connectionParams: { authorization },
  retryAttempts: 0,
  on: { closed: (event) => closes.push(event.code) },
});

const describe = (e) =>
  Array.isArray(e) ? `error message: ${show(e)}` : e?.code ? `socket closed: code ${e.code} ${e.reason ?? ''}` : String(e?.message ?? e);

// An operation's result, as Apollo's and urql's links take it: a query's or
// mutation's when the server completes it; a subscription's first, after
// which the subscription is left (the client sends `complete`), as a page
// does when it unmounts. Then the lazy client closes its socket.
function result(query, variables, { leaveAfterFirst = false } = {}) {
  return new Promise((resolve, reject) => {
    const what = query.trim().split(/[\s({]/)[0] || 'query';
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within 10 s`)), 10_000);
    let last;
    const leave = client.subscribe(
      { query, variables },
      {
        next: (next) => {
          last = next;
          if (leaveAfterFirst) {
            clearTimeout(timer);
            leave();
            resolve(next);
          }
        },
        error: (e) => {
          clearTimeout(timer);
          reject(new Error(`${what}: ${describe(e)}`));
        },
        complete: () => {
          clearTimeout(timer);
          resolve(last ?? { errors: [{ message: `${what}: completed without a result` }] });
        },
      },
    );
  });
}

const check = (result, what) => {
  if (result.errors?.length) throw new Error(`${what}: ${show(result.errors)}`);
  return result.data;
};

let failed = false;
try {
  const rounds = Number(process.env.ROUNDS ?? 3);
  for (let round = 1; round <= rounds; round++) {
    const list = check(await result('{ deployments(first: 1) { totalCount } }'), 'query');
    const created = check(
      await result(`mutation { createDeployment(input: {name: "${uniqueName('lazy')}", targetReplicas: 1,
        resources: {cpuCores: 0.5, memoryMb: 64, storageGb: 1}}) { id } }`),
      'mutation',
    ).createDeployment;
    const watched = check(
      await result('subscription($id: ID!) { deploymentUpdated(id: $id) { id targetReplicas } }', { id: created.id }, { leaveAfterFirst: true }),
      'subscription',
    ).deploymentUpdated;
    if (watched.id !== created.id) throw new Error(`subscription answered ${show(watched)}`);
    console.log(`ok    round ${round}: query (${list.deployments.totalCount} deployments), mutation, subscription`);
  }
  // The client's own closes, each answered: never 1006 (abnormal closure).
  await client.dispose();
  await new Promise((resolve) => setTimeout(resolve, 200));
  if (closes.some((code) => code !== 1000)) throw new Error(`close codes ${show(closes)}, expected only 1000`);
  console.log(`ok    close codes ${show(closes)}`);
} catch (e) {
  console.error(`FAIL  ${e.message}; close codes so far ${show(closes)}`);
  failed = true;
} finally {
  await client.dispose();
}
process.exit(failed ? 1 : 0);
