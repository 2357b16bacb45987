/*
 * provider.js - a shelter's or provider's intake, phone first: its services with the free
 * places as large numbers and one-tap changes, open offers with a respond-by countdown and
 * accept/decline, the accepted person's details as far as consent shares them, and
 * placements (ending one frees the place).
 */
import { call, listAll } from '../api.js';
import { t } from '../i18n.js';
import { h, act, say, card, empty, button, en, opts, field, form, when, countdown, span } from '../ui.js';

const R = 'haven.referral.v1.Referrals/';
const C = 'haven.capacity.v1.Capacity/';

async function myServices(orgId) {
	const all = await listAll(C + 'FindServices', { pageSize: 500 }, 'services');
	return all.filter((v) => v.service.orgId === orgId && !v.service.retired);
}

function serviceCard(v, redraw) {
	const s = v.service;
	const interval = Number(s.reportIntervalS || 86400);
	const age = Number(v.ageS || 0);
	const stale = v.freshness !== 'FRESH';
	const soon = !stale && age > interval * 0.75;
	const change = (delta, okKey) => act(async () => {
		await call(C + 'ChangeAvailability', { serviceId: s.id, delta });
		await redraw();
	}, t(okKey));
	return h('section', { class: 'card service' + (stale ? ' stale' : '') },
		h('h2', {}, s.name || s.id),
		h('p', { class: 'meta' }, `${en(s.type)} · ${s.serviceArea}`),
		h('p', { class: 'big', 'aria-label': t('svc.free.aria', { n: v.free || 0 }) },
			h('span', { class: 'num' }, String(stale ? '?' : v.free || 0)),
			h('span', { class: 'unit' }, t('svc.free'))),
		h('p', { class: 'meta' }, t('svc.detail', { held: s.held || 0, occupied: s.occupied || 0,
			max: s.maximum })),
		h('p', { class: 'meta fresh' }, stale ? t('svc.staleSince', { ago: span(age) })
			: t('svc.fresh', { ago: span(age), left: span(interval - age) })),
		stale ? h('p', { class: 'warn' }, t('svc.stale')) : null,
		soon ? h('p', { class: 'warn' }, t('svc.soon')) : null,
		h('div', { class: 'actions row' },
			button(t('svc.freed'), () => change(1, 'svc.freed.ok'), 'primary big-btn'),
			button(t('svc.taken'), () => change(-1, 'svc.taken.ok'), 'big-btn'),
			button(t('svc.confirm'), () => act(async () => {
				const cur = await call(C + 'GetService', { id: s.id });
				await call(C + 'UpdateAvailability', { serviceId: s.id,
					available: cur.service.available || 0, basedOnVersion: cur.service.version });
				await redraw();
			}, t('svc.confirm.ok')))));
}

export async function services(main, ctx) {
	main.append(h('h1', {}, t('nav.services')));
	const box = h('div', { class: 'grid' });
	main.append(box);
	const redraw = async () => {
		const list = await myServices(ctx.orgId);
		box.replaceChildren(...(list.length ? list.map((v) => serviceCard(v, redraw))
			: [empty(t('svc.none'))]));
	};
	await act(redraw);
	return { refresh: () => redrawQuiet(box, redraw) };
}

/* A refresh that leaves the page alone while the user is in the middle of something. */
async function redrawQuiet(box, redraw) {
	if (box.contains(document.activeElement) && document.activeElement.tagName !== 'BUTTON') {
		return;
	}
	const focused = document.activeElement && box.contains(document.activeElement)
		? document.activeElement.textContent : null;
	await redraw();
	if (focused) {
		const again = [...box.querySelectorAll('button')].find((b) => b.textContent === focused);
		again?.focus();
	}
}

function offerSummary(o) {
	return [
		h('p', { class: 'meta' }, `${t('urgency')}: `, h('strong', { class: 'urg-' + o.urgency }, en(o.urgency))),
		h('p', {}, `${en(o.type)} · ${en(o.population)}`),
		h('p', { class: 'meta' }, `${t('languages')}: ${(o.languages || []).join(', ') || '—'}`),
		o.exploitation ? h('p', { class: 'meta' }, `${t('exploitation')}: ${en(o.exploitation)}`) : null,
	];
}

function timerEl(ms) {
	return h('p', { class: 'countdown' }, `${t('offer.respondBy')}: `,
		h('time', { dataset: { until: String(ms) } }, countdown(ms)));
}

function tickTimers() {
	for (const el of document.querySelectorAll('time[data-until]')) {
		el.textContent = countdown(el.dataset.until);
	}
}

export async function offers(main) {
	main.append(h('h1', {}, t('nav.offers')));
	const box = h('div', { class: 'grid', 'aria-live': 'polite' });
	main.append(box);
	let last = null;
	const redraw = async () => {
		const r = await call(R + 'ListOffers', { openOnly: true });
		const list = r.offers || [];
		const key = list.map((o) => o.id + o.state).join();
		if (key === last) {
			return;
		}
		last = key;
		box.replaceChildren(...(list.length ? list.map((o) => h('section', { class: 'card offer' },
			h('h2', {}, h('a', { href: '#/offer/' + o.id }, t('offer.title', { type: en(o.type) }))),
			offerSummary(o), timerEl(o.respondByMs))) : [empty(t('offer.none'))]));
	};
	await act(redraw);
	const clock = setInterval(tickTimers, 1000);
	return { refresh: redraw, stop: () => clearInterval(clock) };
}

