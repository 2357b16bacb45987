/*
 * referrer.js - an NGO case worker's pages: record a person (pseudonymous, minimal data) and
 * her consent step by step, refer her (needs, urgency, unsafe and preferred regions), follow
 * each referral live (need states, the trail), change, pause, cancel, withdraw consent, and
 * see who accessed the data of the people the organisation holds.
 *
 * Subjects are known by their pseudonymous id; a name is read (audited) only when the worker
 * opens one, and the page keeps what it read in memory only.
 */
import { call, listAll } from '../api.js';
import { t } from '../i18n.js';
import { h, act, say, card, empty, button, en, opts, field, checks, form, when, table } from '../ui.js';

const R = 'haven.referral.v1.Referrals/';
const K = 'haven.consent.v1.Consent/';
const recorded = new Set(); /* subjects recorded in this tab */
let regionsCache = null;

const TYPES = ['SHELTER', 'LEGAL_AID', 'MEDICAL', 'MENTAL_HEALTH', 'INTERPRETATION', 'CASE_MANAGEMENT', 'PEER_SUPPORT'];
const POPS = ['WOMEN', 'MEN', 'MINORS', 'FAMILIES', 'NON_BINARY'];
const LANG_RE = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;

export async function regions() {
	if (!regionsCache) {
		const r = await call('haven.capacity.v1.Capacity/ListRegions', {});
		regionsCache = (r.regions || []).map((x) => x.name);
	}
	return regionsCache;
}

function langs(text) {
	return text.split(/[\s,]+/).filter(Boolean);
}

async function subjects() {
	const refs = await listAll(R + 'ListReferrals', { openOnly: false }, 'referrals', 4);
	const ids = new Set([...recorded, ...refs.map((r) => r.subject)]);
	return [...ids];
}

function short(id) {
	return id ? id.slice(0, 8) : '—';
}

/* ---- record a person and her consent ---------------------------------------------------- */

function recordForm(after) {
	const alias = field(t('person.alias'), 'alias', { required: true, maxlength: 200,
		hint: t('person.alias.hint') });
	const lng = field(t('person.languages'), 'languages', { hint: t('person.languages.hint') });
	const contact = field(t('person.contact'), 'contact', { maxlength: 512, hint: t('person.contact.hint') });
	const minor = checks(t('person.minor.legend'), 'minor', [['minor', t('person.minor')]]);
	return form(t('person.record'), [alias, lng, contact, minor], t('person.record'), async (f) => {
		const l = langs(lng.control.value);
		if (!alias.control.value.trim()) {
			say(t('person.alias.needed'), 'error');
			alias.control.focus();
			return;
		}
		if (l.some((x) => !LANG_RE.test(x))) {
			say(t('person.languages.bad'), 'error');
			lng.control.focus();
			return;
		}
		const personal = { name: alias.control.value.trim(), languages: l };
		if (contact.control.value.trim()) {
			personal.contact = contact.control.value.trim();
		}
		const r = await act(() => call(K + 'CreateSubject', { personal,
			minor: minor.values().length > 0 }), t('person.recorded'));
		if (r) {
			recorded.add(r.id);
			f.reset();
			after(r.id);
		}
	});
}

