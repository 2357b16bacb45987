/*
 * main.js - the app's shell: sign-in, the navigation each organisation role and person role
 * gets, the hash router (#/offers, #/referral/ID: ids only, never personal data), the
 * language switch, the alerts badge and sign-out. Pages live in pages/*.js; each exports
 * render(main, ctx) and may return {refresh, stop} for the live view.
 *
 * Live view: the node's event stream (live.js, GET /events). Each alert refreshes the page
 * (its refresh()) and the badge, once for a burst, and is announced on window as the DOM
 * event 'haven:alert' (the channels page waits for its test alert so). When the stream is
 * away the same happens on a slow poll; the header says which ("live" or not). The end of
 * the stream (the session ended on the node) sends the person back to sign-in.
 */
import * as api from './api.js';
import * as live from './live.js';
import { t, lang, setLang, languages } from './i18n.js';
import { h, say, field, form, errorText } from './ui.js';
import * as provider from './pages/provider.js';
import * as referrer from './pages/referrer.js';
import * as numbers from './pages/numbers.js';
import * as coordinator from './pages/coordinator.js';
import * as people from './pages/people.js';
import * as operator from './pages/operator.js';
import * as channels from './pages/channels.js';
import * as signals from './signal/outreach.js';

const REFRESH_DELAY_MS = 150; /* alerts in a burst make one refresh */

/* route -> [page module function, the org roles that see it, title key] */
const routes = {
	services: [provider.services, ['provider'], 'nav.services'],
	offers: [provider.offers, ['provider'], 'nav.offers'],
	offer: [provider.offer, ['provider'], 'nav.offers'],
	placements: [provider.placements, ['provider'], 'nav.placements'],
	clients: [referrer.clients, ['referrer'], 'nav.clients'],
	refer: [referrer.refer, ['referrer'], 'nav.refer'],
	signals: [signals.render, ['referrer'], 'nav.signals'],
	referrals: [referrer.referrals, ['referrer'], 'nav.referrals'],
	referral: [referrer.referral, ['referrer', 'coordinator', 'national-coordinator'], 'nav.referrals'],
	access: [referrer.access, ['referrer'], 'nav.access'],
	numbers: [numbers.render, ['municipality', 'coordinator', 'national-coordinator', 'admin'], 'nav.numbers'],
	region: [coordinator.render, ['coordinator', 'national-coordinator'], 'nav.region'],
	people: [people.render, ['*admin'], 'nav.people'],
	channels: [channels.render, ['*admin'], 'nav.channels'],
	orgs: [operator.orgs, ['admin'], 'nav.orgs'],
	status: [operator.status, ['admin'], 'nav.status'],
};
const navOrder = ['offers', 'services', 'placements', 'signals', 'clients', 'refer', 'referrals', 'access',
	'region', 'numbers', 'orgs', 'status', 'people', 'channels'];

let ctx = loadCtx();
let page = null;
let pending = null; /* a refresh asked for, not run yet */
let seen = new Map(); /* referral id -> version the referrer has seen */

/* Who is signed in, for every tab of this browser: organisation id and roles only (no name,
 * no login, no token; the session itself is the HttpOnly cookie). A sign-out in one tab
 * removes it, and the other tabs follow (the storage event below). */
function loadCtx() {
	try {
		const c = JSON.parse(localStorage.getItem('haven.ctx') || 'null');
		return c && api.hasSession() ? c : null;
	} catch {
		return null;
	}
}

function saveCtx(c) {
	ctx = c;
	try {
		if (c) {
			localStorage.setItem('haven.ctx', JSON.stringify({ orgId: c.orgId, orgRole: c.orgRole, role: c.role }));
		} else {
			localStorage.removeItem('haven.ctx');
		}
	} catch {
		/* memory only */
	}
}

function allowed(route) {
	const r = routes[route];
	if (!r || !ctx) {
		return false;
	}
	return r[1].includes(ctx.orgRole) || (r[1].includes('*admin') && ctx.role === 'PERSON_ROLE_ORG_ADMIN');
}

function home() {
	return navOrder.find(allowed) || 'numbers';
}

