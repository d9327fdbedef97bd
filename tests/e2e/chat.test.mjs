// The chat page (GET /api/chat) in headless Chromium, against the real handler and
// Azurite: what a person does with it, and what it must never do.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import {
  connectionString, freePort, launchBrowser, MODEL_ANSWER, sharedTableEndpoint, startFakeModel, startHandler,
  uniqueTable,
} from './harness.mjs';

const TIMEOUT = { timeout: 60_000 };

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Opens the page; records dialogs (dismissing them) and Content-Security-Policy violations. */
async function openChat(base, suffix = '') {
  const page = await browser.context.newPage();
  page.dialogs = [];
  page.policyViolations = [];
  page.on('dialog', (dialog) => {
    page.dialogs.push(dialog.message());
    return dialog.dismiss();
  });
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) page.policyViolations.push(message.text());
  });
  await page.goto(`${base}/api/chat${suffix}`);
  await page.locator('#question').waitFor();
  return page;
}

const turns = (page) => page.locator('#transcript article.turn');
const answers = (page) => page.locator('#transcript article.assistant');
const sessionOf = (page) => new URL(page.url()).hash.replace('#session=', '');
const sources = (answer) => answer.locator('.sources code').allTextContents();

/** Answers that are complete (a streaming answer is `aria-busy` until then). */
const completeAnswers = (page) => page.locator('#transcript article.assistant:not([aria-busy="true"])');

/** Types a question, sends it with Enter and waits for its complete answer. */
async function ask(page, question) {
  const next = completeAnswers(page).nth(await answers(page).count());
  await page.locator('#question').fill(question);
  await page.locator('#question').press('Enter');
  await next.waitFor();
  return next;
}

/**
 * The handler with the settings `settings()` gives, running for the tests of the
 * enclosing `describe`; its `base` URL is there once they start.
 */
