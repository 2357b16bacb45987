/*
 * api.js - calls of the node's Connect API (POST /haven.<area>.v1.<Svc>/<Method>, JSON), and
 * the browser session: People/Login's token goes once to POST /session, which sets the
 * HttpOnly haven_session cookie and answers a CSRF token; every call then carries that token
 * as X-CSRF-Token (double submit with the haven_csrf cookie). Nothing is cached (no-store)
 * and nothing personal is put into a URL: every argument travels in the POST body.
 *
 * Idle means no act of the person (docs/people.md): a call made while nobody touched the page
 * (a refresh after an alert, the slow poll, the badge) carries Haven-Activity: background, so
 * that it does not hold off the session's idle timeout; a call within ACT_MS of a key press or
 * a tap does. While the person reads or scrolls without calling anything, a keep-alive call
 * every KEEP_MS says so.
 */

const CSRF_COOKIE = 'haven_csrf';
const ACT_MS = 5000;
const KEEP_MS = 60000;
let csrf = readCsrfCookie();
let onSessionEnd = () => {};
let lastAct = Date.now(); /* the person's last key press, tap, click or scroll; opening the
                            * page counts as one */
let lastUse = 0;   /* the last call that counted as a use */

for (const type of ['keydown', 'pointerdown', 'wheel', 'touchstart']) {
	window.addEventListener(type, () => { lastAct = Date.now(); }, { capture: true, passive: true });
}

/* Whether the person acted just now: their calls count as a use of the session. */
function acting() {
	return Date.now() - lastAct < ACT_MS;
}

setInterval(() => {
	if (csrf && Date.now() - lastAct < KEEP_MS && Date.now() - lastUse > KEEP_MS - 5000) {
		call('haven.health.v1.Health/Check', {}, undefined, true).catch(() => {});
	}
}, KEEP_MS);

export class ApiError extends Error {
	constructor(code, message, http) {
		super(message || code);
		this.code = code;
		this.http = http;
	}
}

function readCsrfCookie() {
	for (const part of document.cookie.split(';')) {
		const [k, v] = part.trim().split('=');
		if (k === CSRF_COOKIE && v) {
			return v;
		}
	}
	return '';
}

function setCsrf(token) {
	csrf = token;
	const age = token ? '' : '; Max-Age=0';
	document.cookie = `${CSRF_COOKIE}=${token}; Path=/; Secure; SameSite=Strict${age}`;
}

/* Called when the node says the session is gone (expired, revoked, logged out elsewhere). */
export function setSessionEndHandler(fn) {
	onSessionEnd = fn;
}

/* The session ended on the node (the event stream said so): as a refused call would. */
export function sessionEnded() {
	if (csrf) {
		setCsrf('');
		onSessionEnd('expired');
	}
}

export function hasSession() {
	return csrf !== '';
}

async function post(path, body, headers) {
	let res;
	try {
		res = await fetch(path, {
			method: 'POST',
			headers: { 'Content-Type': 'application/json', ...headers },
			body: JSON.stringify(body ?? {}),
			credentials: 'same-origin',
			cache: 'no-store',
			redirect: 'error',
		});
	} catch {
		throw new ApiError('unavailable', 'network', 0);
	}
	let data = {};
	try {
		data = await res.json();
	} catch {
		data = {};
	}
	if (!res.ok) {
		throw new ApiError(data.code || 'unknown', data.message || '', res.status);
	}
	return data;
}

/* One RPC: method is "haven.referral.v1.Referrals/ListOffers". idem: an idempotency key, the
 * same for every retry of one intent (CreateReferral needs one: a retry never makes two).
 * use: counts as the person's act whatever the time of their last touch (the keep-alive). */
export async function call(method, body, idem, use) {
	const headers = { 'Connect-Protocol-Version': '1', 'Connect-Timeout-Ms': '15000' };
	if (idem) {
		headers['Idempotency-Key'] = idem;
	}
	if (use || acting()) {
		lastUse = Date.now();
	} else {
		headers['Haven-Activity'] = 'background';
	}
	if (csrf) {
		headers['X-CSRF-Token'] = csrf;
	}
	try {
		return await post('/' + method, body, headers);
	} catch (e) {
		if (e.code === 'unauthenticated' && csrf) {
			setCsrf('');
			onSessionEnd('expired');
		}
		throw e;
	}
}

/* Signs in: Login, then the token into the cookie. Returns the LoginResponse without the
 * token (which is dropped here and lives only in the HttpOnly cookie). */
export async function login(loginName, password, code) {
	setCsrf('');
	lastAct = Date.now();
	const r = await post('/haven.people.v1.People/Login',
		{ login: loginName, password, code }, { 'Connect-Protocol-Version': '1' });
	const s = await post('/session', { token: r.token }, {});
	r.token = '';
	setCsrf(s.csrfToken);
	return r;
}

/* Ends the session on the node (every tab and device holding it), then clears the cookies. */
export async function logout() {
	try {
		await call('haven.people.v1.People/Logout', {});
	} catch {
		/* already ended: the cookies go all the same */
	}
	try {
		await fetch('/session', { method: 'DELETE', credentials: 'same-origin', cache: 'no-store' });
	} catch {
		/* offline: the cookie is useless once the session is revoked */
	}
	setCsrf('');
}

/* Every page of a paged list (next_page_token), at most max pages. */
export async function listAll(method, body, key, max = 10) {
	const out = [];
	let token = '';
	for (let i = 0; i < max; i++) {
		const r = await call(method, { ...body, pageToken: token });
		out.push(...(r[key] || []));
		token = r.nextPageToken || '';
		if (!token) {
			break;
		}
	}
	return out;
}
