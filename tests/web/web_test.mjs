// web_test.mjs - the web app's browser test (run by web_test.sh against a real node): the demo
// story by four people in four browser contexts, live on the node's event stream (the shelter
// sees the offer appear, the case worker the need change, without a reload), wrong password
// and code, a session that ends while its page is left open (a second node with a 6 s idle
// timeout: the page's stream ends and it asks to sign in again), a session ended elsewhere, a
// provider opening another's offer by URL, the language switch, a keyboard-only referral, an
// org admin's people (a role changed in place; the last admin's own demotion refused) and alert
// channels and their test alert through the real mail server and webhook
// receiver, axe-core on every page, the security rules (headers, URL, title, storage), and
// screenshots of every page at phone and desk widths in $HAVEN_SHOTS.
import puppeteer from 'puppeteer-core';
import { totp } from './totp.mjs';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const URL_ = process.env.HAVEN_URL;
const IDLE_URL = process.env.HAVEN_IDLE_URL;
const SHOTS = process.env.HAVEN_SHOTS;
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 1 };
const DESK = { width: 1280, height: 900 };
const ALIAS = 'Demo Person';
const started = Date.now();
let passed = 0, failed = 0;

const people = Object.fromEntries(readFileSync(process.env.HAVEN_PEOPLE, 'utf8').trim().split('\n')
	.map((l) => l.split('|')).map(([org, login, role, pw, uri]) => [login, { org, login, role, pw, uri }]));


function ok(what) {
	passed++;
	console.log(`ok   ${String(Math.round((Date.now() - started) / 1000)).padStart(3)}s  ${what}`);
}
function check(cond, what) {
	if (!cond) {
		throw new Error(what);
	}
	ok(what);
}

async function step(what, fn) {
	try {
		await fn();
	} catch (e) {
		failed++;
		console.log(`FAIL ${what}: ${e.message}`);
		for (const [i, p] of open.pages.entries()) {
			if (!p.isClosed()) {
				const st = await p.$eval('#status', (x) => x.textContent).catch(() => '');
				console.log(`     page ${i} at ${await p.evaluate(() => location.hash).catch(() => '?')}: ${st}`);
				await p.screenshot({ path: join(SHOTS, `FAIL-${failed}-${i}.png`) }).catch(() => {});
			}
		}
		if (process.env.WEB_FAILFAST) {
			process.exit(1);
		}
	}
}

const browser = await puppeteer.launch({
	executablePath: process.env.CHROMIUM, headless: true, acceptInsecureCerts: true,
	args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});

async function open(viewport, url = URL_) {
	const ctx = await browser.createBrowserContext();
	const page = await ctx.newPage();
	open.pages.push(page);
	await page.setViewport(viewport);
	page.setDefaultTimeout(15000);
	page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
	await page.goto(url + '/', { waitUntil: 'networkidle0' });
	return page;
}

open.pages = [];

async function text(page) {
	return page.evaluate(() => document.body.innerText);
}

async function waitText(page, sel, re, ms = 15000) {
	await page.waitForFunction((s, src) => [...document.querySelectorAll(s)].some((e) => new RegExp(src).test(e.textContent)),
		{ timeout: ms, polling: 200 }, sel, re.source);
}

async function fill(page, name, value) {
	await page.$eval(`[name="${name}"]`, (e) => { e.value = ''; });
	await page.type(`[name="${name}"]`, value);
}

async function login(page, who, { password, code } = {}) {
	const p = people[who];
	await page.waitForSelector('[name="login"]');
	await page.$eval('#status', (e) => { e.textContent = ''; });
	await fill(page, 'login', p.login);
	await fill(page, 'password', password ?? p.pw);
	await fill(page, 'code', code ?? totp(p.uri));
	await page.click('form button[type=submit]');
}

async function signedIn(page) {
	await page.waitForSelector('#logout');
	await page.waitForFunction(() => !document.querySelector('[name="login"]'));
}

/* The page's event stream is open (the header says "Live"). */
async function isLive(page) {
	await page.waitForSelector('#live.live', { timeout: 10000 });
}

async function go(page, route) {
	await page.evaluate((r) => { location.hash = r; }, route);
	/* the page drawn with its first answers (main loses aria-busy), then a moment for its
	 * images and fonts; the event stream is the one request that stays open */
	await page.waitForFunction(() => document.querySelector('main h1') && !document.querySelector('main[aria-busy]'));
	await page.waitForNetworkIdle({ idleTime: 250, timeout: 8000, concurrency: 1 }).catch(() => {});
}

