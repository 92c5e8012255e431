// Persisted documents as each client library sends them, by PHASE:
// - `clients`: Apollo Client's persisted-queries link (register on a miss,
//   then the hash alone; POST, and GET with useGETForHashedQueries) and
//   urql's persistedExchange, against a server in its default mode;
// - `codegen`: graphql-codegen's client preset with persistedDocuments
//   writes its manifest to MANIFEST_DIR (no server needed);
// - `trusted`: against a server in trusted-only mode loaded with that
//   manifest (and a Relay map): an operation run by the id codegen gave
//   it, a Relay `doc_id`, and a text document refused.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const phase = process.env.PHASE;
const sha256 = (text) => createHash('sha256').update(text).digest('hex');

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}
const show = (value) => JSON.stringify(value);

if (phase === 'codegen') {
  const { generate } = await import('@graphql-codegen/cli');
  const out = process.env.MANIFEST_DIR;
  await generate(
    {
      schema: '../../schema.graphql',
      documents: 'persisted-operations.graphql',
      generates: { [`${out}/`]: { preset: 'client', presetConfig: { persistedDocuments: true } } },
      silent: true,
    },
    true,
  );
  const manifest = JSON.parse(readFileSync(`${out}/persisted-documents.json`, 'utf8'));
  console.log(`codegen wrote ${Object.keys(manifest).length} documents to ${out}/persisted-documents.json`);
  process.exit(0);
}

const { authorization, httpUrl } = await import('./common.mjs');

// Every request a client sends, as the server saw it.
function recordingFetch(sent) {
  return (input, init = {}) => {
    const url = new URL(typeof input === 'string' ? input : input.url);
    const body = init.body ? JSON.parse(init.body) : null;
    const parameters = Object.fromEntries(url.searchParams);
    sent.push({
      method: init.method ?? 'GET',
      hasQuery: Boolean(body?.query ?? parameters.query),
      hash: (body?.extensions ?? JSON.parse(parameters.extensions ?? '{}'))?.persistedQuery?.sha256Hash,
    });
    return fetch(input, init);
  };
}

if (phase === 'clients') {
  const { ApolloClient, InMemoryCache, HttpLink, gql } = await import('@apollo/client/core/index.js');
  const { createPersistedQueryLink } = await import('@apollo/client/link/persisted-queries/index.js');
  for (const useGETForHashedQueries of [false, true]) {
    const sent = [];
    const link = createPersistedQueryLink({ sha256, useGETForHashedQueries }).concat(
      new HttpLink({ uri: httpUrl, headers: { authorization }, fetch: recordingFetch(sent) }),
    );
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    // A document of its own per mode, so the first request is a miss.
    const query = gql`query ApolloCount${useGETForHashedQueries ? 'Get' : 'Post'} { deployments(first: 3) { totalCount } }`;
    for (let n = 0; n < 2; n++) {
      const { data, errors } = await client.query({ query, fetchPolicy: 'network-only' });
      if (errors || typeof data?.deployments?.totalCount !== 'number') fail(`Apollo: ${show({ data, errors })}`);
    }
    const hashOnly = useGETForHashedQueries ? 'GET' : 'POST';
    const expected = [
      { method: hashOnly, hasQuery: false }, // the miss
      { method: 'POST', hasQuery: true }, // registered with the text
      { method: hashOnly, hasQuery: false }, // the hash alone from then on
    ];
    const shape = sent.map(({ method, hasQuery }) => ({ method, hasQuery }));
    if (show(shape) !== show(expected) || sent.some((request) => !request.hash)) {
      fail(`Apollo (useGETForHashedQueries: ${useGETForHashedQueries}) sent ${show(sent)}, expected ${show(expected)}`);
    }
    console.log(`ok: Apollo persisted-queries link, hash-only by ${hashOnly}: ${show(shape)}`);
  }

  const { Client, fetchExchange } = await import('@urql/core');
  const { persistedExchange } = await import('@urql/exchange-persisted');
  const sent = [];
  const client = new Client({
    url: httpUrl,
    exchanges: [persistedExchange({ preferGetForPersistedQueries: true }), fetchExchange],
    fetchOptions: { headers: { authorization } },
    fetch: recordingFetch(sent),
    requestPolicy: 'network-only',
  });
  const query = '{ deployments(first: 4) { totalCount } }';
  for (let n = 0; n < 2; n++) {
    const { data, error } = await client.query(query, {}).toPromise();
    if (error || typeof data?.deployments?.totalCount !== 'number') fail(`urql: ${error?.message ?? show(data)}`);
  }
  const shape = sent.map(({ method, hasQuery }) => ({ method, hasQuery }));
  const expected = [
    { method: 'GET', hasQuery: false },
    { method: 'GET', hasQuery: true },
    { method: 'GET', hasQuery: false },
  ];
  if (show(shape) !== show(expected)) fail(`urql's persistedExchange sent ${show(sent)}, expected ${show(expected)}`);
  console.log(`ok: urql persistedExchange: ${show(shape)}`);
  process.exit(0);
}

if (phase === 'trusted') {
  const manifest = JSON.parse(readFileSync(process.env.MANIFEST, 'utf8'));
  const id = process.env.DEPLOYMENT_ID;
  const request = async (body) => {
    const res = await fetch(httpUrl, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/json', accept: 'application/graphql-response+json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  const [documentId] = Object.entries(manifest).find(([, text]) => text.includes('PersistedStatus')) ?? [];
  if (!documentId) fail(`no PersistedStatus in the manifest: ${show(manifest)}`);
  const byId = await request({ documentId, operationName: 'PersistedStatus', variables: { id } });
  if (byId.status !== 200 || byId.body.data?.deployment?.id !== id) fail(`by codegen's id ${documentId}: ${show(byId)}`);
  console.log(`ok: codegen's document ${documentId} ran by id: ${show(byId.body.data)}`);

  const relay = await request({ doc_id: process.env.RELAY_DOC_ID, variables: {} });
  if (relay.status !== 200 || typeof relay.body.data?.deployments?.totalCount !== 'number') fail(`Relay doc_id: ${show(relay)}`);
  console.log(`ok: Relay doc_id ran: ${show(relay.body.data)}`);

  const text = await request({ query: '{ deployments { totalCount } }' });
  if (text.status !== 400 || text.body.errors?.[0]?.extensions?.code !== 'PERSISTED_QUERY_REQUIRED') fail(`a text document: ${show(text)}`);
  console.log('ok: a document outside the manifests refused with PERSISTED_QUERY_REQUIRED');
  process.exit(0);
}

fail(`PHASE must be clients, codegen or trusted, not ${phase}`);
