import puppeteer from 'puppeteer-core';
const browser = await puppeteer.launch({ executablePath: '/usr/bin/chromium', headless: true, acceptInsecureCerts: true,
	args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'] });
const page = await browser.newPage();
page.on('console', (m) => console.log('console', m.text()));
await page.goto('https://localhost:28443/signal.html', { waitUntil: 'load' });
await page.waitForSelector('#signal', {timeout: 60000});
await page.evaluate(() => { globalThis.BASE = 0; });
const r = await page.evaluate(async () => {
	const { solve } = await import('/js/signal/pow.js');
	const nonce = 'x'.repeat(43);
	let maxLag = 0, ticks = 0, stop = false;
	const tick = () => { const t = performance.now(); setTimeout(() => { maxLag = Math.max(maxLag, performance.now() - t); ticks++; if (!stop) tick(); }, 0); };
	tick();
	const t0 = performance.now();
	await (globalThis.BASE ? new Promise((r) => setTimeout(r, 2000)) : solve(nonce, 18));
	stop = true;
	await new Promise((r) => setTimeout(r, 300));
	return { ms: performance.now() - t0, maxLag, ticks };
});
console.log(r);
await browser.close();
