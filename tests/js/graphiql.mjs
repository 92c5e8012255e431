// The GraphiQL page at GET /graphql, in a real headless Chromium: it renders, a
// dev-mode server's token sits in the Headers tab, a query run from the editor
// is authenticated by it, and the docs explorer introspects the schema.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { authorization, baseUrl, fail, httpUrl, token } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const screenshot = join(here, 'generated', 'graphiql.png');
const query = '{ deployments(first: 3) { totalCount nodes { name health } } }';

// playwright-core ships no browser; Debian's chromium package is the one we use.
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  fail(`no Chromium at ${executablePath}: apt-get install -y chromium, or set CHROMIUM_PATH`);
}

// The files the server embeds, and the npm packages they come from: what it
// serves must be those packages' bytes.
const require = createRequire(import.meta.url);
const file = (pkg, path) => join(dirname(require.resolve(`${pkg}/package.json`)), path);
const embedded = {
  'react.production.min.js': file('react', 'umd/react.production.min.js'),
  'react-dom.production.min.js': file('react-dom', 'umd/react-dom.production.min.js'),
  'graphiql.min.js': file('graphiql', 'graphiql.min.js'),
  'graphiql.min.css': file('graphiql', 'graphiql.min.css'),
};

mkdirSync(dirname(screenshot), { recursive: true });

const step = (message) => console.log(`ok   ${message}`);
const started = Date.now();
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
// Checks throw, so the browser is closed before fail() exits.
const check = (ok, message) => {
  if (!ok) throw new Error(message);
};