const axeViolations = [];
const axeSource = readFileSync(AXE, 'utf8');
async function axe(page, label) {
	/* evaluated over the DevTools protocol: the page's CSP rightly refuses a script tag; once
	 * per document (the app changes pages without loading a new one) */
	if (!(await page.evaluate(() => !!window.axe))) {
		await page.evaluate(axeSource);
	}
	const v = await page.evaluate(async () => {
		if (!window.axe) {
			return null;
		}
		const r = await window.axe.run(document, { resultTypes: ['violations'] });
		return r.violations.filter((x) => ['serious', 'critical'].includes(x.impact))
			.map((x) => `${x.id} (${x.nodes.length}): ${x.nodes[0].target.join(' ')}`);
	});
	if (v === null) {
		throw new Error('axe did not load');
	}
	for (const x of v) {
		axeViolations.push(`${label}: ${x}`);
	}
}

async function shot(page, name) {
	await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/* Every page this person sees: screenshot and axe at both widths, in Dutch or in English
 * (then the screenshots' names end in -en, and the page is back in Dutch after). */
async function tour(page, who, routes, lang = 'nl') {
	const suffix = lang === 'nl' ? '' : '-' + lang;
	await page.click(`.lang button[lang=${lang}]`);
	for (const [vp, tag] of [[DESK, 'desk'], [PHONE, 'phone']]) {
		await page.setViewport(vp);
		for (const r of routes) {
			await go(page, '#/' + r);
			await shot(page, `${who}-${r.replace(/\/.*/, '')}-${tag}${suffix}`);
			await axe(page, `${who} ${r} ${tag}${suffix}`);
		}
	}
	if (lang !== 'nl') {
		await page.click('.lang button[lang=nl]');
	}
}

/* The private-data rules: the alias never in a URL, the title, or storage. */
async function noLeak(page, label) {
	const r = await page.evaluate(() => ({ url: location.href, title: document.title,
		local: JSON.stringify(localStorage), session: JSON.stringify(sessionStorage) }));
	for (const [k, v] of Object.entries(r)) {
		if (v.includes(ALIAS) || v.includes('hs1.')) {
			throw new Error(`${label}: personal data or a token in ${k}`);
		}
	}
}

// ---- the pages themselves ------------------------------------------------------------------
const ngo = await open(DESK);
const shelter = await open(PHONE);
const muni = await open(DESK);
let refId = '', offerId = '', referredAt = 0;

/* Signed in on the second node (6 s idle timeout) and then left alone: checked near the end,
 * when its session has long ended by idleness. */
const idler = IDLE_URL ? await open(PHONE, IDLE_URL) : null;
await step('a page left open: signed in', async () => {
	await login(idler, 'ida.idle@idle-ngo');
	await signedIn(idler);
	await isLive(idler);
	await idler.evaluate(() => { window.notReloaded = true; });
	ok('signed in on the node with a 6 s idle timeout, the page live');
});

await step('headers', async () => {
	const res = await ngo.goto(URL_ + '/', { waitUntil: 'networkidle0' });
	const hd = res.headers();
	check(hd['cache-control'] === 'no-store', 'index.html is sent with Cache-Control: no-store');
	check(/script-src 'self'/.test(hd['content-security-policy']) && !/unsafe-inline/.test(hd['content-security-policy']),
		'CSP allows no inline script or style');
});

await step('language switch', async () => {
	check(await ngo.$eval('html', (e) => e.lang) === 'nl' && /Aanmelden/.test(await ngo.$eval('h1', (e) => e.textContent)),
		'the page opens in Dutch');
	await ngo.click('.lang button[lang=en]');
	await waitText(ngo, 'h1', /Sign in/);
	check(await ngo.$eval('html', (e) => e.lang) === 'en', 'English: heading and lang attribute follow');
	await shot(ngo, 'login-en-desk');
	await ngo.click('.lang button[lang=nl]');
	await waitText(ngo, 'h1', /Aanmelden/);
	ok('back to Dutch');
	await shot(ngo, 'login-desk');
	await axe(ngo, 'login desk');
	await shelter.waitForSelector('[name=login]');
	await shot(shelter, 'login-phone');
});

await step('wrong password and code', async () => {
	await login(muni, 'admin@coordinator-nl', { password: 'not the password at all' });
	await waitText(muni, '#status', /klopt niet/);
	check(!(await muni.$('#logout')), 'a wrong password is refused with a message');
	await login(muni, 'admin@coordinator-nl', { code: totp(people['admin@coordinator-nl'].uri, 40) });
	await waitText(muni, '#status', /klopt niet/);
	check(!(await muni.$('#logout')), 'a wrong code is refused with a message');
	check(await muni.$eval('[name=password]', (e) => e.value) === '', 'the password field is cleared');
});

await step('case worker records a person and consent', async () => {
	await login(ngo, 'carla.case@fairwork-ngo');
	await signedIn(ngo);
	await go(ngo, '#/clients');
	await fill(ngo, 'alias', ALIAS);
	await fill(ngo, 'languages', 'ro');
	await ngo.click('form[aria-label] button[type=submit]');
	await waitText(ngo, '#status', /vastgelegd/);
	ok('a person recorded (alias and language only)');
	await ngo.waitForSelector('.wizard select');
	await shot(ngo, 'carla-consent-desk');
	for (let i = 0; i < 3; i++) {
		await ngo.$$eval('.wizard button.primary', (b) => b[0].click());
	}
	await ngo.$$eval('.wizard button.primary', (b) => b[0].click());
	await waitText(ngo, '#status', /Toestemming vastgelegd/);
	ok('consent recorded in four steps');
});

await step('shelter signs in on a phone', async () => {
	await login(shelter, 'ines.intake@safehouse-zwb');
	await signedIn(shelter);
	await go(shelter, '#/offers');
	await waitText(shelter, 'main', /Geen open aanbiedingen/);
	await isLive(shelter);
	ok('the shelter waits on its offers page, live on the event stream');
});

await step('keyboard-only referral', async () => {
	const focusTo = async (pred, arg, max = 120) => {
		for (let i = 0; i < max; i++) {
			if (await ngo.evaluate(pred, arg)) {
				return;
			}
			await ngo.keyboard.press('Tab');
		}
		throw new Error('could not reach ' + arg + ' with Tab');
	};
	await ngo.evaluate(() => document.activeElement.blur());
	await focusTo((h) => document.activeElement?.getAttribute('href') === h, '#/refer');
	await ngo.keyboard.press('Enter');
	await ngo.waitForSelector('[name=exploitation]');
	await focusTo((n) => document.activeElement?.name === n, 'exploitation');
	await ngo.keyboard.press('ArrowDown'); /* UNKNOWN -> LABOUR */
	await focusTo((n) => document.activeElement?.name === n, 'lang0');
	await ngo.keyboard.type('ro');
	await focusTo((v) => document.activeElement?.name === 'unsafe' && document.activeElement.value === v, 'Amsterdam');
	await ngo.keyboard.press('Space');
	await focusTo(() => document.activeElement?.type === 'submit', null);
	await shot(ngo, 'carla-refer-desk');
	referredAt = Date.now();
	await ngo.keyboard.press('Enter');
	await ngo.waitForFunction(() => /#\/referral\/ref-/.test(location.hash));
	refId = await ngo.evaluate(() => location.hash.split('/')[2]);
	await waitText(ngo, '.need-state', /Aangeboden|Wacht/);
	check(/Amsterdam/.test(await text(ngo)), 'a referral made with the keyboard only, Amsterdam unsafe');
	await noLeak(ngo, 'referral page');
	ok('no personal data in URL, title or storage');
	/* a second referral no service can meet (it waits), for the coordinator */
	const st = await ngo.evaluate(async (id) => {
		const csrf = document.cookie.split('; ').find((c) => c.startsWith('haven_csrf=')).slice(11);
		const post = (m, b, extra = {}) => fetch('/haven.referral.v1.Referrals/' + m, { method: 'POST',
			headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf, ...extra }, body: JSON.stringify(b) });
		const r = await (await post('GetReferral', { id })).json();
		return (await post('CreateReferral', { subject: r.subject, urgency: 'PLANNED', exploitation: 'LABOUR',
			needs: [{ type: 'MENTAL_HEALTH', population: 'MINORS', languages: ['zu'] }] },
		{ 'Idempotency-Key': 'web-test-waiting' })).status;
	}, refId);
	check(st === 200, 'a second referral that waits');
});

await step('the shelter sees the offer appear and accepts', async () => {
	await shelter.waitForSelector('.offer a', { timeout: 20000 });
	const took = Date.now() - referredAt;
	/* the slow poll (when the stream is away) comes every 30 s: this fast, it was the stream */
	check(took < 10000, `the offer appeared without a reload, ${took} ms after the referral`);
	check(/Reageer binnen/.test(await text(shelter)), 'with a respond-by countdown');
	await shot(shelter, 'ines-offers-phone');
	await shelter.click('.offer a');
	await shelter.waitForSelector('.big-btn');
	offerId = await shelter.evaluate(() => location.hash.split('/')[2]);
	await shot(shelter, 'ines-offer-phone');
	await shelter.click('.big-btn.primary');
	await waitText(shelter, 'dd', new RegExp(ALIAS));
	check(/010 000 0000/.test(await text(shelter)), 'after acceptance: her details as consent shares them and the referrer\'s desk');
	await shot(shelter, 'ines-accepted-phone');
	await noLeak(shelter, 'accepted offer');
});

await step('the case worker sees the change without reloading', async () => {
	await waitText(ngo, '.need-state .state', /Geaccepteerd/, 15000);
	ok('need state changed live');
	await shot(ngo, 'carla-referral-desk');
});

await step('the municipality sees numbers only', async () => {
	await login(muni, 'pim.policy@municipality-rdam');
	await signedIn(muni);
	await go(muni, '#/numbers');
	await muni.waitForSelector('svg.map');
	const tiles = await muni.$$eval('svg.map rect', (r) => r.length);
	check(tiles === 10, 'a map of the ten regions');
	const cells = await muni.$$eval('table td', (t) => t.map((x) => x.textContent));
	check(cells.includes('<5') && !cells.some((c) => /^[1-4]$/.test(c)), 'no count under 5 shown as a number');
	const sig = await muni.$eval('.signal-stats', (e) => ({ h: e.querySelector('h2').textContent,
		month: e.querySelector('select').value, label: e.querySelector('label').textContent,
		body: e.querySelector('.sig-tables').textContent }));
	check(sig.h === 'Signalen per regio en sector' && /^\d{4}-\d{2}$/.test(sig.month) && sig.label === 'Maand' &&
		sig.body.includes(sig.month), `the signals of a finished month, per region and sector (${sig.month}: ${sig.body.slice(0, 60)})`);
	check(!(await text(muni)).includes(ALIAS), 'and never a person');
	await shot(muni, 'pim-numbers-desk');
});

await step('another provider opens the offer by its URL', async () => {
	const other = await open(PHONE);
	await login(other, 'nina.night@shelter-nn');
	await signedIn(other);
	await go(other, '#/offer/' + offerId);
	await waitText(other, 'main', /bestaat niet of is niet voor uw organisatie/);
	check(!(await text(other)).includes(ALIAS), 'refused, nothing of her shown');
	await other.browserContext().close();
});

await step('placements: ending one frees the bed', async () => {
	await go(shelter, '#/placements');
	await shelter.waitForSelector('.card button.primary');
	await shot(shelter, 'ines-placements-phone');
	await shelter.click('.card button.primary'); /* she has arrived */
	await waitText(shelter, '#status', /geplaatst/);
	ok('marked placed');
	await go(shelter, '#/services');
	await shelter.waitForSelector('.service .num');
	const before = await shelter.$eval('.service .num', (e) => Number(e.textContent));
	await shelter.$$eval('.service .big-btn', (b) => b[0].click()); /* one bed freed */
	await waitText(shelter, '#status', /plaats meer vrij/);
	await shelter.waitForFunction((b) => Number(document.querySelector('.service .num').textContent) === b + 1, {}, before);
	ok('one tap: one bed freed');
	await shelter.$$eval('.service .big-btn', (b) => b[1].click());
	await shelter.waitForFunction((b) => Number(document.querySelector('.service .num').textContent) === b, {}, before);
	ok('one tap: one bed taken');
	await shot(shelter, 'ines-services-phone');
});

await step('pages at phone and desk widths, axe on each', async () => {
	/* four people at once, each in their own browser context: the run stays within CI's
	 * budget (a person's steps are in order; the node serves them all together) */
	const coordinator = async () => {
		const coord = await open(DESK);
		await login(coord, 'cor.coord@coordinator-nl');
		await signedIn(coord);
		await go(coord, '#/region');
		await coord.waitForSelector('main form [name=reason]');
		await fill(coord, 'reason', 'routed again by the coordinator');
		await coord.$eval('main form button[type=submit]', (b) => b.click());
		await waitText(coord, '#status', /opnieuw toegewezen/);
		ok('the coordinator reassigns a waiting need');
		await tour(coord, 'cor', ['region', 'numbers']);
		await coord.browserContext().close();
	};
	const orgAdmin = async () => {
		const admin = await open(DESK);
		await login(admin, 'admin@fairwork-ngo');
		await signedIn(admin);
		await go(admin, '#/people');
		await fill(admin, 'display', 'Demo Worker');
		await fill(admin, 'login', 'Demo.Worker'); /* the organisation is added: NAME@ORG */
		await fill(admin, 'password', 'a demo password 2026');
		await admin.$$eval('form button[type=submit]', (b) => b[b.length - 1].click());
		await admin.waitForSelector('svg.qr');
		check(await admin.$eval('.enrol code.login', (e) => e.textContent) === 'demo.worker@fairwork-ngo',
			'a new person: the sign-in name shown is NAME@ORG');
		ok('a new person: the second factor as a QR code');
		/* the list is read again after the create: wait for her row (CI once clicked first) */
		await admin.waitForFunction(() => [...document.querySelectorAll('main tr')]
			.some((r) => /Demo Worker/.test(r.textContent)));
		await admin.$$eval('main tr', (trs) => [...trs.find((r) => /Demo Worker/.test(r.textContent))
			.querySelectorAll('button')].find((b) => /wachtwoord/.test(b.textContent)).click());
		await fill(admin, 'newpassword', 'another demo password 2026');
		await admin.$eval('.enrol form button[type=submit]', (b) => b.click());
		await waitText(admin, '#status', /Wachtwoord gewijzigd/);
		ok('a new password for a person');
		/* her role changed in place (issue 16): pick it in her row's select, press the
		 * button, and the list, read again, shows the new role */
		const row = (re) => admin.evaluateHandle((src) => [...document.querySelectorAll('main tr')]
			.find((r) => new RegExp(src).test(r.textContent)), re.source);
		const roleCell = (re) => admin.evaluate((src) => [...document.querySelectorAll('main tr')]
			.find((r) => new RegExp(src).test(r.textContent)).children[2].textContent, re.source);
		await (await (await row(/Demo Worker/)).$('select.role-select')).select('PERSON_ROLE_VIEWER');
		await (await row(/Demo Worker/)).$$eval('button', (bs) => bs.find((b) => /Rol wijzigen/.test(b.textContent)).click());
		await waitText(admin, '#status', /Rol gewijzigd/);
		await admin.waitForFunction(() => [...document.querySelectorAll('main tr')]
			.some((r) => /Demo Worker/.test(r.textContent) && r.children[2].textContent === 'Meekijker'));
		ok('the org admin makes a person a viewer; the list shows the new role');
		await shot(admin, 'fenna-people-role-changed-desk');
		/* the only admin's own demotion: refused by the node, its message on the status line */
		await (await (await row(/Fenna FairWork Admin/)).$('select.role-select')).select('PERSON_ROLE_CASE_WORKER');
		await (await row(/Fenna FairWork Admin/)).$$eval('button', (bs) => bs.find((b) => /Rol wijzigen/.test(b.textContent)).click());
		await waitText(admin, '#status', /must keep an enabled admin/);
		check(await roleCell(/Fenna FairWork Admin/) === 'Beheerder' &&
			await (await row(/Fenna FairWork Admin/)).$eval('select', (e) => e.value) === 'PERSON_ROLE_ORG_ADMIN',
			'the last admin cannot demote herself: the node\'s message shown, her role kept');
		await go(admin, '#/channels');
		await isLive(admin);
		await fill(admin, 'emails', 'desk@fairwork.example');
		await fill(admin, 'webhook', process.env.HAVEN_HOOK);
		await fill(admin, 'secret', process.env.HAVEN_HOOK_SECRET);
		await admin.$eval('main form button[type=submit]', (b) => b.click());
		await waitText(admin, '#status', /Opgeslagen/);
		check(await admin.$eval('[name=secret]', (e) => e.value) === '', 'the org admin sets the alert channels; the secret leaves the page');
		await admin.$eval('main form button[type=submit]', (b) => b.click()); /* the secret kept */
		await waitText(admin, '#status', /Opgeslagen/);
		await admin.$$eval('main button', (bs) => bs.find((b) => /testmelding/.test(b.textContent)).click());
		await waitText(admin, '.results', /E-mailadressen: afgeleverd/);
		check(/Webhook: afgeleverd/.test(await text(admin)), 'a test alert: delivered by e-mail and to the webhook');
		await waitText(admin, '#test-here', /aangekomen/, 5000);
		ok('... and arrived on the page\'s own stream');
		const got = readFileSync(process.env.HAVEN_RECEIVED, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
			.filter((m) => /\.fairwork-ngo\./.test(m.key));
		check(got.some((m) => m.via === 'smtp' && m.tls) && got.some((m) => m.via === 'webhook' && m.sig_ok),
			'the real mail server (STARTTLS) and webhook receiver (signature checked) got it');
		check(!got.some((m) => m.body.includes(ALIAS)), 'with nothing of a person in it');
		await shot(admin, 'fenna-channels-tested-desk');
		await tour(admin, 'fenna', ['people', 'channels']);
		await admin.browserContext().close();
	};
	const operator = async () => {
		const ops = await open(DESK);
		await login(ops, 'olaf.ops@haven-ops');
		await signedIn(ops);
		await tour(ops, 'olaf', ['orgs', 'status', 'numbers'], 'en');
		await ops.browserContext().close();
	};
	await Promise.all([
		(async () => {
			await tour(ngo, 'carla', ['clients', 'refer', 'referrals', 'referral/' + refId, 'access']);
			await tour(muni, 'pim', ['numbers']);
		})(),
		tour(shelter, 'ines', ['services', 'offers', 'offer/' + offerId, 'placements'], 'en'),
		coordinator(), orgAdmin(), operator()]);
	check(axeViolations.length === 0, 'axe: no serious or critical violation on any page' +
		(axeViolations.length ? '\n' + axeViolations.join('\n') : ''));
});

await step('a page left open ends with its idle session', async () => {
	if (!idler) {
		return;
	}
	await waitText(idler, '#status', /sessie is verlopen/, 20000);
	check(!!(await idler.$('[name=login]')) && await idler.evaluate(() => window.notReloaded === true),
		'the node ended the idle session and its stream; the page, never reloaded, asks to sign in again');
	await shot(idler, 'ida-idle-ended-phone');
});

await step('an expired session and sign-out in another tab', async () => {
	/* the node ends the session (as an idle timeout or an admin's change would): the page
	 * notices at its next call and asks to sign in again */
	await shelter.evaluate(async () => {
		const csrf = document.cookie.split('; ').find((c) => c.startsWith('haven_csrf=')).slice(11);
		await fetch('/haven.people.v1.People/Logout', { method: 'POST', body: '{}',
			headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf } });
	});
	await waitText(shelter, '#status', /sessie is verlopen/, 10000);
	check(!!(await shelter.$('[name=login]')), 'an ended session: back at sign-in with a message');
	/* two tabs of the case worker: signing out in one signs out both */
	const tab = await ngo.browserContext().newPage();
	await tab.setViewport(DESK);
	await tab.goto(URL_ + '/#/referrals', { waitUntil: 'load' });
	await tab.waitForSelector('#logout');
	ok('a second tab opens signed in');
	await tab.click('#logout');
	await waitText(tab, '#status', /afgemeld/);
	await waitText(ngo, '#status', /afgemeld/, 5000);
	check(!!(await ngo.$('[name=login]')), 'signing out in one tab signs out the other');
	check(!(await tab.cookies()).some((c) => c.name === 'haven_session'), 'the session cookie is gone');
	check(await tab.evaluate(() => localStorage.length) === 0, 'nothing left in local storage');
});

await step('sign-out ends the session on the node', async () => {
	const csrf = (await muni.cookies()).find((c) => c.name === 'haven_csrf').value;
	const sess = (await muni.cookies()).find((c) => c.name === 'haven_session').value;
	await muni.click('#logout');
	await waitText(muni, '#status', /afgemeld/);
	/* the old cookie, put back by hand, no longer works: the session ended on the node */
	await muni.setCookie({ name: 'haven_session', value: sess, url: URL_, secure: true, httpOnly: true, sameSite: 'Strict' },
		{ name: 'haven_csrf', value: csrf, url: URL_, secure: true, sameSite: 'Strict' });
	const r = await muni.evaluate(async (c) => (await fetch('/haven.capacity.v1.Capacity/Summary', { method: 'POST',
		headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': c }, body: '{}' })).status, csrf);
	check(r === 401, 'a call with the old session cookie is refused (401)');
});

await browser.close();
console.log(`web_test: ${passed} passed, ${failed} failed (${Math.round((Date.now() - started) / 1000)} s)`);
process.exit(failed ? 1 : 0);
