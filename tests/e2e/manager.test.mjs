// The conversation manager on the chat page, in headless Chromium against the real
// handler and Azurite: renaming from the header, deleting every conversation,
// thumbs up / down with a comment, and searching; and that another customer's page
// can do none of it to someone else's conversations.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { browserDuring, handlerDuring, sharedStorage } from './harness.mjs';
import { answers, ask, browserCustomer, openChat as openChatIn, sessionOf } from './pages.mjs';

const TIMEOUT = { timeout: 60_000 };

const browser = browserDuring();

const openChat = (base, options) => openChatIn(browser, base, options);

async function apiJson(base, path, { method = 'GET', headers = {}, body } = {}) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: response.status === 204 ? null : await response.json() };
}

describe('the conversation manager on the chat page', () => {
  const handler = handlerDuring(() => sharedStorage('managere2e'));

  test('the open conversation is renamed from its header: Enter saves, Escape cancels', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await ask(page, 'What does LONPF2 do?');
    const title = page.locator('#conversation-title');
    const editor = page.locator('#title-editor');
    const entry = page.locator('#recent-list button[aria-current="true"] .recent-title');
    await entry.waitFor();

    await page.getByRole('button', { name: 'Rename' }).click();
    assert.equal(await editor.isVisible(), true);
    assert.equal(await editor.inputValue(), 'What does LONPF2 do?');
    assert.equal(await editor.evaluate((input) => input === document.activeElement), true);
    const patches = [];
    page.on('request', (request) => { if (request.method() === 'PATCH') patches.push(request); });
    await editor.fill('Not this one');
    await editor.press('Escape');
    assert.equal(await editor.isVisible(), false);
    assert.equal(await title.textContent(), 'What does LONPF2 do?');
    assert.equal(patches.length, 0);

    await page.getByRole('button', { name: 'Rename' }).click();
    await editor.fill('  Loan posting <b>LONPF2</b>  ');
    await editor.press('Enter');
    await page.waitForFunction(() => document.querySelector('#conversation-title').textContent === 'Loan posting <b>LONPF2</b>');
    assert.equal(await editor.isVisible(), false);
    await page.waitForFunction(() => document.querySelector('#recent-list button[aria-current="true"] .recent-title')?.textContent === 'Loan posting <b>LONPF2</b>');
    assert.equal(await page.locator('#conversation-title b, #recent-list b').count(), 0);

    // A title the service refuses is reported, and the editor stays open.
    await page.getByRole('button', { name: 'Rename' }).click();
    await editor.fill('   ');
    await editor.press('Enter');
    await page.getByRole('alert').filter({ hasText: 'invalid_title' }).waitFor();
    assert.equal(await editor.isVisible(), true);
    await editor.press('Escape');

    const id = sessionOf(page);
    await page.reload();
    await answers(page).first().waitFor();
    assert.equal(await title.textContent(), 'Loan posting <b>LONPF2</b>');
    const listing = await apiJson(handler.base, `/api/sessions?customer_id=${await browserCustomer(page)}`);
    assert.deepEqual(listing.body.sessions.map((s) => [s.session_id, s.title]).filter(([s]) => s === id),
      [[id, 'Loan posting <b>LONPF2</b>']]);
    await page.close();
  });

  test('thumbs up or down with a comment are kept, and shown again after a reload', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await ask(page, 'What does LONPF2 do?');
    const second = await ask(page, 'What copybooks does it use?');
    const good = (answer) => answer.getByRole('button', { name: 'Good answer' });
    const bad = (answer) => answer.getByRole('button', { name: 'Bad answer' });

    await good(second).click();
    await page.waitForFunction(() => document.querySelectorAll('#transcript article.assistant')[1]
      .querySelector('[aria-label="Good answer"]').getAttribute('aria-pressed') === 'true');
    await second.getByRole('button', { name: 'Add a comment' }).click();
    await second.getByRole('textbox', { name: /Comment on this answer/ }).fill('Exactly the copybooks.\nThanks!');
    await second.getByRole('button', { name: 'Save comment' }).click();
    await second.locator('.feedback-note', { hasText: 'Exactly the copybooks.' }).waitFor();

    await page.reload();
    const reloaded = answers(page);
    await reloaded.nth(1).locator('.feedback').waitFor();
    assert.equal(await good(reloaded.nth(1)).getAttribute('aria-pressed'), 'true');
    assert.equal(await bad(reloaded.nth(1)).getAttribute('aria-pressed'), 'false');
    assert.equal(await reloaded.nth(1).locator('.feedback-note').innerText(), 'Your comment: Exactly the copybooks.\nThanks!');
    assert.equal(await good(reloaded.nth(0)).getAttribute('aria-pressed'), 'false');
    assert.equal(await bad(reloaded.nth(0)).getAttribute('aria-pressed'), 'false');

    // Down instead of up keeps the comment; pressing it again takes the feedback back.
    const id = sessionOf(page);
    const customer = await browserCustomer(page);
    const read = async () => (await apiJson(handler.base, `/api/sessions/${encodeURIComponent(id)}?customer_id=${customer}`)).body;
    await bad(reloaded.nth(1)).click();
    await page.waitForFunction(() => document.querySelectorAll('#transcript article.assistant')[1]
      .querySelector('[aria-label="Bad answer"]').getAttribute('aria-pressed') === 'true');
    let document = await read();
    assert.deepEqual([document.messages[3].feedback.rating, document.messages[3].feedback.comment],
      ['down', 'Exactly the copybooks.\nThanks!']);
    assert.equal(document.messages[1].feedback, undefined);

    await bad(reloaded.nth(1)).click();
    await page.waitForFunction(() => document.querySelectorAll('#transcript article.assistant')[1]
      .querySelector('[aria-label="Bad answer"]').getAttribute('aria-pressed') === 'false');
    document = await read();
    assert.ok(document.messages.every((m) => m.feedback === undefined));
    await page.close();
  });

  test('the search box narrows Recent conversations to those holding every word, with snippets', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await ask(page, 'What does LONPF2 do for the mango harvest?');
    const mango = sessionOf(page);
    await page.getByRole('button', { name: 'New conversation' }).click();
    await ask(page, 'What does LONES1 do for the kiwi harvest?');
    await page.locator('#recent-list button').nth(1).waitFor();

    const box = page.getByRole('searchbox', { name: 'Search your conversations' });
    await box.fill('MANGO harvest');
    await box.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('#recent-list button').length === 1);
    const result = page.locator('#recent-list button');
    assert.equal(await result.getAttribute('data-session'), mango);
    assert.match(await result.locator('.recent-snippet').first().innerText(), /mango harvest/);

    await box.fill('mango kiwi');
    await box.press('Enter');
    await page.locator('#recent-status', { hasText: 'No conversation holds every word' }).waitFor();
    assert.equal(await page.locator('#recent-list button').count(), 0);

    await box.fill('mango');
    await box.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('#recent-list button').length === 1);
    await result.click();
    await answers(page).first().waitFor();
    assert.equal(sessionOf(page), mango);
    assert.equal(await page.locator('#transcript article.user .bubble').first().innerText(), 'What does LONPF2 do for the mango harvest?');

    // Emptied, the box shows every conversation again.
    await box.fill('');
    await box.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('#recent-list button').length >= 2);
    assert.equal(await page.locator('#recent-list .recent-snippet').count(), 0);
    await page.close();
  });

  test('"Delete all conversations" asks first, then removes every conversation of this customer only', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    await ask(page, 'What does LONPF2 do?');
    await page.getByRole('button', { name: 'New conversation' }).click();
    await ask(page, 'What does LONES1 do?');
    const customer = await browserCustomer(page);
    // Someone else's conversation, asked without the page.
    const other = await apiJson(handler.base, '/api/query', {
      method: 'POST',
      body: { question: 'What does LONPF2 do?', session_id: `other-${Date.now()}`, customer_id: 'someone-else', enable_persistence: true },
    });
    assert.equal(other.status, 200);
    await page.locator('#recent-list button').nth(1).waitFor();

    await page.getByRole('button', { name: 'Delete all conversations' }).click();
    assert.match(page.dialogs.at(-1), /Delete all your conversations/);
    assert.ok((await apiJson(handler.base, `/api/sessions?customer_id=${customer}`)).body.sessions.length >= 2);

    page.answerDialogs = true;
    await page.getByRole('button', { name: 'Delete all conversations' }).click();
    await page.locator('#recent-status', { hasText: 'No conversations yet.' }).waitFor();
    assert.equal(await page.locator('#transcript article').count(), 0);
    assert.equal(await page.locator('#conversation-title').textContent(), 'New conversation');
    assert.deepEqual((await apiJson(handler.base, `/api/sessions?customer_id=${customer}`)).body.sessions, []);
    const survivor = await apiJson(handler.base, `/api/sessions/${other.body.session_id}?customer_id=someone-else`);
    assert.equal(survivor.status, 200);
    await page.close();
  });
});

