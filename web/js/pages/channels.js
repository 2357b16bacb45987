/*
 * channels.js - an org admin's alert channels (haven.alerts.v1.Alerts): the addresses that get
 * e-mail alerts, the on-call address for escalations, and a webhook with its signing secret
 * (write-only: made here on request and shown once, never shown by the node again), and a
 * button that sends a test alert (TestChannels) through the node's real outbox to every
 * channel set: the answer says per channel whether it was delivered, and this page says when
 * the same alert arrived on its own live stream.
 */
import { call } from '../api.js';
import { t } from '../i18n.js';
import { h, act, say, card, field, form, when, button, empty } from '../ui.js';

const A = 'haven.alerts.v1.Alerts/';
const EMAIL_RE = /^[^\s<>,@]+@[^\s<>,@]+$/;

/* 32 random bytes as base64url (43 characters): a webhook secret for the partner's system. */
function newSecret() {
	const b = crypto.getRandomValues(new Uint8Array(32));
	return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function secretField(cur) {
	const secret = field(t('ch.secret'), 'secret', { type: 'password', autocomplete: 'new-password',
		maxlength: 64, hint: cur.hasWebhookSecret ? t('ch.secret.kept') : t('ch.secret.hint') });
	const shown = h('p', { class: 'warn', hidden: true, 'aria-live': 'polite' });
	secret.append(h('div', { class: 'row' }, button(t('ch.secret.make'), () => {
		secret.control.type = 'text';
		secret.control.value = newSecret();
		shown.hidden = false;
		shown.textContent = t('ch.secret.once');
		secret.control.focus();
		secret.control.select();
	})), shown);
	/* after a save: the secret leaves the page; the node keeps it */
	secret.clear = (kept) => {
		secret.control.value = '';
		secret.control.type = 'password';
		shown.hidden = true;
		secret.querySelector('.hint').textContent = kept ? t('ch.secret.kept') : t('ch.secret.hint');
	};
	return secret;
}

function outcomeText(r) {
	if (r.outcome === 'TEST_DELIVERED') {
		return t('ch.test.delivered');
	}
	if (r.outcome === 'TEST_FAILED') {
		return t('ch.test.failed', { why: r.error || '—' });
	}
	return t('ch.test.pending');
}

/* The test button and what became of the test: per channel, and on this page's stream. The
 * alert can reach the stream before the call returns (the call waits for the deliveries), so
 * the page listens from the start and remembers the test alerts it saw. */
function tester() {
	const out = h('div', { 'aria-live': 'polite' });
	const seen = new Set();
	let want = null;
	let here = null;
	const mark = () => {
		if (here && want !== null && seen.has(want)) {
			here.lastChild.textContent = t('ch.test.arrived');
		}
	};
	const listen = (ev) => {
		if (ev.detail && ev.detail.kind === 'TEST') {
			seen.add(ev.detail.seq);
			mark();
		}
	};
	window.addEventListener('haven:alert', listen);
	const run = async () => {
		const r = await act(() => call(A + 'TestChannels', {}));
		if (!r) {
			return;
		}
		want = r.seq;
		here = h('li', { id: 'test-here' }, `${t('ch.test.here')}: `, h('strong', {}, t('ch.test.waiting')));
		const rows = (r.results || []).map((x) => h('li', { class: 'test-' + x.outcome },
			`${t('ch.via.' + x.channel)}: `, h('strong', {}, outcomeText(x))));
		out.replaceChildren(...[h('h3', {}, t('ch.test.result')),
			rows.length ? null : empty(t('ch.test.none')), h('ul', { class: 'results' }, rows, here)]
			.filter(Boolean));
		mark();
		const failed = (r.results || []).some((x) => x.outcome !== 'TEST_DELIVERED');
		say(failed ? t('ch.test.someFailed') : t('ch.test.sent'), failed ? 'error' : 'ok');
	};
	return { el: h('div', {}, h('p', {}, t('ch.test.intro')),
		h('div', { class: 'actions' }, button(t('ch.test'), run, 'primary')), out),
	stop: () => window.removeEventListener('haven:alert', listen) };
}

export async function render(main) {
	main.append(h('h1', {}, t('nav.channels')), h('p', {}, t('ch.intro')));
	const cur = await act(() => call(A + 'GetChannels', {}));
	if (!cur) {
		return null;
	}
	const emails = field(t('ch.emails'), 'emails', { value: (cur.emails || []).join(', '), hint: t('ch.emails.hint') });
	const oncall = field(t('ch.oncall'), 'oncall', { type: 'email', value: cur.oncallEmail || '' });
	const hook = field(t('ch.webhook'), 'webhook', { type: 'url', value: cur.webhookUrl || '', hint: t('ch.webhook.hint') });
	const secret = secretField(cur);
	const meta = h('p', { class: 'meta' }, cur.updatedMs ? `${t('ch.updated')} ${when(cur.updatedMs)}` : '');
	const test = tester();
	main.append(card(t('nav.channels'), meta, form(t('nav.channels'), [emails, oncall, hook, secret], t('ch.save'), async () => {
		const list = emails.control.value.split(/[\s,;]+/).filter(Boolean);
		if (list.some((e) => !EMAIL_RE.test(e)) || (oncall.control.value && !EMAIL_RE.test(oncall.control.value))) {
			say(t('ch.badEmail'), 'error');
			emails.control.focus();
			return;
		}
		const s = secret.control.value;
		if (hook.control.value && !s && !cur.hasWebhookSecret) {
			say(t('ch.secret.hint'), 'error');
			secret.control.focus();
			return;
		}
		if (s && (s.length < 16 || s.length > 64)) {
			say(t('ch.secret.hint'), 'error');
			secret.control.focus();
			return;
		}
		const channels = { emails: list, oncallEmail: oncall.control.value, webhookUrl: hook.control.value };
		if (s) {
			/* bytes in proto3 JSON: base64 of the secret's UTF-8 */
			channels.webhookSecret = btoa(String.fromCharCode(...new TextEncoder().encode(s)));
		}
		const r = await act(() => call(A + 'SetChannels', { channels }), t('saved'));
		if (r) {
			cur.hasWebhookSecret = !!r.hasWebhookSecret;
			secret.clear(cur.hasWebhookSecret);
			meta.textContent = `${t('ch.updated')} ${when(r.updatedMs)}`;
		}
	})), card(t('ch.test'), test.el));
	return { stop: test.stop };
}