function header() {
	const langs = h('div', { class: 'lang', role: 'group', 'aria-label': t('lang.label') },
		languages().map((code) => h('button', {
			type: 'button', lang: code, 'aria-pressed': String(code === lang()),
			onclick: () => { setLang(code); show(); },
		}, code.toUpperCase())));
	const right = [langs];
	if (ctx) {
		right.unshift(h('a', { href: '#/' + (alertRoute() || home()), id: 'alerts', class: 'badge',
			'aria-live': 'polite' }, t('alerts.none')),
		h('span', { id: 'live', class: 'live ' + live.mode(), title: t('live.' + live.mode()) },
			h('span', { class: 'word' }, t('live.' + live.mode() + '.short'))));
		right.push(h('button', { type: 'button', id: 'logout', onclick: signOut }, t('nav.logout')));
	}
	const nav = ctx ? h('nav', { 'aria-label': t('nav.label') }, h('ul', {},
		navOrder.filter(allowed).map((r) => h('li', {}, h('a', { href: '#/' + r,
			'aria-current': current().name === r ? 'page' : undefined }, t(routes[r][2])))))) : null;
	return [h('div', { class: 'bar' }, h('span', { class: 'brand' }, 'haven'),
		ctx ? h('span', { class: 'who' }, `${ctx.orgId} · ${t('role.' + ctx.role)}`) : null,
		h('div', { class: 'tools' }, right)), nav];
}