/* Consent in four steps: who gives it, how and in which language, for what, for whom. */
function consentWizard(subject, done) {
	const box = h('section', { class: 'card wizard', 'aria-label': t('consent.title') });
	const state = { step: 0 };
	const by = field(t('consent.givenBy'), 'givenBy', { options: opts(['GIVEN_BY_SUBJECT',
		'GIVEN_BY_GUARDIAN', 'GIVEN_BY_REPRESENTATIVE']) });
	const method = field(t('consent.method'), 'method', { options: opts(['METHOD_VERBAL',
		'METHOD_VERBAL_WITH_INTERPRETER', 'METHOD_WRITTEN', 'METHOD_ELECTRONIC']) });
	const language = field(t('consent.language'), 'language', { value: 'nl', maxlength: 35,
		hint: t('person.languages.hint') });
	const purposes = checks(t('consent.purposes'), 'purposes', opts(['PURPOSE_REFERRAL',
		'PURPOSE_SHARE_WITH_PROVIDER', 'PURPOSE_CONTACT', 'PURPOSE_STATISTICS']),
	['PURPOSE_REFERRAL', 'PURPOSE_SHARE_WITH_PROVIDER', 'PURPOSE_CONTACT']);
	const cats = checks(t('consent.categories'), 'categories', opts(['CATEGORY_IDENTITY',
		'CATEGORY_CONTACT', 'CATEGORY_HEALTH', 'CATEGORY_LEGAL', 'CATEGORY_OTHER']),
	['CATEGORY_IDENTITY', 'CATEGORY_CONTACT']);
	const accepting = checks(t('consent.whom'), 'whom', [['accepting', t('consent.accepting')]], ['accepting']);
	const recipients = field(t('consent.recipients'), 'recipients', { hint: t('consent.recipients.hint') });
	const months = field(t('consent.months'), 'months', { type: 'number', value: '12', min: 1, max: 120 });
	const steps = [[by], [method, language], [purposes, cats], [accepting, recipients, months]];
	const body = h('div', {});
	const draw = () => {
		body.replaceChildren(h('p', { class: 'meta' }, t('consent.step', { n: state.step + 1, of: steps.length })),
			...steps[state.step],
			h('div', { class: 'actions row' },
				state.step > 0 ? button(t('back'), () => { state.step--; draw(); }) : null,
				state.step < steps.length - 1
					? button(t('next'), () => { state.step++; draw(); body.querySelector('select,input')?.focus(); }, 'primary')
					: button(t('consent.grant'), grant, 'primary')));
	};
	const grant = async () => {
		const m = Number(months.control.value);
		if (!LANG_RE.test(language.control.value) || !(m >= 1 && m <= 120) || !purposes.values().length ||
			!cats.values().length) {
			say(t('consent.incomplete'), 'error');
			return;
		}
		const now = Date.now();
		const r = await act(() => call(K + 'Grant', { subject, purposes: purposes.values(),
			categories: cats.values(), recipients: langs(recipients.control.value),
			acceptingProvider: accepting.values().length > 0, givenBy: by.control.value,
			method: method.control.value, language: language.control.value,
			expiresMs: String(now + m * 30 * 86400000) }), t('consent.granted'));
		if (r) {
			done();
		}
	};
	box.append(h('h2', {}, t('consent.title')), body);
	draw();
	return box;
}

async function subjectCard(id, redraw) {
	const c = await call(K + 'List', { subject: id });
	const live = (c.consents || []).filter((x) => !Number(x.withdrawnAtMs) && Number(x.expiresMs) > Date.now());
	const detail = h('div', {});
	return h('section', { class: 'card' }, h('h2', {}, t('person.id', { id: short(id) })),
		h('p', { class: 'meta' }, t('consent.count', { n: live.length })),
		h('ul', {}, live.map((x) => h('li', {}, `${(x.purposes || []).map(en).join(', ')} · ${t('until')} ${when(x.expiresMs)} `,
			button(t('consent.withdraw'), () => act(async () => {
				await call(K + 'Withdraw', { id: x.id });
				await redraw();
			}, t('consent.withdrawn')), 'danger')))),
		detail,
		h('div', { class: 'actions row' },
			button(t('person.open'), () => act(async () => {
				const s = await call(K + 'GetSubject', { id });
				const p = s.personal || {};
				detail.replaceChildren(h('dl', {}, h('dt', {}, t('person.alias')), h('dd', {}, p.name || '—'),
					h('dt', {}, t('person.languages')), h('dd', {}, (p.languages || []).join(', ') || '—'),
					h('dt', {}, t('person.contact')), h('dd', {}, p.contact || '—')));
			})),
			button(t('consent.add'), () => detail.replaceChildren(consentWizard(id, redraw))),
			button(t('nav.refer'), () => { pending = id; location.hash = '#/refer'; }, 'primary')));
}

let pending = ''; /* the subject the referral form starts with (memory, never the URL) */

export async function clients(main) {
	main.append(h('h1', {}, t('nav.clients')));
	const list = h('div', { class: 'grid' });
	const redraw = async () => {
		const ids = await subjects();
		const cards = await Promise.all(ids.map((id) => subjectCard(id, redraw)));
		list.replaceChildren(...(cards.length ? cards : [empty(t('person.none'))]));
	};
	const wiz = h('div', {});
	main.append(card(t('person.record'), recordForm(async (id) => {
		wiz.replaceChildren(consentWizard(id, async () => { wiz.replaceChildren(); await redraw(); }));
		wiz.querySelector('select')?.focus();
	})), wiz, h('h2', {}, t('person.list')), list);
	await act(redraw);
	return null;
}

/* ---- refer ----------------------------------------------------------------------------------- */

function needRow(i) {
	const type = field(t('need.type'), `type${i}`, { options: opts(TYPES) });
	const pop = field(t('need.population'), `pop${i}`, { options: opts(POPS) });
	const lng = field(t('need.languages'), `lang${i}`, { hint: t('person.languages.hint') });
	const fs = h('fieldset', { class: 'need' }, h('legend', {}, t('need.n', { n: i + 1 })), type, pop, lng);
	fs.value = () => ({ type: type.control.value, population: pop.control.value, languages: langs(lng.control.value) });
	return fs;
}

