// signal_abuse.mjs - the public signal page's abuse limits over HTTP (run by signal_abuse.sh
// against a node behind a trusted proxy, which this test plays: X-Forwarded-For names the
// client). The node runs with difficulty 12, 12 signals a minute overall and 2 per address
// (8 challenges per address). Checks: challenges and signals limited per address and overall,
// every size limit answered invalid_argument naming the field and never its contents, a body
// over the limit refused with 413, sign-in attempts limited per address, and nothing of the
// sender stored or logged beyond what they typed (the contact only sealed): the LMDB file and
// the log are scanned for the addresses and the typed contact.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';

const URL_ = process.env.HAVEN_URL;
const MARK = 'kontakt-MARKER-91c2 bel na 18u';
const ADDR4 = '198.51.100.77', ADDR6 = '2001:db8:77::1';
let passed = 0, failed = 0;

function check(cond, what) {
	if (cond) {
		passed++;
		console.log(`ok   ${what}`);
	} else {
		failed++;
		console.log(`FAIL ${what}`);
	}
}

async function call(method, body, addr, raw) {
	const headers = { 'Content-Type': 'application/json' };
	if (addr) {
		headers['X-Forwarded-For'] = addr;
	}
	const res = await fetch(URL_ + '/' + method, { method: 'POST', headers, body: raw ?? JSON.stringify(body) });
	let data = {};
	try {
		data = await res.json();
	} catch {
		data = {};
	}
	return { http: res.status, ...data };
}

const challenge = (addr) => call('haven.signals.v1.Signals/Challenge', {}, addr);

/* A POST of a body over the node's limit on a plain socket. The node answers 413 from the
 * headers and closes without reading the body; a client still sending it may then get a reset
 * that discards the answer (fetch failed here with EPIPE). So the headers go first with
 * "Expect: 100-continue" and the body only if the node asks for it. Resolves to { http, code }
 * from the status line and the JSON body. */