function current() {
	const parts = location.hash.replace(/^#\/?/, '').split('/');
	return { name: parts[0] || '', arg: parts[1] || '' };
}

function alertRoute() {
	return { provider: 'offers', referrer: 'referrals', coordinator: 'region',
		'national-coordinator': 'region' }[ctx?.orgRole];
}

async function show(message) {
	stopPage();
	const top = document.getElementById('top');
	const main = document.getElementById('main');
	const status = document.getElementById('status');
	status.textContent = '';
	status.className = 'status';
	main.textContent = '';
	main.removeAttribute('aria-busy'); /* a page still loading from before is gone */
	if (!ctx) {
		top.replaceChildren(...header().filter(Boolean));
		document.title = 'haven — ' + t('login.title');
		renderLogin(main, message);
		return;
	}
	let { name, arg } = current();
	if (!name || !routes[name]) {
		name = home();
		history.replaceState(null, '', '#/' + name);
	}
	top.replaceChildren(...header().filter(Boolean));
	/* on a phone the menu scrolls sideways: keep the current page's entry in sight */
	top.querySelector('nav [aria-current=page]')?.scrollIntoView({ block: 'nearest', inline: 'center' });
	document.title = 'haven — ' + t(routes[name][2]);
	if (!allowed(name)) {
		main.append(h('h1', { tabindex: '-1' }, t('err.permission_denied')));
		main.firstChild.focus();
		return;
	}
	/* each render gets its own view: a page still loading when the user moves on writes into a
	 * view that is no longer in the document, never into the next page */
	const view = h('div', { class: 'view' });
	main.append(view);
	main.setAttribute('aria-busy', 'true'); /* until the page's first answers are in */
	let p = null;
	try {
		p = (await routes[name][0](view, { ...ctx, arg, seen })) || null;
	} finally {
		if (view.isConnected) {
			main.removeAttribute('aria-busy');
		}
	}
	if (!view.isConnected) {
		p?.stop?.();
		return;
	}
	page = p;
	const h1 = view.querySelector('h1');
	if (h1) {
		h1.setAttribute('tabindex', '-1');
		h1.focus();
	}
	if (message) {
		say(message);
	}
	badge().catch(() => {});
}

function stopPage() {
	clearTimeout(pending);
	pending = null;
	if (page && page.stop) {
		page.stop();
	}
	page = null;
}

/* A refresh of the page and the badge soon (an alert, the slow poll): one for a burst. */
function refreshSoon() {
	if (!pending) {
		pending = setTimeout(tick, REFRESH_DELAY_MS);
	}
}

let ticking = false;
async function tick() {
	pending = null;
	if (ticking || !ctx) {
		if (ctx) {
			refreshSoon(); /* one is running: again after it, with what came meanwhile */
		}
		return;
	}
	ticking = true;
	try {
		if (page && page.refresh) {
			await page.refresh();
		}
		await badge();
	} catch {
		/* the next alert or poll tries again; a lost session was handled by api.call */
	} finally {
		ticking = false;
	}
}

/* The header's word for the stream: live, or not (then the page polls slowly). */
function liveState(mode) {
	const el = document.getElementById('live');
	if (el) {
		el.className = 'live ' + mode;
		el.title = t('live.' + mode);
		el.firstChild.textContent = t('live.' + mode + '.short');
	}
}

function onAlert(ev) {
	if (ev && ev.kind === 'TEST') {
		say(t('alerts.test'));
	}
	window.dispatchEvent(new CustomEvent('haven:alert', { detail: ev }));
	refreshSoon();
}

/* The event stream while someone is signed in in this tab. */
function startLive() {
	live.start({ onEvent: onAlert, onPoll: refreshSoon, onState: liveState, onEnd: api.sessionEnded });
}

/* The region's signals nobody has taken up yet (outreach organisations). CountSignals, never
 * ListSignals: each signal ListSignals shows is an audited read of its contact, and the badge
 * is no one reading (docs/signals.md). A viewer may call it (a read); a refusal counts
 * nothing. */
async function newSignals() {
	const r = await api.call('haven.signals.v1.Signals/CountSignals', {}).catch(() => ({}));
	return Number(r.count || 0);
}

/* The badge: open offers (provider), referrals changed since seen and new signals (referrer),
 * waiting needs (coordinator). Text only, no sound. New signals come first in the text and
 * the badge leads to them: someone may be in danger. */
async function badge() {
	const el = document.getElementById('alerts');
	if (!el) {
		return;
	}
	let n = 0, signalsNew = 0;
	if (ctx.orgRole === 'provider') {
		const r = await api.call('haven.referral.v1.Referrals/ListOffers', { openOnly: true });
		n = (r.offers || []).length;
	} else if (ctx.orgRole === 'referrer') {
		const [r, s] = await Promise.all([
			api.call('haven.referral.v1.Referrals/ListReferrals', { openOnly: false }), newSignals()]);
		for (const ref of r.referrals || []) {
			if (!seen.has(ref.id)) {
				seen.set(ref.id, ref.version);
			} else if (seen.get(ref.id) !== ref.version) {
				n++;
			}
		}
		signalsNew = s;
	} else if (alertRoute()) {
		const r = await api.call('haven.referral.v1.Referrals/ListReferrals', { openOnly: true });
		n = (r.referrals || []).flatMap((x) => x.needs || []).filter((x) => x.state === 'WAITING').length;
	}
	const parts = [signalsNew ? t('alerts.count.signals', { n: signalsNew }) : '',
		n ? t('alerts.count.' + ctx.orgRole, { n }) : ''].filter(Boolean);
	const text = parts.length ? parts.join(' · ') : t('alerts.none');
	const href = '#/' + (signalsNew ? 'signals' : alertRoute() || home());
	if (el.textContent !== text) {
		el.textContent = text;
		el.classList.toggle('on', parts.length > 0);
	}
	if (el.getAttribute('href') !== href) {
		el.setAttribute('href', href);
	}
}

function renderLogin(main, message) {
	const who = field(t('login.name'), 'login', { required: true, autocomplete: 'username',
		hint: t('login.name.hint') });
	const pw = field(t('login.password'), 'password', { type: 'password', required: true,
		autocomplete: 'current-password' });
	const code = field(t('login.code'), 'code', { required: true, inputmode: 'numeric',
		autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, hint: t('login.code.hint') });
	main.append(h('h1', {}, t('login.title')), h('p', {}, t('login.intro')),
		form(t('login.title'), [who, pw, code], t('login.submit'), async () => {
			const l = who.control.value.trim(), p = pw.control.value, c = code.control.value.trim();
			if (!l || !p || !/^\d{6}$/.test(c)) {
				say(t('login.incomplete'), 'error');
				return;
			}
			try {
				const r = await api.login(l, p, c);
				pw.control.value = '';
				saveCtx({ orgId: r.orgId, orgRole: r.orgRole, role: r.role, personId: r.personId });
				seen = new Map();
				startLive();
				if (location.hash === '#/' || !location.hash) {
					history.replaceState(null, '', '#/' + home());
				}
				show();
			} catch (e) {
				pw.control.value = '';
				code.control.value = '';
				say(e.code === 'unauthenticated' || e.code === 'permission_denied'
					? t('login.wrong') : errorText(e), 'error');
			}
		}));
	if (message) {
		say(message, message === t('login.loggedout') ? 'ok' : 'error');
	}
	who.control.focus();
}

async function signOut() {
	stopPage();
	live.stop();
	/* the other tabs first (the storage event: "signed out"), before the node ends the session
	 * and their stream would say only that it ended */
	saveCtx(null);
	await api.logout();
	seen = new Map();
	history.replaceState(null, '', '#/');
	show(t('login.loggedout'));
}

api.setSessionEndHandler(() => {
	stopPage();
	live.stop();
	saveCtx(null);
	show(t('login.expired'));
});

/* Another tab signed out: this one follows (the session cookie is gone). */
window.addEventListener('storage', (ev) => {
	if (ev.key === 'haven.ctx' && !ev.newValue && ctx) {
		stopPage();
		live.stop();
		ctx = null;
		show(t('login.loggedout'));
	} else if (ev.key === 'haven.ctx' && ev.newValue && !ctx) {
		ctx = loadCtx();
		if (ctx) {
			startLive();
		}
		show();
	}
});
window.addEventListener('hashchange', () => show());
setLang(lang());
if (ctx) {
	startLive();
}
show();