export async function refer(main) {
	main.append(h('h1', {}, t('nav.refer')));
	const [ids, regs] = await Promise.all([act(subjects), act(regions)]);
	if (!ids || !regs) {
		return null;
	}
	if (!ids.length) {
		main.append(empty(t('refer.noSubject')));
		return null;
	}
	const subject = field(t('refer.subject'), 'subject', { options: ids.map((id) => [id, t('person.id', { id: short(id) })]),
		value: pending || ids[0] });
	pending = '';
	const urgency = field(t('urgency'), 'urgency', { options: opts(['IMMEDIATE', 'URGENT', 'PLANNED']) });
	const expl = field(t('exploitation'), 'exploitation', { options: opts(['UNKNOWN', 'LABOUR', 'SEXUAL', 'CRIMINAL', 'OTHER']) });
	const needs = h('div', {}, needRow(0));
	const addNeed = button(t('need.add'), () => {
		const row = needRow(needs.children.length);
		needs.append(row);
		row.querySelector('select').focus();
	});
	const unsafe = checks(t('refer.unsafe'), 'unsafe', regs.map((r) => [r, r]));
	const preferred = checks(t('refer.preferred'), 'preferred', regs.map((r) => [r, r]));
	const note = field(t('refer.note'), 'note', { type: 'textarea', maxlength: 1000, hint: t('noPersonal') });
	const idem = crypto.randomUUID(); /* one per form: sending twice makes one referral */
	main.append(form(t('nav.refer'), [subject, urgency, expl, needs, addNeed, unsafe, preferred, note],
		t('refer.submit'), async () => {
			const ns = [...needs.children].map((n) => n.value());
			if (ns.some((n) => n.languages.some((x) => !LANG_RE.test(x)))) {
				say(t('person.languages.bad'), 'error');
				return;
			}
			const r = await act(() => call(R + 'CreateReferral', { subject: subject.control.value,
				urgency: urgency.control.value, exploitation: expl.control.value, needs: ns,
				excludedRegions: unsafe.values(), preferredRegions: preferred.values(),
				note: note.control.value }, idem));
			if (r) {
				location.hash = '#/referral/' + r.id;
			}
		}));
	return null;
}

/* ---- follow ---------------------------------------------------------------------------------- */

export async function referrals(main, ctx) {
	main.append(h('h1', {}, t('nav.referrals')));
	const box = h('div', { 'aria-live': 'polite' });
	main.append(box);
	let last = null;
	const redraw = async () => {
		const list = await listAll(R + 'ListReferrals', { openOnly: false }, 'referrals', 4);
		const key = list.map((r) => r.id + ':' + r.version).join();
		if (key === last) {
			return;
		}
		last = key;
		for (const r of list) {
			ctx.seen.set(r.id, r.version);
		}
		box.replaceChildren(list.length ? table(t('nav.referrals'),
			[t('referral'), t('urgency'), t('needs'), t('since')],
			list.map((r) => [h('a', { href: '#/referral/' + r.id }, r.id),
				en(r.urgency), (r.needs || []).map((n) => `${en(n.type)}: ${en(n.state)}`).join('; '),
				when(r.createdMs)])) : empty(t('referral.none')));
	};
	await act(redraw);
	return { refresh: redraw };
}

/* The words for a trail entry's reason: the node's own codes ("offered", "offer expired")
 * in the user's language; a person's reason text as it was written. */
function why(reason) {
	const k = 'why.' + (reason || '');
	const w = t(k);
	return w !== k ? w : reason || '';
}

function trail(r) {
	return table(t('referral.trail'), [t('when'), t('who'), t('need'), t('change'), t('reason')],
		(r.events || []).slice().reverse().map((e) => [when(e.timeMs), e.actorOrg || t('node'),
			String((e.needIndex || 0) + 1), `${en(e.from)} → ${en(e.to)}`, why(e.reason)]));
}

function needActions(r, n, redraw) {
	const i = n.index || 0;
	if (n.state === 'ON_HOLD') {
		return button(t('need.resume'), () => act(() => call(R + 'ResumeNeed', { referralId: r.id, needIndex: i }).then(redraw), t('need.resumed')));
	}
	if (n.state !== 'WAITING' && n.state !== 'OFFERED') {
		return null;
	}
	const why = field(t('need.pauseReason'), `pause${i}`, { options: opts(['CLIENT_UNAVAILABLE',
		'CLIENT_UNDECIDED', 'SAFETY_REVIEW', 'AWAITING_DOCUMENTS']) });
	return form(t('need.pause'), [why], t('need.pause'), () => act(() => call(R + 'PauseNeed',
		{ referralId: r.id, needIndex: i, reason: why.control.value }).then(redraw), t('need.paused')));
}

