// The satisfaction figure on the chat page, in headless Chromium against the real
// handler and Azurite: it follows the customer's thumbs (a change of mind and a
// removal included), survives a reload, and shows nobody else's ratings.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { browserDuring, handlerDuring, sharedStorage } from './harness.mjs';

const TIMEOUT = { timeout: 60_000 };

const browser = browserDuring();

async function openChat(base, headers) {
  const page = await browser.context.newPage();
  if (headers) await page.setExtraHTTPHeaders(headers);
  await page.goto(`${base}/api/chat`);
  await page.locator('#question').waitFor();
  return page;
}

const answers = (page) => page.locator('#transcript article.assistant');

async function ask(page, question) {
  const next = answers(page).nth(await answers(page).count());
  await page.locator('#question').fill(question);
  await page.locator('#question').press('Enter');
  await next.locator('.feedback').waitFor();
  return next;
}

/** Presses a thumb and waits until the page shows it pressed (`true`) or not. */
async function press(answer, name, pressed) {
  const thumb = answer.getByRole('button', { name });
  await thumb.click();
  await answer.page().waitForFunction(
    ([element, expected]) => element.getAttribute('aria-pressed') === expected,
    [await thumb.elementHandle(), String(pressed)],
  );
}

const figure = (page) => page.locator('#satisfaction');

async function showsFigure(page, text) {
  await page.waitForFunction((expected) => document.querySelector('#satisfaction').textContent === expected, text);
}

describe('the satisfaction figure', () => {
  const handler = handlerDuring(() => sharedStorage('satisfactione2e'));

  test('follows every thumb the customer presses and is there again after a reload', TIMEOUT, async () => {
    const page = await openChat(handler.base);
    const first = await ask(page, 'What does LONPF2 do?');
    const second = await ask(page, 'What copybooks does it use?');
    assert.equal(await figure(page).textContent(), '', 'nothing rated yet');

    await press(first, 'Good answer', true);
    await showsFigure(page, '\u{1F44D} 100% of 1 rated');
    await press(second, 'Good answer', true);
    await showsFigure(page, '\u{1F44D} 100% of 2 rated');
    // A change of mind, then a rating taken back.
    await press(second, 'Bad answer', true);
    await showsFigure(page, '\u{1F44D} 50% of 2 rated');
    assert.equal(await figure(page).getAttribute('title'), '1 good, 1 bad');
    await press(first, 'Good answer', false);
    await showsFigure(page, '\u{1F44D} 0% of 1 rated');

    await page.reload();
    await answers(page).nth(1).locator('.feedback').waitFor();
    await showsFigure(page, '\u{1F44D} 0% of 1 rated');
    await page.close();
  });
});

describe("the satisfaction figure of a signed-in customer", () => {
  const handler = handlerDuring(() => ({ ...sharedStorage('satisfactionauth'), TRUST_EASY_AUTH_HEADERS: 'true' }));

  test("shows only the customer's own ratings", TIMEOUT, async () => {
    const alice = await openChat(handler.base, { 'X-MS-CLIENT-PRINCIPAL-ID': 'e2e-alice' });
    await press(await ask(alice, 'What does LONPF2 do?'), 'Good answer', true);
    await showsFigure(alice, '\u{1F44D} 100% of 1 rated');

    const bob = await openChat(handler.base, { 'X-MS-CLIENT-PRINCIPAL-ID': 'e2e-bob' });
    await bob.locator('#who', { hasText: 'Signed in as e2e-bob' }).waitFor();
    const answer = await ask(bob, 'What does LONES1 do?');
    assert.equal(await figure(bob).textContent(), '');
    await press(answer, 'Bad answer', true);
    await showsFigure(bob, '\u{1F44D} 0% of 1 rated');

    await alice.reload();
    await showsFigure(alice, '\u{1F44D} 100% of 1 rated');
    await alice.close();
    await bob.close();
  });
});
