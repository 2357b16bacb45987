/*
 * totp.mjs - the browser tests' authenticator app: the RFC 6238 code (SHA-1, 30 s, six
 * digits) of an otpauth:// URI, and a sign-in on the app's login form that survives a code
 * already used (the node accepts each step once per person: a person signed in twice within
 * one 30 s step needs the next step's code).
 */
import { createHmac } from 'node:crypto';

/* The code of an otpauth:// URI at the step now + off (steps of 30 s). */
export function totp(uri, off = 0) {
	const s = new URL(uri).searchParams.get('secret');
	const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
	let bits = '';
	for (const c of s.replace(/=+$/, '')) {
		bits += A.indexOf(c.toUpperCase()).toString(2).padStart(5, '0');
	}
	const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
	const msg = Buffer.alloc(8);
	msg.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + off));
	const hm = createHmac('sha1', key).update(msg).digest();
	const o = hm[hm.length - 1] & 15;
	return String((hm.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}

/* Signs person p ({ login, pw, uri }) in on page's login form and waits for the app's
 * navigation; a refused code (this step used already) is tried once more with the next
 * step's code, which the node's window accepts. */
export async function signIn(page, p) {
	for (const off of [0, 1]) {
		await page.waitForSelector('[name="login"]');
		for (const [name, value] of [['login', p.login], ['password', p.pw], ['code', totp(p.uri, off)]]) {
			await page.$eval(`[name="${name}"]`, (e) => { e.value = ''; });
			await page.type(`[name="${name}"]`, value);
		}
		await page.$eval('#status', (e) => { e.textContent = ''; e.className = 'status'; });
		await page.click('form button[type=submit]');
		const done = await Promise.race([
			page.waitForSelector('nav', { timeout: 20000 }).then(() => true, () => null),
			page.waitForSelector('#status.error', { timeout: 20000 }).then(() => false, () => null),
		]);
		if (done) {
			return;
		}
	}
	throw new Error(`${p.login}: sign-in refused twice`);
}