function editForms(r, redraw) {
	const urgency = field(t('urgency'), 'urgency', { options: opts(['IMMEDIATE', 'URGENT', 'PLANNED']), value: r.urgency });
	const reason = field(t('reason'), 'reason', { required: true, maxlength: 200, hint: t('noPersonal') });
	const edit = form(t('referral.edit'), [urgency, reason], t('referral.edit'), async () => {
		if (!reason.control.value.trim()) {
			say(t('reason.needed'), 'error');
			reason.control.focus();
			return;
		}
		await act(() => call(R + 'UpdateReferral', { id: r.id, reason: reason.control.value,
			urgency: urgency.control.value }).then(redraw), t('referral.edited'));
	});
	const creason = field(t('reason'), 'creason', { required: true, maxlength: 200, hint: t('noPersonal') });
	const cancel = form(t('referral.cancel'), [creason], t('referral.cancel'), async () => {
		if (!creason.control.value.trim()) {
			say(t('reason.needed'), 'error');
			creason.control.focus();
			return;
		}
		await act(() => call(R + 'CancelReferral', { id: r.id, reason: creason.control.value }).then(redraw),
			t('referral.cancelled'));
	});
	return [card(t('referral.edit'), edit), card(t('referral.cancel'), cancel)];
}

export async function referral(main, ctx) {
	main.append(h('h1', {}, t('referral')));
	const live = h('div', { 'aria-live': 'polite' });
	const rest = h('div', {});
	main.append(live, rest);
	let version = '';
	const redraw = async () => {
		const r = await call(R + 'GetReferral', { id: ctx.arg });
		if (r.version === version) {
			return;
		}
		version = r.version;
		ctx.seen.set(r.id, r.version);
		live.replaceChildren(card(`${r.id}`,
			h('p', { class: 'meta' }, `${t('urgency')}: ${en(r.urgency)} · ${t('exploitation')}: ${en(r.exploitation)} · ${t('person.id', { id: short(r.subject) })}`),
			(r.excludedRegions || []).length ? h('p', {}, `${t('refer.unsafe')}: ${r.excludedRegions.join(', ')}`) : null,
			(r.preferredRegions || []).length ? h('p', {}, `${t('refer.preferred')}: ${r.preferredRegions.join(', ')}`) : null,
			r.note ? h('p', {}, `${t('refer.note')}: ${r.note}`) : null,
			h('ul', { class: 'needs' }, (r.needs || []).map((n) => h('li', { class: 'need-state' },
				h('strong', {}, `${t('need.n', { n: (n.index || 0) + 1 })}: ${en(n.type)} · ${en(n.population)}`), ' ',
				h('span', { class: 'state st-' + n.state, dataset: { need: String(n.index || 0) } }, en(n.state)),
				n.providerOrg ? ` · ${n.providerOrg}` : '',
				ctx.orgRole === 'referrer' ? needActions(r, n, redraw) : null)))),
		card(t('referral.trail'), trail(r)));
		const open = !Number(r.closedMs);
		rest.replaceChildren(...(open && ctx.orgRole === 'referrer' ? editForms(r, redraw) : []));
	};
	const ok = await act(redraw);
	if (ok === undefined && !version) {
		live.replaceChildren(h('p', { class: 'warn' }, t('referral.notFound')));
		return null;
	}
	return { refresh: () => (main.contains(document.activeElement) &&
		['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName) ? null : redraw()) };
}

/* ---- who accessed ------------------------------------------------------------------------- */

export async function access(main) {
	main.append(h('h1', {}, t('nav.access')), h('p', {}, t('access.intro')));
	const r = await act(() => call('haven.audit.v1.Audit/List', { limit: 200 }));
	if (!r) {
		return null;
	}
	const rows = (r.entries || []).slice().reverse().map((e) => [when(e.timeMs),
		e.callerOrg || t('node'), e.callerRole || '—', e.callerPerson ? short(e.callerPerson) : '—',
		e.method.replace(/^haven\./, ''), t('person.id', { id: short(e.subject) }), e.resultName]);
	main.append(rows.length ? table(t('nav.access'), [t('when'), t('org'), t('role'), t('person'),
		t('what'), t('subject'), t('result')], rows) : empty(t('access.none')));
	return null;
}
