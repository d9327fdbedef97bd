// What the end-to-end tests run against: the real `handler` binary (built by
// `cargo test`), Azurite, Debian's Chromium driven by playwright-core, and a fake
// chat model that streams slowly.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const root = fileURLToPath(new URL('../..', import.meta.url));
const HANDLER = join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'debug/handler');
const CHROMIUM = '/usr/bin/chromium';

// Azurite's one built-in account and its publicly documented development key.
const AZURITE_ACCOUNT = 'devstoreaccount1';
const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/** A loopback port that was free a moment ago. */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** An account-key connection string for the Azurite table endpoint, as users configure real storage. */
export function connectionString(tableEndpoint) {
  return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};TableEndpoint=${tableEndpoint};`;
}

/** The shared Azurite that `scripts/test` started. */
export function sharedTableEndpoint() {
  const endpoint = (process.env.SESSION_RAG_TEST_TABLE_ENDPOINT || '').trim();
  if (!endpoint) {
    throw new Error('the e2e tests need Azurite: run scripts/test (it starts one and sets SESSION_RAG_TEST_TABLE_ENDPOINT)');
  }
  return endpoint;
}

/** A table name of its own for each run, so runs never see each other's rows. */
export function uniqueTable(prefix) {
  return `${prefix}${Date.now().toString(36)}${process.pid.toString(36)}`.replace(/[^a-z0-9]/gi, '');
}

/**
 * Starts the handler on a free port with only `settings` in its environment (so no
 * model keys leak in: answers are offline), in an empty working directory (so no
 * local.settings.json fills in anything), and waits until it answers.
 */
export async function startHandler(settings) {
  if (!existsSync(HANDLER)) {
    throw new Error(`${HANDLER} is missing: build it first (cargo build; scripts/test does)`);
  }
  const port = await freePort();
  const cwd = mkdtempSync(join(tmpdir(), 'session-rag-e2e-'));
  const child = spawn(HANDLER, [], {
    cwd,
    env: { PATH: process.env.PATH, RUST_LOG: 'warn', FUNCTIONS_CUSTOMHANDLER_PORT: String(port), ...settings },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the handler exited with ${child.exitCode} at start-up`);
    try {
      if ((await fetch(`${base}/`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('the handler did not answer within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    base,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(cwd, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium, headless, with a fresh profile of its own. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (scripts/test does)`);
  }
  const profile = mkdtempSync(join(tmpdir(), 'session-rag-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1200, height: 800 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * The handler with the settings `settings()` gives, running for the tests of the
 * enclosing `describe`; its `base` URL is there once they start.
 */
export function handlerDuring(settings) {
  const handler = {};
  before(async () => {
    Object.assign(handler, await startHandler(await settings()));
  });
  after(async () => {
    await handler.stop?.();
  });
  return handler;
}

/** Durable storage in a table of its own in the shared Azurite. */
export const sharedStorage = (prefix) => ({
  AZURE_STORAGE_CONNECTION_STRING: connectionString(sharedTableEndpoint()),
  CHAT_HISTORY_TABLE: uniqueTable(prefix),
});

/** Chromium for the tests of the enclosing file or `describe`: `context` once they start. */
export function browserDuring() {
  const browser = {};
  before(async () => {
    Object.assign(browser, await launchBrowser());
  });
  after(async () => {
    await browser.close?.();
  });
  return browser;
}

/** What the fake model answers, word by word. */
export const MODEL_ANSWER = 'LONPF2 posts each loan payment to the master file and writes a receipt.';

/**
 * A fake OpenAI-compatible chat-completions server that streams the way the real
 * one does (`"stream": true`: Server-Sent Events of `chat.completion.chunk`s, then
 * `data: [DONE]`), slowly: one word of MODEL_ANSWER every `gapMs`. A question
 * that says "break off" gets a reply that ends after two words, without
 * `[DONE]`. `stats.dropped` counts replies whose client hung up before the end.
 */
export async function startFakeModel({ gapMs = 300 } = {}) {
  const stats = { requests: 0, dropped: 0 };
  const chunk = (delta, finishReason = null) => JSON.stringify({
    id: 'chatcmpl-e2e', object: 'chat.completion.chunk', created: 1732000000, model: 'e2e-model',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  });
  const server = createHttpServer(async (request, response) => {
    let body = '';
    for await (const piece of request) body += piece;
    const payload = JSON.parse(body);
    stats.requests += 1;
    if (!payload.stream) {
      // A follow-up's rewrite: answered in one piece.
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({
        id: 'chatcmpl-e2e', object: 'chat.completion', created: 1732000000, model: 'e2e-model',
        choices: [{ index: 0, message: { role: 'assistant', content: 'LONPF2' }, finish_reason: 'stop' }],
      }));
      return;
    }
    const breakOff = /break off/i.test(payload.messages.at(-1).content);
    let ended = false;
    response.on('close', () => {
      if (!ended) stats.dropped += 1;
    });
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    response.write(`data: ${chunk({ role: 'assistant', content: '' })}\n\n`);
    const words = MODEL_ANSWER.split(/(?<= )/);
    for (const [n, word] of words.entries()) {
      if (n > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
      if (response.destroyed) return;
      if (breakOff && n === 2) {
        ended = true;
        response.destroy();
        return;
      }
      response.write(`data: ${chunk({ content: word })}\n\n`);
    }
    ended = true;
    response.write(`data: ${chunk({}, 'stop')}\n\n`);
    response.end('data: [DONE]\n\n');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stats,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