function handlerDuring(settings) {
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
const sharedStorage = (prefix) => ({
  AZURE_STORAGE_CONNECTION_STRING: connectionString(sharedTableEndpoint()),
  CHAT_HISTORY_TABLE: uniqueTable(prefix),
});

describe('the chat page with durable storage', () => {
  const handler = handlerDuring(() => sharedStorage('chate2e'));

  /** The id the page keeps for its customer. */
  const customerOf = (page) => page.evaluate(() => localStorage.getItem('session-rag.customer_id'));

  /** The conversation as its owner, the page's customer, reads it through the API. */
  async function getConversation(page, id = sessionOf(page)) {
    const query = new URLSearchParams({ customer_id: await customerOf(page) });
    return fetch(`${handler.base}/api/sessions/${encodeURIComponent(id)}?${query}`);
  }

  /** A durable turn of conversation `id`, asked for the page's customer without the page. */
  async function askElsewhere(page, id, question) {
    const response = await fetch(`${handler.base}/api/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ question, session_id: id, customer_id: await customerOf(page), enable_persistence: true }),
    });
    assert.equal(response.status, 200);
  }

  test('the second answer builds on the first, and every API call carries the function key', TIMEOUT, async () => {
    const page = await openChat(handler.base, '?code=e2e-key');
    const apiCalls = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname.startsWith('/api/')) apiCalls.push(request);
    });

    // Shift+Enter is a new line, not a send.
    await page.locator('#question').fill('What does');
    await page.locator('#question').press('Shift+Enter');
    assert.equal(await page.locator('#question').inputValue(), 'What does\n');
    assert.equal(await turns(page).count(), 0);

    const first = await ask(page, 'What does LONPF2 do?');
    assert.ok((await sources(first)).includes('programs/LONPF2.cbl'));

    // While the answer is on its way: composer disabled, an indicator shown.
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    await page.route('**/api/query', async (route) => { await held; await route.continue(); });
    await page.locator('#question').fill('What copybooks does it use?');
    await page.locator('#question').press('Enter');
    await page.locator('#transcript .pending').waitFor();
    assert.equal(await page.locator('#question').isDisabled(), true);
    assert.equal(await page.locator('#send').isDisabled(), true);
    release();
    const second = answers(page).nth(1);
    await second.waitFor();
    await page.unroute('**/api/query');

    assert.match(await second.locator('.bubble').innerText(), /following up on LONPF2/);
    assert.ok((await sources(second)).includes('programs/LONPF2.cbl'), await sources(second));
    assert.equal(await page.locator('#transcript .badge').count(), 0, 'both turns were saved');
    // Quoted source lines are shown as code, not run together.
    assert.ok(await second.locator('pre code').count() > 0);
    // The composer comes back with the `done` event, which can trail the text on a busy machine.
    await page.locator('#question:enabled').waitFor();

    assert.ok(apiCalls.length >= 2);
    for (const request of apiCalls) {
      assert.equal(request.headers()['x-functions-key'], 'e2e-key', request.url());
    }
    const stored = await (await getConversation(page)).json();
    assert.deepEqual(stored.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
    assert.deepEqual(page.policyViolations, []);
    await page.close();
  });

  test('a new conversation starts with an empty transcript', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await ask(page, 'What does LONPF2 do?');
    const before = sessionOf(page);

    await page.getByRole('button', { name: 'New conversation' }).click();
    assert.equal(await turns(page).count(), 0);
    assert.notEqual(sessionOf(page), before);
    assert.equal(await page.locator('#conversation-title').textContent(), 'New conversation');
    assert.equal(await page.locator('#export-markdown').isDisabled(), true);
    assert.equal(await page.locator('#question').evaluate((el) => el === document.activeElement), true);

    // The next question starts turn 0 of a conversation of its own.
    const answer = await ask(page, 'What copybooks does LONIN1 use?');
    assert.doesNotMatch(await answer.locator('.bubble').innerText(), /following up/);
    const stored = await (await getConversation(page)).json();
    assert.equal(stored.messages.length, 2);
    await page.close();
  });

  test('a conversation from Recent conversations opens and continues', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    const title = 'What does LONPF2 do? (recent conversations)';
    await ask(page, title);
    const id = sessionOf(page);

    await page.getByRole('button', { name: 'New conversation' }).click();
    const entry = page.locator('#recent-list button', { hasText: title });
    await entry.waitFor();
    assert.match(await entry.innerText(), /1 turn/);
    assert.match(await entry.innerText(), /now|second|minute/);
    // Newest first.
    const times = await page.locator('#recent-list time').evaluateAll((all) => all.map((t) => Date.parse(t.dateTime)));
    assert.deepEqual(times, [...times].sort((x, y) => y - x));

    await entry.click();
    await turns(page).nth(1).waitFor();
    assert.equal(sessionOf(page), id);
    assert.equal(await entry.getAttribute('aria-current'), 'true');
    assert.equal(await page.locator('#transcript article.user .bubble').first().innerText(), title);

    const followUp = await ask(page, 'What copybooks does it use?');
    assert.match(await followUp.locator('.bubble').innerText(), /following up on LONPF2/);
    const stored = await (await getConversation(page, id)).json();
    assert.equal(stored.messages.length, 4);
    await page.locator('#recent-list button', { hasText: '2 turns' }).first().waitFor();
    await page.close();
  });

  test('Recent conversations pages through a long list', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    const ids = Array.from({ length: 21 }, (_, n) => `paging-${n}-${Date.now()}`);
    for (const id of ids) await askElsewhere(page, id, 'What does LONPF2 do?');
    await page.reload();
    const entries = page.locator('#recent-list button');
    const more = page.getByRole('button', { name: 'Show more' });
    await more.waitFor();
    assert.equal(await entries.count(), 20);
    while (await more.isVisible()) {
      const shown = await entries.count();
      await more.click();
      await page.waitForFunction((n) => document.querySelectorAll('#recent-list button').length > n, shown);
    }
    const listed = await entries.evaluateAll((all) => all.map((b) => b.dataset.session));
    assert.equal(new Set(listed).size, listed.length, 'no conversation is listed twice');
    for (const id of ids) assert.ok(listed.includes(id), id);
    await page.close();
  });

  test('a reload restores the open conversation from the service', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await ask(page, 'What does LONPF2 do?');
    const id = sessionOf(page);
    // A turn the browser never saw: only the service can show it after the reload.
    await askElsewhere(page, id, 'Which job runs it?');

    const [loaded] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === `/api/sessions/${id}`),
      page.reload(),
    ]);
    assert.equal(loaded.status(), 200);
    await turns(page).nth(3).waitFor();
    assert.deepEqual(await page.locator('#transcript article.user .bubble').allInnerTexts(),
      ['What does LONPF2 do?', 'Which job runs it?']);
    assert.equal(sessionOf(page), id);
    assert.equal(await page.locator('#conversation-title').textContent(), 'What does LONPF2 do?');
    await page.close();
  });

  test('a conversation exports as Markdown and JSON, and is deleted after confirmation', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await ask(page, 'What does LONPF2 do?');
    const id = sessionOf(page);

    const [markdown] = await Promise.all([page.waitForEvent('download'), page.locator('#export-markdown').click()]);
    assert.match(markdown.suggestedFilename(), /\.md$/);
    const text = await readFile(await markdown.path(), 'utf8');
    assert.match(text, /What does LONPF2 do\?/);
    assert.match(text, /LONPF2/);

    const [json] = await Promise.all([page.waitForEvent('download'), page.locator('#export-json').click()]);
    assert.match(json.suggestedFilename(), /\.json$/);
    const exported = JSON.parse(await readFile(await json.path(), 'utf8'));
    assert.equal(exported.session_id, id);
    assert.deepEqual(exported.messages.map((m) => m.role), ['user', 'assistant']);
    assert.equal(exported.messages[0].content, 'What does LONPF2 do?');

    // Cancelling the confirmation keeps the conversation.
    await page.locator('#delete-conversation').click();
    assert.match(page.dialogs.at(-1), /Delete this conversation/);
    assert.equal((await getConversation(page, id)).status, 200);
    assert.equal(await turns(page).count(), 2);

    page.removeAllListeners('dialog');
    page.once('dialog', (dialog) => dialog.accept());
    await page.locator('#recent-list button[aria-current="true"]').waitFor();
    await page.locator('#delete-conversation').click();
    await page.waitForFunction((gone) => location.hash !== `#session=${gone}`, id);
    assert.equal(await turns(page).count(), 0);
    assert.equal((await getConversation(page, id)).status, 404);
    await page.waitForFunction((gone) => !document.querySelector(`#recent-list button[data-session="${gone}"]`), id);
    await page.close();
  });

  test('HTML in a question is shown as text and runs nothing', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    const question = 'What does <img src=x onerror=alert(1)> LONPF2 do? **not bold** <script>alert(2)</script>';
    await ask(page, question);
    assert.equal(await page.locator('#transcript article.user .bubble').innerText(), question);

    await page.reload();
    await turns(page).nth(1).waitFor();
    assert.equal(await page.locator('#transcript article.user .bubble').innerText(), question);
    assert.equal(await page.locator('#transcript img, #transcript script').count(), 0);
    assert.equal(await page.locator('#recent-list img').count(), 0);
    await page.waitForTimeout(300); // a broken image's onerror would have fired by now
    assert.deepEqual(page.dialogs, []);
    await page.close();
  });

  test('a refused question shows the service\'s error and gives the question back', TIMEOUT, async () => {
    const page = await openChat(handler.base, '#session=bad/id');
    await page.locator('#question').fill('What does LONPF2 do?');
    await page.locator('#question').press('Enter');
    const alert = page.getByRole('alert');
    await alert.filter({ hasText: 'not answered' }).waitFor();
    assert.match(await alert.innerText(), /session_id must not contain '\/' \(invalid_session_id\)/);
    assert.equal(await turns(page).count(), 0);
    assert.equal(await page.locator('#question').inputValue(), 'What does LONPF2 do?');
    assert.equal(await page.locator('#question').isDisabled(), false);
    await page.close();
  });

  test('on a phone-width screen in the dark the page still fits and works', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await page.setViewportSize({ width: 375, height: 740 });
    await page.emulateMedia({ colorScheme: 'dark' });
    await ask(page, 'What does LONPF2 do?');
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth), true);
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(background, 'rgb(17, 20, 24)');

    assert.equal(await page.locator('#recent-list').isVisible(), false);
    const toggle = page.getByRole('button', { name: 'Conversations', exact: true });
    await toggle.click();
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    assert.equal(await page.locator('#new-conversation').isVisible(), true);
    await page.close();
  });
});

