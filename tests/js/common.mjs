// Shared by every script: where the server is, how to authenticate, how to fail.
import { randomBytes } from 'node:crypto';

export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

function env(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

export const baseUrl = env('DEPLOYQL_URL').replace(/\/+$/, '');
export const token = env('DEPLOYQL_TOKEN');
export const authorization = `Bearer ${token}`;
export const httpUrl = `${baseUrl}/graphql`;
export const wsUrl = `${httpUrl.replace(/^http/, 'ws')}/ws`;

// Deployment names must be unique among the user's live deployments.
export const uniqueName = (prefix) => `${prefix}-${randomBytes(6).toString('hex')}`;

// A plain GraphQL-over-HTTP POST, answered as JSON whatever the status code
// (application/graphql-response+json may use 4xx for request errors).
export async function post(query, variables) {
  const res = await fetch(httpUrl, {
    method: 'POST',
    headers: {
      authorization,
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
    },
    body: JSON.stringify({ query, variables }),
  });
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    fail(`POST ${httpUrl} answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
}

export const show = (value) => JSON.stringify(value);
