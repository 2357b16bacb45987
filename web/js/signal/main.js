/*
 * main.js - the public signal page (signal.html, docs/signals.md): anyone says "something is
 * wrong here" without an account, in the language they choose.
 *
 * Safety, as the page keeps it: no cookie is sent or set (every call is credentials: 'omit'),
 * nothing is written to storage or the URL (the language is in memory; ?lang=pl only picks the
 * first one), no resource of another site is loaded (the node's CSP holds it), and the quick
 * exit (its button or Esc) replaces this page with a neutral one, leaving no history entry.
 *
 * The flow: Signals/Challenge at once (the nonce, the emergency numbers and the regions), the
 * proof-of-work started in the background while the form is filled in (pow.js), "in danger
 * now" shows 112 and the helpline before anything is sent, then Signals/Submit; the answer is
 * a plain confirmation and the form is emptied.
 */
import { solve, base64 } from './pow.js';

/* The reader's languages, each named in itself; dir for the page. */
const LANGS = [
	['nl', 'Nederlands', 'ltr'], ['en', 'English', 'ltr'], ['pl', 'Polski', 'ltr'],
	['ro', 'Română', 'ltr'], ['bg', 'Български', 'ltr'], ['uk', 'Українська', 'ltr'],
	['hu', 'Magyar', 'ltr'], ['pt', 'Português', 'ltr'], ['ar', 'العربية', 'rtl'],
];
const EXIT_URL = 'https://www.google.com/search?q=weer';
const HELP = ['HELP_SAFETY', 'HELP_ADVICE', 'HELP_WORK_PAY', 'HELP_MEDICAL', 'HELP_OTHER'];
const SECTORS = ['FARM', 'DISTRIBUTION_CENTRE', 'CONSTRUCTION', 'CLEANING', 'HOSPITALITY',
	'SHIPPING', 'DOMESTIC', 'SEX_WORK', 'SECTOR_OTHER'];
const SIGNS = ['PASSPORT_TAKEN', 'DEBT', 'NO_PAY', 'LOCKED_IN', 'THREATS', 'VIOLENCE',
	'HOUSING_FROM_EMPLOYER', 'LONG_HOURS', 'NO_CONTRACT', 'SIGN_OTHER'];
const CONTACT_MAX = 500; /* bytes, as the node counts them */

let cat = {};
let code = 'nl';
let challenge = null; /* {nonce, difficulty, emergencyNumbers, regions} */
let work = null;      /* {abort, promise of the solution} */

/* ---- small DOM helpers: text only, never markup ---------------------------------------------- */

function h(tag, attrs, ...children) {
	const el = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === undefined || v === null || v === false) {
			continue;
		}
		if (k.startsWith('on')) {
			el.addEventListener(k.slice(2), v);
		} else {
			el.setAttribute(k, v === true ? '' : String(v));
		}
	}
	for (const c of children.flat()) {
		if (c !== undefined && c !== null && c !== false) {
			el.append(c instanceof Node ? c : document.createTextNode(String(c)));
		}
	}
	return el;
}

/* The text of key in the reader's language, {name} filled from params. */
function t(key, params) {
	let s = cat[key] ?? key;
	for (const [k, v] of Object.entries(params || {})) {
		s = s.replaceAll(`{${k}}`, String(v));
	}
	return s;
}

/* An element whose text follows the language: data-t names its key. */
function tx(tag, key, attrs) {
	return h(tag, { ...attrs, 'data-t': key }, t(key));
}

function retext(root) {
	for (const el of root.querySelectorAll('[data-t]')) {
		el.textContent = t(el.dataset.t);
	}
	for (const el of root.querySelectorAll('[data-t-label]')) {
		el.setAttribute('aria-label', t(el.dataset.tLabel));
	}
}

/* ---- calls ----------------------------------------------------------------------------------- */

class CallError extends Error {
	constructor(codeName) {
		super(codeName);
		this.code = codeName;
	}
}

