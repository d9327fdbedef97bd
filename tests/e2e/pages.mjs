// The chat page as the conversation manager's end-to-end tests drive it.

/**
 * Opens the chat page in `browser` (from `browserDuring`); dialogs are recorded and
 * answered by `page.answerDialogs`.
 */
export async function openChat(browser, base, { headers, suffix = '' } = {}) {
  const page = await browser.context.newPage();
  if (headers) await page.setExtraHTTPHeaders(headers);
  page.dialogs = [];
  page.answerDialogs = false;
  page.on('dialog', (dialog) => {
    page.dialogs.push(dialog.message());
    return page.answerDialogs ? dialog.accept() : dialog.dismiss();
  });
  await page.goto(`${base}/api/chat${suffix}`);
  await page.locator('#question').waitFor();
  return page;
}

export const answers = (page) => page.locator('#transcript article.assistant');
export const sessionOf = (page) => decodeURIComponent(new URL(page.url()).hash.replace('#session=', ''));

/** Asks `question` and waits for the saved answer (its feedback buttons). */
export async function ask(page, question) {
  const next = answers(page).nth(await answers(page).count());
  await page.locator('#question').fill(question);
  await page.locator('#question').press('Enter');
  await next.waitFor();
  await next.locator('.feedback').waitFor();
  return next;
}

/** The customer id the page uses when nobody is signed in. */
export const browserCustomer = (page) => page.evaluate(() => localStorage.getItem('session-rag.customer_id'));