describe('the chat page behind App Service Authentication', () => {
  const handler = handlerDuring(() => ({ ...sharedStorage('chatauth'), TRUST_EASY_AUTH_HEADERS: 'true' }));

  test('conversations belong to the signed-in user', TIMEOUT, async () => {
    const principal = { 'X-MS-CLIENT-PRINCIPAL-ID': 'e2e-principal' };
    const page = await browser.context.newPage();
    // What App Service Authentication adds to every request of a signed-in user.
    await page.setExtraHTTPHeaders(principal);
    await page.goto(`${handler.base}/api/chat`);
    await page.locator('#who', { hasText: 'Signed in as e2e-principal' }).waitFor();
    await ask(page, 'What does LONPF2 do?');
    await page.locator('#recent-list button', { hasText: 'What does LONPF2 do?' }).waitFor();

    const listing = await (await fetch(`${handler.base}/api/sessions`, { headers: principal })).json();
    assert.deepEqual(listing.sessions.map((s) => [s.session_id, s.customer_id]), [[sessionOf(page), 'e2e-principal']]);
    await page.close();
  });
});

describe('the chat page while storage is down', () => {
  // Nothing listens on that port: every storage call fails at once.
  const handler = handlerDuring(async () => ({
    AZURE_STORAGE_CONNECTION_STRING: connectionString(`http://127.0.0.1:${await freePort()}/devstoreaccount1`),
    STORAGE_TIMEOUT_SECONDS: '2',
  }));

  test('an answer that was not saved says so, with the warning', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    const answer = await ask(page, 'What does LONPF2 do?');
    const badge = answer.locator('.badge');
    assert.equal(await badge.innerText(), 'Not saved');
    assert.match(await badge.getAttribute('title'), /storage/i);
    assert.match(await answer.locator('.note').innerText(), /^Not saved: .*storage/i);
    assert.ok((await sources(answer)).includes('programs/LONPF2.cbl'));
    await page.locator('#recent-status.problem').waitFor();
    assert.match(await page.locator('#recent-status').innerText(), /unavailable/);
    await page.close();
  });
});

