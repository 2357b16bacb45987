/*
 * channels.js - an org admin's alert channels (haven.alerts.v1.Alerts): the addresses that get
 * e-mail alerts, the on-call address for escalations, and a webhook with its signing secret
 * (write-only: the node never shows it again).
 */
import { call } from '../api.js';
import { t } from '../i18n.js';
import { h, act, say, card, field, form, when } from '../ui.js';

const A = 'haven.alerts.v1.Alerts/';
const EMAIL_RE = /^[^\s<>,@]+@[^\s<>,@]+$/;

export async function render(main) {
	main.append(h('h1', {}, t('nav.channels')), h('p', {}, t('ch.intro')));
	const cur = await act(() => call(A + 'GetChannels', {}));
	if (!cur) {
		return null;
	}
	const emails = field(t('ch.emails'), 'emails', { value: (cur.emails || []).join(', '), hint: t('ch.emails.hint') });
	const oncall = field(t('ch.oncall'), 'oncall', { type: 'email', value: cur.oncallEmail || '' });
	const hook = field(t('ch.webhook'), 'webhook', { type: 'url', value: cur.webhookUrl || '', hint: t('ch.webhook.hint') });
	const secret = field(t('ch.secret'), 'secret', { type: 'password', autocomplete: 'new-password',
		hint: cur.hasWebhookSecret ? t('ch.secret.kept') : t('ch.secret.hint') });
	const meta = h('p', { class: 'meta' }, cur.updatedMs ? `${t('ch.updated')} ${when(cur.updatedMs)}` : '');
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
		const channels = { emails: list, oncallEmail: oncall.control.value, webhookUrl: hook.control.value };
		if (s) {
			/* bytes in proto3 JSON: base64 of the secret's UTF-8 */
			channels.webhookSecret = btoa(String.fromCharCode(...new TextEncoder().encode(s)));
		}
		const r = await act(() => call(A + 'SetChannels', { channels }), t('saved'));
		secret.control.value = '';
		if (r) {
			meta.textContent = `${t('ch.updated')} ${when(r.updatedMs)}`;
		}
	})));
	return null;
}