async function accepted(box, o) {
	/* what the accepting provider may know: the referral's id, subject and referrer, and the
	 * subject's data as far as consent shares it (each read audited) */
	const ref = await call(R + 'GetReferral', { id: o.referralId });
	const org = await call(C + 'GetOrganisation', { id: ref.referrerOrg });
	let person = null;
	try {
		person = await call('haven.consent.v1.Consent/GetSubject', { id: ref.subject });
	} catch (e) {
		person = { error: e };
	}
	const p = person.personal || {};
	const rows = [['person.name', p.name], ['person.languages', (p.languages || []).join(', ')],
		['person.contact', p.contact], ['person.dob', p.dateOfBirth],
		['person.nationality', p.nationality], ['person.notes', p.notes]].filter(([, v]) => v);
	box.append(card(t('offer.person'),
		person.error ? h('p', { class: 'warn' }, t('offer.noConsent'))
			: rows.length ? h('dl', {}, rows.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v)]))
				: empty(t('offer.nothingShared'))),
	card(t('offer.referrer'), h('dl', {}, h('dt', {}, t('org')), h('dd', {}, org.name || org.id),
		h('dt', {}, t('org.contact')), h('dd', {}, org.contact || '—'))));
}

export async function offer(main, ctx) {
	main.append(h('h1', {}, t('offer.one')));
	const box = h('div', {});
	main.append(box);
	const r = await act(() => listAll(R + 'ListOffers', { openOnly: false }, 'offers', 4));
	const o = (r || []).find((x) => x.id === ctx.arg);
	if (!o) {
		/* an offer of another provider looks exactly like one that does not exist */
		box.append(h('p', { class: 'warn', role: 'alert' }, t('offer.notFound')));
		return null;
	}
	box.append(card(t('offer.title', { type: en(o.type) }), offerSummary(o),
		h('p', {}, `${t('state')}: ${en(o.state)} · ${en(o.needState)}`)));
	if (o.state === 'OFFER_OPEN') {
		box.append(timerEl(o.respondByMs));
		const reason = field(t('offer.declineReason'), 'reason', { options: [['', '—'],
			...opts(['NO_CAPACITY', 'NOT_ELIGIBLE', 'UNSAFE', 'DECLINE_OTHER'])] });
		const text = field(t('offer.declineText'), 'text', { type: 'textarea', maxlength: 500,
			hint: t('noPersonal') });
		box.append(h('div', { class: 'actions row' }, button(t('offer.accept'), async () => {
			const ok = await act(() => call(R + 'AcceptOffer', { offerId: o.id }), t('offer.accepted'));
			if (ok) {
				location.hash = '#/offer/' + o.id + '/';
			}
		}, 'primary big-btn')),
		form(t('offer.decline'), [reason, text], t('offer.decline'), async () => {
			if (!reason.control.value) {
				say(t('offer.reasonNeeded'), 'error');
				reason.control.focus();
				return;
			}
			const ok = await act(() => call(R + 'DeclineOffer', { offerId: o.id,
				declineReason: reason.control.value, text: text.control.value }), t('offer.declined'));
			if (ok) {
				location.hash = '#/offers';
			}
		}));
		const clock = setInterval(tickTimers, 1000);
		return { stop: () => clearInterval(clock) };
	}
	if (o.state === 'OFFER_ACCEPTED') {
		await act(() => accepted(box, o));
		box.append(placementActions(o, () => { location.hash = '#/placements'; }));
	}
	return null;
}

function placementActions(o, after) {
	const outcome = field(t('placement.outcome'), 'outcome', { options: opts(['NO_LONGER_NEEDED',
		'CLIENT_REFUSED', 'UNABLE_TO_CONTACT_CLIENT', 'OUTCOME_OTHER']) });
	const done = async (method, okKey, body = {}) => {
		if (await act(() => call(R + method, { offerId: o.id, ...body }), t(okKey))) {
			after();
		}
	};
	const row = h('div', { class: 'actions row' });
	if (o.needState === 'ACCEPTED') {
		row.append(button(t('placement.placed'), () => done('MarkPlaced', 'placement.placed.ok'), 'primary'));
	}
	if (o.needState === 'PLACED') {
		row.append(button(t('placement.complete'), () => done('CompletePlacement', 'placement.complete.ok'), 'primary'));
	}
	return h('div', {}, row, form(t('placement.end'), [outcome], t('placement.end'),
		() => done('EndPlacement', 'placement.end.ok', { outcome: outcome.control.value })));
}

export async function placements(main) {
	main.append(h('h1', {}, t('nav.placements')));
	const box = h('div', { class: 'grid' });
	main.append(box);
	const redraw = async () => {
		const list = (await listAll(R + 'ListOffers', { openOnly: false }, 'offers', 4))
			.filter((o) => o.state === 'OFFER_ACCEPTED' && ['ACCEPTED', 'PLACED'].includes(o.needState));
		box.replaceChildren(...(list.length ? list.map((o) => h('section', { class: 'card' },
			h('h2', {}, h('a', { href: '#/offer/' + o.id }, t('offer.title', { type: en(o.type) }))),
			h('p', {}, `${en(o.needState)} · ${t('since')} ${when(o.createdMs)}`),
			placementActions(o, redraw))) : [empty(t('placement.none'))]));
	};
	await act(redraw);
	return null;
}
