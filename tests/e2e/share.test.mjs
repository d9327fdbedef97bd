// Sharing on the chat page, in headless Chromium against the real handler and
// Azurite: Share makes a link to a read-only snapshot, which opens without the
// owner's customer id and without an input box, and "Stop sharing" kills it; and
// another customer cannot share someone else's conversation.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { browserDuring, handlerDuring, sharedStorage } from './harness.mjs';
import { answers, ask, browserCustomer, openChat as openChatIn, sessionOf } from './pages.mjs';

const TIMEOUT = { timeout: 60_000 };

const browser = browserDuring();

const openChat = (base, options) => openChatIn(browser, base, options);

/** Clicks Share and returns the link the page shows. */
async function share(page) {
  await page.getByRole('button', { name: 'Share', exact: true }).click();
  await page.locator('#share-status', { hasText: /Link copied|Copy the link above/ }).waitFor();
  return page.locator('#share-link').inputValue();
}

describe('sharing a conversation from the chat page', () => {
  const handler = handlerDuring(() => sharedStorage('sharee2e'));

  test('Share links to a read-only snapshot without the customer id; Stop sharing kills it', TIMEOUT, async () => {
    const page = await openChat(handler.base, { suffix: '?code=not-for-the-link' });
    await ask(page, 'What does LONPF2 do for the pear orchard?');
    const customer = await browserCustomer(page);
    const session = sessionOf(page);
    const link = await share(page);
    assert.match(link, /\/api\/chat#shared=[A-Za-z0-9_-]{22}$/);
    assert.ok(!link.includes('code='), link);
    // A later turn is not in the snapshot.
    await ask(page, 'What does LONES1 do for the plum orchard?');

    const viewer = await browser.context.newPage();
    viewer.requested = [];
    viewer.on('request', (request) => viewer.requested.push(request.url()));
    await viewer.goto(link);
    await answers(viewer).first().waitFor();
    assert.equal(await viewer.locator('#conversation-title').textContent(), 'What does LONPF2 do for the pear orchard?');
    assert.equal(await viewer.locator('#transcript article').count(), 2);
    const text = await viewer.locator('body').innerText();
    assert.match(text, /pear orchard/);
    assert.doesNotMatch(text, /plum orchard/);
    assert.ok(!text.includes(customer), 'the owner\'s customer id shows');
    assert.ok(!(await viewer.content()).includes(customer), 'the owner\'s customer id is in the page');
    assert.ok(!text.includes(session), 'the session id shows');
    // Read-only: nothing to type into, nothing to change, nobody's conversations.
    assert.equal(await viewer.locator('textarea, input, #composer, #sidebar').count(), 0);
    assert.equal(await viewer.getByRole('button').count(), 0);
    assert.ok(viewer.requested.every((url) => !url.includes('customer_id') && !url.includes('/api/sessions') && !url.includes('/api/whoami')),
      viewer.requested.join('\n'));

    await page.getByRole('button', { name: 'Stop sharing' }).click();
    await page.locator('#share-status', { hasText: 'Sharing stopped' }).waitFor();
    await viewer.reload();
    await viewer.locator('#transcript .empty', { hasText: 'not available' }).waitFor();
    assert.equal(await viewer.locator('#transcript article').count(), 0);

    // Sharing again makes a new link that opens; the old one stays dead.
    const again = await share(page);
    assert.notEqual(again, link);
    await viewer.goto(again);
    await viewer.locator('#transcript article').nth(3).waitFor();
    assert.match(await viewer.locator('body').innerText(), /plum orchard/);
    await viewer.close();
    await page.close();
  });
});

describe('sharing for two signed-in customers', () => {
  const handler = handlerDuring(() => ({ ...sharedStorage('sharingauth'), TRUST_EASY_AUTH_HEADERS: 'true' }));
  const alice = { 'X-MS-CLIENT-PRINCIPAL-ID': 'e2e-alice' };
  const mallory = { 'X-MS-CLIENT-PRINCIPAL-ID': 'e2e-mallory' };

  test("another customer cannot share or stop sharing someone's conversation", TIMEOUT, async () => {
    const page = await openChat(handler.base, { headers: alice });
    await page.locator('#who', { hasText: 'Signed in as e2e-alice' }).waitFor();
    await ask(page, 'What does LONPF2 do?');
    const id = sessionOf(page);
    const link = await share(page);

    // Mallory opens alice's conversation by its id: nothing to share.
    const intruder = await openChat(handler.base, { headers: mallory, suffix: `#session=${encodeURIComponent(id)}` });
    await intruder.locator('#who', { hasText: 'Signed in as e2e-mallory' }).waitFor();
    await intruder.locator('#transcript .empty').waitFor();
    assert.equal(await intruder.getByRole('button', { name: 'Share', exact: true }).isDisabled(), true);
    assert.equal(await intruder.getByRole('button', { name: 'Stop sharing' }).isDisabled(), true);
    // Nor through the API with her own identity.
    const url = `${handler.base}/api/sessions/${encodeURIComponent(id)}/share`;
    for (const method of ['POST', 'DELETE']) {
      const response = await fetch(url, { method, headers: mallory });
      assert.equal(response.status, 404, method);
    }
    // Alice's link still opens, for anyone, without a signed-in principal.
    const viewer = await browser.context.newPage();
    await viewer.goto(link);
    await answers(viewer).first().waitFor();
    assert.doesNotMatch(await viewer.locator('body').innerText(), /e2e-alice/);
    await viewer.close();
    await intruder.close();
    await page.close();
  });
});