describe('the chat page with a model that streams slowly', () => {
  const model = {};
  before(async () => {
    Object.assign(model, await startFakeModel({ gapMs: 300 }));
  });
  after(async () => {
    await model.stop?.();
  });
  const handler = handlerDuring(() => ({
    ...sharedStorage('chatstream'), OPENAI_BASE_URL: model.url, OPENAI_MODEL: 'e2e-model',
  }));
  const words = MODEL_ANSWER.split(' ');

  /** Sends `question` and waits until the first words of its answer are on screen. */
  async function sendAndWaitForText(page, question) {
    await page.locator('#question').fill(question);
    await page.locator('#question').press('Enter');
    const answer = answers(page).last();
    await answer.locator('.bubble', { hasText: words[0] }).waitFor();
    return answer;
  }

  /** The conversation open on `page`, as the service has it (its status only). */
  async function storedStatus(page) {
    const customer = await page.evaluate(() => localStorage.getItem('session-rag.customer_id'));
    const query = new URLSearchParams({ customer_id: customer });
    return (await fetch(`${handler.base}/api/sessions/${encodeURIComponent(sessionOf(page))}?${query}`)).status;
  }

  test('the answer appears as the model writes it, with its sources first', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    const answer = await sendAndWaitForText(page, 'What does LONPF2 do?');
    // Part of the answer is there while the model is still writing the rest.
    assert.equal(await answer.getAttribute('aria-busy'), 'true');
    assert.doesNotMatch(await answer.locator('.bubble').innerText(), /receipt\.$/);
    assert.ok((await sources(answer)).includes('programs/LONPF2.cbl'));
    assert.equal(await page.getByRole('button', { name: 'Stop', exact: true }).isVisible(), true);
    assert.equal(await page.locator('#send').isVisible(), false);

    await completeAnswers(page).first().waitFor();
    assert.equal(await answer.locator('.bubble').innerText(), MODEL_ANSWER);
    assert.equal(await answer.locator('.badge').count(), 0, 'the turn was saved');
    assert.equal(await page.getByRole('button', { name: 'Stop', exact: true }).isVisible(), false);
    assert.equal(await page.locator('#question').isDisabled(), false);
    assert.equal(await storedStatus(page), 200);
    assert.deepEqual(page.policyViolations, []);
    await page.close();
  });

  test('Stop ends the answer: what came stays, marked as not saved, and nothing is stored', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    const droppedBefore = model.stats.dropped;
    const answer = await sendAndWaitForText(page, 'What does LONPF2 do?');
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await answer.locator('.badge', { hasText: 'Stopped, not saved' }).waitFor();
    const shown = await answer.locator('.bubble').innerText();
    assert.ok(shown.startsWith(words[0]), shown);
    assert.notEqual(shown, MODEL_ANSWER);
    assert.equal(await answer.getAttribute('aria-busy'), null);
    assert.equal(await page.locator('#question').isDisabled(), false);
    assert.equal(await page.locator('#send').isVisible(), true);
    assert.equal(await page.locator('#error').isVisible(), false);

    // The model's call was cancelled, and past the time it would have finished
    // nothing was stored.
    const deadline = Date.now() + 10_000;
    while (model.stats.dropped === droppedBefore) {
      assert.ok(Date.now() < deadline, 'the model call was not cancelled');
      await page.waitForTimeout(50);
    }
    await page.waitForTimeout(300 * words.length);
    assert.equal(await storedStatus(page), 404);
    await page.close();
  });

  test('an error during the answer is shown where the answer was', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await page.locator('#question').fill('What does LONPF2 do? Please break off.');
    await page.locator('#question').press('Enter');
    const answer = answers(page).last();
    const failure = answer.getByRole('alert');
    await failure.waitFor();
    assert.match(await failure.innerText(), /^The answer failed: openai failed: .* \(upstream_error\)$/);
    assert.equal(await answer.locator('.bubble').innerText(), await failure.innerText());
    assert.equal(await answer.locator('.badge').innerText(), 'Not saved');
    assert.equal(await page.locator('#question').inputValue(), 'What does LONPF2 do? Please break off.');
    assert.equal(await page.locator('#question').isDisabled(), false);
    assert.equal(await storedStatus(page), 404);
    await page.close();
  });
});
