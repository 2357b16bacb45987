/*
 * coordinator.js - a coordinator's region: the open referrals it may act on (never the
 * person's data), the needs waiting for a place, and reassigning a need (withdraw the current
 * offer and route again, or offer it to a named service).
 */
import { call, listAll } from '../api.js';
import { t } from '../i18n.js';
import { h, act, say, card, empty, en, field, form, when, table } from '../ui.js';

const R = 'haven.referral.v1.Referrals/';

function reassignForm(r, n, redraw) {
	const reason = field(t('reason'), 'reason', { required: true, maxlength: 200, hint: t('noPersonal') });
	const svc = field(t('region.service'), 'service', { maxlength: 63, hint: t('region.service.hint') });
	return form(t('region.reassign'), [reason, svc], t('region.reassign'), async () => {
		if (!reason.control.value.trim()) {
			say(t('reason.needed'), 'error');
			reason.control.focus();
			return;
		}
		await act(() => call(R + 'ReassignNeed', { referralId: r.id, needIndex: n.index || 0,
			reason: reason.control.value, serviceId: svc.control.value.trim() }).then(redraw),
		t('region.reassigned'));
	});
}

export async function render(main) {
	main.append(h('h1', {}, t('nav.region')));
	const waiting = h('div', { 'aria-live': 'polite' });
	const all = h('div', {});
	main.append(h('h2', {}, t('region.waiting')), waiting, h('h2', {}, t('region.open')), all);
	let last = null;
	const redraw = async () => {
		const refs = await listAll(R + 'ListReferrals', { openOnly: true }, 'referrals', 4);
		const key = refs.map((r) => r.id + ':' + r.version).join();
		if (key === last) {
			return;
		}
		last = key;
		const needs = refs.flatMap((r) => (r.needs || []).filter((n) => ['WAITING', 'OFFERED'].includes(n.state)).map((n) => [r, n]));
		waiting.replaceChildren(...(needs.length ? needs.map(([r, n]) => card(
			`${r.id} · ${t('need.n', { n: (n.index || 0) + 1 })}`,
			h('p', {}, `${en(n.type)} · ${en(n.population)} · ${en(n.state)}`),
			h('p', { class: 'meta' }, `${t('urgency')}: ${en(r.urgency)} · ${t('since')} ${when(n.waitingSinceMs || r.createdMs)}`),
			reassignForm(r, n, redraw))) : [empty(t('region.none'))]));
		all.replaceChildren(refs.length ? table(t('region.open'), [t('referral'), t('urgency'), t('needs'), t('since')],
			refs.map((r) => [h('a', { href: '#/referral/' + r.id }, r.id), en(r.urgency),
				(r.needs || []).map((n) => `${en(n.type)}: ${en(n.state)}`).join('; '), when(r.createdMs)]))
			: empty(t('referral.none')));
	};
	await act(redraw);
	return { refresh: () => (main.contains(document.activeElement) &&
		['INPUT', 'TEXTAREA'].includes(document.activeElement.tagName) ? null : redraw()) };
}