function oversized(method, addr, body) {
	const u = new URL(URL_);
	return new Promise((resolve) => {
		let got = '', sent = false;
		const sock = connect(Number(u.port), u.hostname);
		const send = () => {
			if (!sent) {
				sent = true;
				sock.write(body);
			}
		};
		const done = () => {
			sock.destroy();
			const m = /^HTTP\/1\.[01] (4\d\d|5\d\d|2\d\d)/m.exec(got);
			const j = /\{.*\}/s.exec(got);
			let data = {};
			try {
				data = j ? JSON.parse(j[0]) : {};
			} catch {
				data = {};
			}
			resolve({ http: m ? Number(m[1]) : 0, ...data });
		};
		sock.setTimeout(20000, done);
		sock.on('data', (d) => {
			got += d.toString('latin1');
			if (/^HTTP\/1\.[01] 100/.test(got)) {
				got = got.replace(/^HTTP\/1\.[01] 100[^\n]*\r\n\r\n/, '');
				send();
			}
		});
		sock.on('error', () => {}); /* a reset once the node has answered and closed */
		sock.on('close', done);
		sock.on('connect', () => {
			sock.write(`POST /${method} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\n` +
				`X-Forwarded-For: ${addr}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
				'Expect: 100-continue\r\nConnection: close\r\n\r\n');
			setTimeout(send, 3000); /* a server that ignores Expect gets the body anyway */
		});
	});
}

function solve(nonce, bits) {
	for (let i = 0; ; i++) {
		const sol = Buffer.alloc(4);
		sol.writeUInt32BE(i);
		const h = createHash('sha256').update(Buffer.concat([Buffer.from(nonce), sol])).digest();
		let n = 0;
		for (const b of h) {
			if (b === 0) {
				n += 8;
				continue;
			}
			n += Math.clz32(b) - 24;
			break;
		}
		if (n >= bits) {
			return sol.toString('base64');
		}
	}
}

/* A challenge from addr, solved, and a Submit of fields from addr. */
async function submit(fields, addr) {
	const c = await challenge(addr);
	if (!c.nonce) {
		return c;
	}
	return call('haven.signals.v1.Signals/Submit', { region: 'Rotterdam', help: 'HELP_ADVICE',
		language: 'pl', ...fields, nonce: c.nonce, solution: solve(c.nonce, c.difficulty) }, addr);
}

/* ---- challenges per address ------------------------------------------------------------- */
{
	const got = [];
	for (let i = 0; i < 9; i++) {
		got.push(await challenge('192.0.2.10'));
	}
	check(got.slice(0, 8).every((r) => r.http === 200 && r.nonce), '8 challenges from one address');
	check(got[8].http === 429 && got[8].code === 'resource_exhausted' && /this address/.test(got[8].message),
		`the 9th is refused for that address (${got[8].http} ${got[8].message})`);
	check((await challenge('192.0.2.11')).http === 200, 'another address still gets one');
	check((await challenge('192.0.2.10, 192.0.2.12')).http === 200,
		'the proxy\'s own entry (the last one) is the address, not what the client wrote before it');
	check((await challenge('2001:db8:1:2::5')).http === 200 && (await challenge('2001:db8:1:2::6')).http === 200,
		'IPv6 addresses of one /64 share a bucket ...');
	for (let i = 0; i < 6; i++) {
		await challenge('2001:db8:1:2::' + (7 + i));
	}
	check((await challenge('2001:db8:1:2::ff')).http === 429, '... and are refused together');
}

/* ---- size limits: each names the field, never the value ------------------------------------ */
{
	const long = 'x'.repeat(501);
	const cases = [
		[{ contact: long }, 'S1', /contact/],
		[{ signs: Array(13).fill('DEBT') }, 'S2', /signs/],
		[{ region: 'Atlantis-' + 'y'.repeat(40) }, 'S3', /region/],
		[{ language: 'not a language tag!' }, 'S4', /language/],
	];
	for (const [f, addr, re] of cases) {
		const r = await submit(f, '203.0.113.' + addr.slice(1));
		check(r.http === 400 && r.code === 'invalid_argument' && re.test(r.message) &&
			!r.message.includes('xxxxx') && !r.message.includes('Atlantis') && !r.message.includes('not a language'),
			`${Object.keys(f)[0]} over its limit: invalid_argument naming the field (${r.message})`);
	}
	const big = JSON.stringify({ region: 'Rotterdam', help: 'HELP_OTHER', contact: 'z'.repeat(1100000) });
	const r = await oversized('haven.signals.v1.Signals/Submit', '203.0.113.9', big);
	check(r.http === 413 && r.code === 'resource_exhausted', `a body over the node's limit: 413 (${r.http})`);
	const nonce = (await challenge('203.0.113.10')).nonce;
	const bad = await call('haven.signals.v1.Signals/Submit', { region: 'Rotterdam', help: 'HELP_OTHER',
		nonce, solution: Buffer.from('nope').toString('base64') }, '203.0.113.10');
	check(bad.http === 400 && bad.code === 'failed_precondition', `unsolved work refused (${bad.message})`);
}

/* ---- signals per address, then overall; what is stored ------------------------------------- */
let sigId = '';
{
	const a = await submit({ contact: MARK, dangerNow: true }, ADDR4);
	const b = await submit({ contact: MARK + ' (2)' }, ADDR4);
	const c = await submit({}, ADDR4);
	sigId = a.id || '';
	check(a.http === 200 && /^sig-/.test(a.id) && b.http === 200, '2 signals from one address');
	check((a.emergencyNumbers || [])[0] === '112', 'in danger now: the answer names 112');
	check(c.http === 429 && /this address/.test(c.message), `the 3rd is refused for that address (${c.message})`);
	/* 12 a minute overall: 4 spent above (the size cases), 2 here: 6 more, then no more */
	const more = [];
	for (let i = 0; i < 3; i++) {
		more.push(await submit({}, ADDR6.replace('::1', `:${i}::1`)));
		more.push(await submit({}, ADDR6.replace('::1', `:${i}::1`)));
	}
	check(more.every((r) => r.http === 200), '6 more from three other addresses');
	const over = await submit({}, '192.0.2.200');
	check(over.http === 429 && /right now/.test(over.message) && /112/.test(over.message),
		`then everyone is refused for a while, pointed to 112 (${over.message})`);
	const anon = await submit({}, null);
	check(anon.http === 429, 'and a caller of unknown address counts against the overall limit');
}

/* ---- sign-in attempts per address ----------------------------------------------------------- */
{
	const login = (addr) => call('haven.people.v1.People/Login',
		{ login: 'nobody@nowhere', password: 'wrong password here', code: '123456' }, addr);
	/* 45 at once: the limiter (20 a minute, refilled evenly) comes before any password hash, so
	 * 20 are tried (answered 401, or 429 "at once" by the two hashing slots), plus one for every
	 * 3 s the client's connections spread them over, and the rest refused */
	const t0 = Date.now();
	const codes = await Promise.all(Array.from({ length: 45 }, () => login('198.51.100.200')));
	const secs = (Date.now() - t0) / 1000;
	const refused = codes.filter((r) => r.http === 429 && /attempts from this address/.test(r.message)).length;
	check(codes.every((r) => r.http === 401 || r.http === 429), 'every attempt answered 401 or 429');
	check(refused >= 1 && 45 - refused <= 20 + Math.ceil(secs / 3),
		`at most 20 a minute tried from one address: ${45 - refused} tried, ${refused} refused in ${secs.toFixed(1)} s`);
	check((await login('198.51.100.201')).http === 401, 'another address is still heard');
}

/* ---- nothing of the sender stored or logged beyond what they typed --------------------------- */
{
	const store = readFileSync(process.env.HAVEN_STORE);
	const log = readFileSync(process.env.HAVEN_LOG);
	check(sigId !== '' && store.includes(Buffer.from(sigId)), 'the scan finds what is stored (the signal id)');
	for (const [what, needle] of [['the typed contact', 'kontakt-MARKER-91c2'], ['the IPv4 address', ADDR4],
		['the IPv6 address', '2001:db8:77'], ['another address', '192.0.2.10']]) {
		check(!store.includes(Buffer.from(needle)), `${what} is not in the LMDB file`);
		check(!log.includes(Buffer.from(needle)), `${what} is not in the node's log`);
	}
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