// Wide enough for the docs explorer, editors and result side by side.
const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
try {
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));

  // Anything leaving the machine is blocked and reported (the test fails on
  // it); the server's own origin passes.
  const blocked = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${baseUrl}/`)) return route.fallback();
    blocked.push(url);
    return route.abort('blockedbyclient');
  });
  const loaded = [];
  page.on('requestfinished', (r) => loaded.push(r.url()));

  // The request GraphiQL sends for our query, to see which headers it carried.
  let executed;
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url() === httpUrl && (r.postData() ?? '').includes('deployments(first: 3)')) {
      executed = r;
    }
  });

  // 1. A browser navigation sends Accept: text/html, which gets the page.
  const response = await page.goto(httpUrl);
  check(response.ok(), `GET ${httpUrl} answered ${response.status()}`);
  check(
    (response.headers()['content-type'] ?? '').startsWith('text/html'),
    `GET ${httpUrl} from a browser answered ${response.headers()['content-type']}, not text/html`,
  );
  await page.waitForSelector('.graphiql-container .graphiql-query-editor .CodeMirror', { timeout: 15000 }).catch(() => {});
  check(
    (await page.locator('.graphiql-container').count()) === 1,
    `GraphiQL did not render; errors: ${errors.join(' | ') || 'none'}; blocked: ${blocked.join(' ') || 'none'}`,
  );
  const policy = response.headers()['content-security-policy'] ?? '';
  check(
    policy.includes("default-src 'none'") && policy.includes("script-src 'self'") && !policy.includes('http'),
    `the page's Content-Security-Policy is ${JSON.stringify(policy)}`,
  );
  step(`page rendered GraphiQL 3.9.0 from the server itself, under ${policy.split(';')[0]}; ...`);

  // 1b. The embedded files are the npm packages' files, byte for byte, and
  // cached for good.
  for (const [name, path] of Object.entries(embedded)) {
    const url = loaded.find((u) => u.endsWith(`/${name}`));
    check(url, `the page did not load ${name}; it loaded ${loaded.join(' ')}`);
    const served = await fetch(url);
    const bytes = Buffer.from(await served.arrayBuffer());
    check(bytes.equals(readFileSync(path)), `${url} is not ${path}`);
    check(
      (served.headers.get('cache-control') ?? '').includes('immutable'),
      `${url} is served with cache-control ${served.headers.get('cache-control')}`,
    );
  }
  step(`the four embedded files are the npm packages' bytes, served immutable`);

  // CodeMirror 5 keeps its editor object on the .CodeMirror element.
  const editorText = (selector) =>
    page.$eval(selector, (el) => el.CodeMirror.getValue()).catch((e) => `<${selector}: ${e.message}>`);

  // 2. Dev mode: the Headers tab is open, showing the token.
  const headersTab = page.locator('.graphiql-editor-tools button[data-name="headers"]');
  const headersEditor = '.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror';
  check(
    (await headersTab.count()) === 1 && (await headersTab.getAttribute('class'))?.split(' ').includes('active'),
    'the Headers tab is not open (is the server in dev mode, without JWT_SECRET?)',
  );
  check(await page.locator(headersEditor).isVisible(), 'the headers editor is not visible');
  const headers = await editorText(headersEditor);
  // What the editor shows on screen, not just its model.
  const shown = await page.locator(`${headersEditor} .CodeMirror-code`).innerText();
  const bearer = new RegExp(`"Authorization"\\s*:\\s*"Bearer ${token.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`);
  check(
    bearer.test(headers) && shown.includes(token),
    `the headers editor holds ${headers}, not "Authorization": "Bearer <DEPLOYQL_TOKEN>"`,
  );
  step(`Headers tab is open with ${headers.replace(/\s+/g, ' ').replace(token, '<DEPLOYQL_TOKEN>')}`);

  // 3. Run a query from the editor; the response pane shows data.
  await page.$eval('.graphiql-query-editor .CodeMirror', (el, q) => el.CodeMirror.setValue(q), query);
  await page.click('button.graphiql-execute-button');
  const result = 'section.result-window .CodeMirror';
  await page
    .waitForFunction((s) => document.querySelector(s)?.CodeMirror.getValue().includes('"totalCount"'), result, {
      timeout: 10000,
    })
    .catch(() => {});
  const resultText = await editorText(result);
  check(
    resultText.includes('"totalCount"') && !resultText.includes('"errors"'),
    `the response pane shows ${resultText.slice(0, 400)}`,
  );
  check(
    executed?.headers().authorization === authorization,
    `GraphiQL's POST carried authorization ${JSON.stringify(executed?.headers().authorization)}, not the Headers tab's token`,
  );
  step(`query ran with the Headers tab's token: ${resultText.replace(/\s+/g, ' ').slice(0, 120)}`);

  // 3b. A new tab starts with the token too (GraphiQL fills new tabs from defaultHeaders).
  await page.click('button[aria-label="Add tab"]');
  await page.locator(headersEditor).waitFor({ timeout: 5000 }).catch(() => {});
  const newTabHeaders = await editorText(headersEditor);
  check(bearer.test(newTabHeaders), `a new tab's headers editor holds ${newTabHeaders}`);
  step('a new tab carries the token as well');

  // 4. The docs explorer, fed by introspection from the browser.
  await page.click('button[aria-label="Show Documentation Explorer"]');
  const queryRoot = page.locator('.graphiql-doc-explorer-content a.graphiql-doc-explorer-type-name', {
    hasText: /^Query$/,
  });
  await queryRoot.first().waitFor({ timeout: 10000 }).catch(() => {});
  check(
    (await queryRoot.count()) > 0,
    `the docs explorer shows no Query root: ${(await page.locator('.graphiql-doc-explorer').innerText().catch(() => 'not open')).slice(0, 300)}`,
  );
  await queryRoot.first().click();
  const fieldNames = page.locator('.graphiql-doc-explorer-content .graphiql-doc-explorer-field-name');
  await fieldNames.first().waitFor({ timeout: 10000 }).catch(() => {});
  const fields = await fieldNames.allInnerTexts();
  const missing = ['deployment', 'deployments', 'node'].filter((f) => !fields.includes(f));
  check(missing.length === 0, `the docs explorer's Query lacks ${missing.join(', ')}; it lists ${fields.join(', ')}`);
  step(`docs explorer lists Query { ${fields.join(', ')} }`);

  // 5. A picture for people, and no errors along the way.
  await page.screenshot({ path: screenshot });
  step(`screenshot at ${screenshot}`);
  check(blocked.length === 0, `the page asked for outside URLs (blocked): ${blocked.join(' ')}`);
  check(errors.length === 0, `the page logged errors: ${errors.join(' | ')}`);
  step(`no console or page errors; ${((Date.now() - started) / 1000).toFixed(1)}s`);
} catch (e) {
  // What the page looked like when it went wrong.
  await page.screenshot({ path: screenshot }).catch(() => {});
  await browser.close();
  fail(e.message);
}
await browser.close();