describe('the conversation manager for two signed-in customers', () => {
  const handler = handlerDuring(() => ({ ...sharedStorage('managerauth'), TRUST_EASY_AUTH_HEADERS: 'true' }));
  const alice = { 'X-MS-CLIENT-PRINCIPAL-ID': 'e2e-alice' };
  const mallory = { 'X-MS-CLIENT-PRINCIPAL-ID': 'e2e-mallory' };

  test("another customer's page cannot see, rename, rate or delete a conversation", TIMEOUT, async () => {
    const page = await openChat(handler.base, { headers: alice });
    await page.locator('#who', { hasText: 'Signed in as e2e-alice' }).waitFor();
    const answer = await ask(page, 'What does LONPF2 do?');
    const id = sessionOf(page);
    await page.getByRole('button', { name: 'Rename' }).click();
    await page.locator('#title-editor').fill("Alice's loans");
    await page.locator('#title-editor').press('Enter');
    await page.waitForFunction(() => document.querySelector('#conversation-title').textContent === "Alice's loans");
    await answer.getByRole('button', { name: 'Good answer' }).click();
    await page.waitForFunction(() => document.querySelector('[aria-label="Good answer"]').getAttribute('aria-pressed') === 'true');

    // Mallory opens a link to alice's conversation: nothing of it shows.
    const intruder = await openChat(handler.base, { headers: mallory, suffix: `#session=${encodeURIComponent(id)}` });
    await intruder.locator('#who', { hasText: 'Signed in as e2e-mallory' }).waitFor();
    await intruder.locator('#recent-status', { hasText: 'No conversations yet.' }).waitFor();
    await intruder.locator('#transcript .empty').waitFor();
    assert.equal(await intruder.locator('#transcript article').count(), 0);
    assert.equal(await intruder.locator('.feedback').count(), 0);
    assert.equal(await intruder.locator('#conversation-title').textContent(), 'New conversation');
    assert.equal(await intruder.locator('#rename-conversation').isDisabled(), true);
    assert.doesNotMatch(await intruder.locator('body').innerText(), /Alice's loans|LONPF2 reads|posts/);
    const search = intruder.getByRole('searchbox', { name: 'Search your conversations' });
    await search.fill('LONPF2');
    await search.press('Enter');
    await intruder.locator('#recent-status', { hasText: 'No conversation holds every word' }).waitFor();
    assert.equal(await intruder.locator('#recent-list button').count(), 0);

    // Her "Delete all" deletes only her own (none).
    intruder.answerDialogs = true;
    await intruder.getByRole('button', { name: 'Delete all conversations' }).click();
    await intruder.waitForFunction(() => !document.querySelector('#delete-all').disabled);

    // Nor can she change it through the API with her own identity.
    const base = `/api/sessions/${encodeURIComponent(id)}`;
    assert.equal((await apiJson(handler.base, base, { method: 'PATCH', headers: mallory, body: { title: 'Mine' } })).status, 404);
    assert.equal((await apiJson(handler.base, `${base}/turns/0/feedback`, { method: 'PUT', headers: mallory, body: { rating: 'down' } })).status, 404);
    assert.equal((await apiJson(handler.base, `${base}/turns/0/feedback`, { method: 'DELETE', headers: mallory })).status, 404);
    assert.equal((await apiJson(handler.base, base, { headers: mallory })).status, 404);

    // Alice's conversation is as she left it.
    await page.reload();
    await answers(page).first().locator('.feedback').waitFor();
    assert.equal(await page.locator('#conversation-title').textContent(), "Alice's loans");
    assert.equal(await answers(page).first().getByRole('button', { name: 'Good answer' }).getAttribute('aria-pressed'), 'true');
    const listing = await apiJson(handler.base, '/api/sessions', { headers: alice });
    assert.deepEqual(listing.body.sessions.map((s) => [s.session_id, s.title]), [[id, "Alice's loans"]]);
    await intruder.close();
    await page.close();
  });
});
