// The chat page in a real browser, for tests/browser.rs: Debian's chromium, headless,
// driven by playwright-core. The Rust test runs the server and an nc-style client; this
// script is the browser user, and prints one line per step so the test can say which failed.
//
//   node chat.mjs URL SCREENSHOT
//
// The URL may be http:// or https:// (--https-bind; the page then opens wss://).
//
// Steps: open the page, wait for the welcome and the MOTD, /nick webby, say a line (the nc
// client checks it arrives), wait for the nc client's line, which carries HTML, and check that
// it is shown as text and made no element; the topic the nc client sets is shown, and so is
// the answer to /topic typed here; then a screenshot. Every wait has a deadline.
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
const DEADLINE = 15000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  timeout: DEADLINE,
});
let failed = false;
try {
  // An https:// URL is served with the tests' self-signed certificate: trusted here, as a
  // user would trust it by adding it to the browser.
  const page = await browser.newPage({ viewport: { width: 900, height: 420 }, ignoreHTTPSErrors: true });
  page.setDefaultTimeout(DEADLINE);
  page.on('pageerror', (e) => { console.log('page error: ' + e.message); failed = true; });
  await page.goto(url);
  console.log('step: page loaded');
  await page.waitForFunction(() => /^guest-\d+$/.test(document.getElementById('nick').textContent));
  console.log('step: welcomed as ' + await page.textContent('#nick'));
  await page.locator('#log .line', { hasText: "the browser test's message of the day" }).waitFor();
  console.log('step: MOTD shown');
  await page.fill('#input', '/nick webby');
  await page.press('#input', 'Enter');
  await page.waitForFunction(() => document.getElementById('nick').textContent === 'webby');
  console.log('step: nick set');
  await page.fill('#input', 'hello from chromium');
  await page.press('#input', 'Enter');
  console.log('step: line sent');
  // The nc client answers with HTML in its line: it must arrive as text.
  const line = page.locator('#log .line.chat', { hasText: '<b>not bold</b>' });
  await line.waitFor();
  const html = await line.innerHTML();
  const elements = await page.locator('#log b, #log img, #log script').count();
  if (!html.includes('&lt;b&gt;not bold&lt;/b&gt;') || elements > 0) {
    console.log('FAIL: HTML from the network was rendered: ' + html);
    failed = true;
  } else {
    console.log('step: HTML shown as text');
  }
  // Up arrow brings the last line typed back.
  await page.press('#input', 'ArrowUp');
  const recalled = await page.inputValue('#input');
  if (recalled !== 'hello from chromium') {
    console.log('FAIL: up arrow gave ' + JSON.stringify(recalled));
    failed = true;
  } else {
    console.log('step: input history');
  }
  // The nc client set the topic after its HTML line: the change is announced, and /topic
  // typed here answers with it (both lines hold "topic for #lobby: set by nc").
  const topic = page.locator('#log .line', { hasText: 'topic for #lobby: set by nc' });
  await topic.first().waitFor();
  await page.fill('#input', '/topic');
  await page.press('#input', 'Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('#log .line')]
    .filter((l) => l.textContent.includes('topic for #lobby: set by nc')).length === 2);
  console.log('step: topic shown');
  await page.fill('#input', '');
  await page.waitForFunction(() => {
    const here = [...document.querySelectorAll('#members li')].map((li) => li.textContent);
    return here.length === 2 && here.includes('webby');
  });
  console.log('step: who is here');
  await page.screenshot({ path: screenshot });
  console.log('step: screenshot ' + screenshot);
} catch (e) {
  console.log('FAIL: ' + e.message.split('\n')[0]);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