async function call(method, body) {
	let res;
	try {
		res = await fetch('/haven.signals.v1.Signals/' + method, {
			method: 'POST',
			headers: { 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1' },
			body: JSON.stringify(body),
			credentials: 'omit', /* no cookie goes out, none comes in */
			cache: 'no-store',
			redirect: 'error',
			referrerPolicy: 'no-referrer',
		});
	} catch {
		throw new CallError('network');
	}
	let data = {};
	try {
		data = await res.json();
	} catch {
		data = {};
	}
	if (!res.ok) {
		throw new CallError(data.code || 'unknown');
	}
	return data;
}

/* A new challenge, and its work started at once in the background. */
async function newChallenge() {
	work?.abort.abort();
	challenge = await call('Challenge', {});
	const abort = new AbortController();
	const promise = solve(challenge.nonce, challenge.difficulty, abort.signal);
	promise.catch(() => {}); /* an aborted search is awaited by no one */
	work = { abort, promise, nonce: challenge.nonce };
	return challenge;
}

/* ---- the quick exit ---------------------------------------------------------------------------- */

function quickExit(ev) {
	ev?.preventDefault();
	work?.abort.abort();
	document.body.replaceChildren(); /* nothing typed stays on screen while the next page loads */
	location.replace(EXIT_URL);
}

/* ---- the page ---------------------------------------------------------------------------------- */

async function setLang(c) {
	const l = LANGS.find((x) => x[0] === c) || LANGS[0];
	cat = (await import(`./lang/${l[0]}.js`)).default;
	code = l[0];
	document.documentElement.lang = l[0];
	document.documentElement.dir = l[2];
	document.title = t('page.title');
	retext(document.body);
	for (const b of document.querySelectorAll('.langs button')) {
		b.setAttribute('aria-pressed', String(b.lang === code));
	}
}

function firstLang() {
	const asked = new URLSearchParams(location.search).get('lang');
	const want = [asked, ...(navigator.languages || [])].filter(Boolean).map((x) => x.slice(0, 2));
	return want.find((x) => LANGS.some((l) => l[0] === x)) || 'nl';
}

function choices(type, name, values, prefix, required) {
	return values.map((v) => {
		const id = `${name}-${v}`;
		return h('div', { class: 'choice' },
			h('input', { type, id, name, value: v, required: required && type === 'radio' }),
			tx('label', prefix + v, { for: id }));
	});
}

/* The emergency numbers, shown at once when "in danger now" is ticked. */
function dangerBox() {
	const nums = challenge?.emergencyNumbers?.length ? challenge.emergencyNumbers : ['112'];
	const box = h('div', { id: 'danger-box', class: 'danger', role: 'alert', hidden: true },
		tx('p', 'danger.title', { class: 'danger-title' }),
		tx('p', 'danger.text'));
	const list = h('ul', { class: 'numbers' });
	nums.forEach((n, i) => {
		const key = i === 0 ? 'danger.112' : 'danger.helpline';
		list.append(h('li', {}, tx('span', key), ' ',
			h('a', { href: 'tel:' + n.replace(/[^0-9+]/g, ''), class: 'call', dir: 'ltr' }, n)));
	});
	box.append(list);
	return box;
}

function buildForm() {
	const regions = challenge?.regions || [];
	const region = h('select', { id: 'region', name: 'region', required: true,
		'aria-describedby': 'region-hint' },
	tx('option', 'region.choose', { value: '' }),
	regions.map((r) => h('option', { value: r }, r)));
	const sector = h('select', { id: 'sector', name: 'sector' },
		tx('option', 'sector.none', { value: '' }),
		SECTORS.map((s) => tx('option', 'sector.' + s, { value: s })));
	const contact = h('textarea', { id: 'contact', name: 'contact', rows: 3, maxlength: CONTACT_MAX,
		autocomplete: 'off', 'aria-describedby': 'contact-hint' });
	const danger = h('input', { type: 'checkbox', id: 'danger', name: 'danger' });
	const box = dangerBox();
	danger.addEventListener('change', () => {
		box.hidden = !danger.checked;
	});
	const form = h('form', { id: 'signal', novalidate: true },
		h('div', { class: 'field' }, tx('label', 'region', { for: 'region' }),
			tx('p', 'region.hint', { id: 'region-hint', class: 'hint' }), region),
		h('fieldset', { id: 'help' }, tx('legend', 'help'), choices('radio', 'help', HELP, 'help.', true)),
		h('div', { class: 'field danger-field' }, h('div', { class: 'choice' }, danger,
			tx('label', 'danger', { for: 'danger' }))),
		box,
		h('div', { class: 'field' }, tx('label', 'sector', { for: 'sector' }), sector),
		h('fieldset', {}, tx('legend', 'signs'), choices('checkbox', 'signs', SIGNS, 'sign.', false)),
		h('div', { class: 'field' }, tx('label', 'contact', { for: 'contact' }),
			tx('p', 'contact.hint', { id: 'contact-hint', class: 'hint' }), contact),
		h('p', { id: 'form-error', class: 'error', role: 'alert' }),
		h('button', { type: 'submit', id: 'send', class: 'send' }, tx('span', 'send')),
		tx('p', 'privacy', { class: 'hint' }));
	form.addEventListener('submit', (ev) => {
		ev.preventDefault();
		send(form);
	});
	return form;
}

function formError(key) {
	const el = document.getElementById('form-error');
	el.dataset.t = key;
	el.className = key === 'sending' ? 'hint' : 'error';
	el.textContent = t(key);
}

/* The form's values, or null with the problem shown. */
function values(form) {
	const region = form.region.value;
	const help = form.querySelector('input[name=help]:checked')?.value;
	const contact = form.contact.value.trim();
	if (!region) {
		formError('required.region');
		form.region.focus();
		return null;
	}
	if (!help) {
		formError('required.help');
		form.querySelector('input[name=help]').focus();
		return null;
	}
	if (new TextEncoder().encode(contact).length > CONTACT_MAX) {
		formError('contact.long');
		form.contact.focus();
		return null;
	}
	const body = { region, help, dangerNow: form.danger.checked, language: code,
		signs: [...form.querySelectorAll('input[name=signs]:checked')].map((x) => x.value) };
	if (form.sector.value) {
		body.sector = form.sector.value;
	}
	if (contact) {
		body.contact = contact;
	}
	return body;
}

const ERRORS = { resource_exhausted: 'err.busy', network: 'err.network',
	invalid_argument: 'err.invalid' };

async function send(form) {
	const body = values(form);
	const btn = document.getElementById('send');
	if (!body) {
		return;
	}
	formError('sending');
	btn.disabled = true;
	try {
		let reply;
		for (let attempt = 0; ; attempt++) {
			if (!work || Date.now() > Number(challenge.expiresAtMs) - 5000) {
				await newChallenge();
			}
			const solution = await work.promise;
			const nonce = work.nonce;
			work = null; /* one try per challenge: the next send gets a new one */
			try {
				reply = await call('Submit', { ...body, nonce, solution: base64(solution) });
				break;
			} catch (e) {
				/* a challenge spent or expired meanwhile: once more with a new one */
				if (e.code !== 'failed_precondition' || attempt > 0) {
					throw e;
				}
			}
		}
		done(form, body, reply);
	} catch (e) {
		formError(ERRORS[e.code] || 'err.server');
		btn.disabled = false;
		newChallenge().catch(() => {});
	}
}

/* A plain confirmation; the form is emptied and nothing is kept. */
function done(form, body, reply) {
	const main = document.getElementById('main');
	const nums = reply.emergencyNumbers || [];
	form.reset();
	main.replaceChildren(h('section', { class: 'done', 'aria-labelledby': 'done-title' },
		tx('h1', 'done.title', { id: 'done-title', tabindex: '-1' }),
		h('p', {}, t('done.text', { region: body.region })),
		tx('p', body.contact ? 'done.contact' : 'done.nocontact'),
		nums.length ? h('p', { class: 'danger' }, tx('span', 'danger.title'), ' ',
			nums.map((n) => h('a', { href: 'tel:' + n.replace(/[^0-9+]/g, ''), class: 'call', dir: 'ltr' }, n))) : null,
		tx('p', 'done.close'),
		h('button', { type: 'button', onclick: () => location.reload() }, tx('span', 'again'))));
	main.querySelector('h1').focus();
}

async function start() {
	document.getElementById('exit').addEventListener('click', quickExit);
	document.addEventListener('keydown', (ev) => {
		if (ev.key === 'Escape') {
			quickExit(ev);
		}
	});
	const langs = document.querySelector('.langs');
	langs.replaceChildren(...LANGS.map(([c, name]) => h('button', { type: 'button', lang: c,
		'aria-pressed': 'false', onclick: () => setLang(c) }, name)));
	await setLang(firstLang());
	const main = document.getElementById('main');
	try {
		await newChallenge();
	} catch (e) {
		/* offline or busy: 112 at least, and a way to try again */
		main.replaceChildren(tx('h1', 'page.title'),
			tx('p', ERRORS[e.code] || 'err.server', { class: 'error', role: 'alert' }),
			h('p', { class: 'danger' }, tx('span', 'danger.title'), ' ',
				h('a', { href: 'tel:112', class: 'call', dir: 'ltr' }, '112')),
			h('button', { type: 'button', onclick: () => location.reload() }, tx('span', 'retry')));
		return;
	}
	main.replaceChildren(tx('h1', 'page.title'), tx('p', 'intro', { class: 'intro' }), buildForm());
	document.body.classList.add('ready');
}

start();
