/*
 * people.js - an org admin's page: the organisation's people, their roles (changed in place,
 * issue 16), disable, a new password, a new second factor (shown once as a QR code to scan),
 * and adding a person.
 */
import { call } from '../api.js';
import { t } from '../i18n.js';
import { h, s, act, say, card, empty, button, en, opts, field, form, table } from '../ui.js';
import qrcode from '../../vendor/qrcode.mjs';

const P = 'haven.people.v1.People/';

/* The otpauth:// URI as a QR code (SVG rects, no markup strings), with the URI's secret
 * readable for typing in by hand, and for a new person the login name to sign in with
 * (NAME@ORG). Shown once: it is not kept anywhere. */
export function qr(uri, login) {
	const q = qrcode(0, 'M');
	q.addData(uri);
	q.make();
	const n = q.getModuleCount(), m = 4;
	const svg = s('svg', { viewBox: `0 0 ${n + 2 * m} ${n + 2 * m}`, class: 'qr', role: 'img',
		'aria-label': t('people.qr') }, s('rect', { width: n + 2 * m, height: n + 2 * m, fill: '#fff' }));
	for (let r = 0; r < n; r++) {
		for (let c = 0; c < n; c++) {
			if (q.isDark(r, c)) {
				svg.append(s('rect', { x: c + m, y: r + m, width: 1, height: 1, fill: '#000' }));
			}
		}
	}
	const secret = new URL(uri).searchParams.get('secret') || '';
	return h('div', { class: 'enrol', role: 'group', 'aria-label': t('people.enrol') },
		h('h3', {}, t('people.enrol')), svg, h('p', {}, t('people.enrol.hint')),
		login ? h('p', {}, `${t('people.login')}: `, h('code', { class: 'login' }, login)) : null,
		h('p', {}, `${t('people.secret')}: `, h('code', { class: 'secret' }, secret.replace(/(.{4})/g, '$1 ').trim())),
		button(t('people.enrol.done'), (ev) => ev.target.closest('.enrol').remove()));
}

/* A new password for one person (ResetPerson): typed by the admin, given to the person by a
 * safe way, never shown again; the person's sessions end (the node changes its version). */
function passwordForm(p, done) {
	const pw = field(t('people.newPassword', { name: p.displayName }), 'newpassword', { type: 'password',
		required: true, autocomplete: 'new-password', hint: t('people.password.hint') });
	return h('section', { class: 'enrol', 'aria-label': t('people.resetPw') }, h('h3', {}, t('people.resetPw')),
		form(t('people.resetPw'), [pw], t('people.resetPw'), async () => {
			if (pw.control.value.length < 12) {
				say(t('people.password.hint'), 'error');
				pw.control.focus();
				return;
			}
			const ok = await act(() => call(P + 'ResetPerson', { personId: p.id, password: pw.control.value }),
				t('people.resetPw.ok'));
			pw.control.value = '';
			if (ok) {
				done();
			}
		}));
}

const ROLES = ['PERSON_ROLE_CASE_WORKER', 'PERSON_ROLE_VIEWER', 'PERSON_ROLE_ORG_ADMIN'];

/* A person's role, changed in place (SetPersonRole): a labelled select and a button, so that a
 * keyboard user picks the role first and nothing changes by merely moving through the options.
 * The node ends the person's sessions and refuses to take the last enabled admin's role (the
 * admin's own row too): its message shows on the status line, and the select goes back to the
 * role the person has. */
function roleChange(p, redraw) {
	const sel = h('select', { class: 'role-select', 'aria-label': t('people.role.of', { name: p.displayName }) },
		ROLES.map((r) => h('option', { value: r, selected: r === p.role }, en(r))));
	return h('div', { class: 'row role-change' }, sel, button(t('people.role.set'), async () => {
		const done = await act(async () => {
			await call(P + 'SetPersonRole', { personId: p.id, role: sel.value });
			await redraw();
			return true;
		}, t('people.role.ok'));
		if (!done) {
			sel.value = p.role;
		}
	}));
}

export async function render(main, ctx) {
	main.append(h('h1', {}, t('nav.people')));
	const enrol = h('div', { 'aria-live': 'polite' });
	const list = h('div', {});
	const redraw = async () => {
		const r = await call(P + 'ListPeople', { orgId: ctx.orgId });
		const ps = r.people || [];
		list.replaceChildren(ps.length ? table(t('nav.people'), [t('people.name'), t('people.login'), t('role'), t('state'), t('actions')],
			ps.map((p) => [p.displayName, p.login, en(p.role), p.enabled ? t('people.enabled') : t('people.disabled'),
				h('div', { class: 'row' }, roleChange(p, redraw),
					p.enabled && p.id !== ctx.personId ? button(t('people.disable'), () => act(() => call(P + 'DisablePerson', { personId: p.id }).then(redraw), t('people.disabled.ok')), 'danger') : null,
					!p.enabled ? button(t('people.enable'), () => act(() => call(P + 'ResetPerson', { personId: p.id, enable: true }).then(redraw), t('people.enabled.ok'))) : null,
					button(t('people.resetPw'), () => {
						enrol.replaceChildren(passwordForm(p, () => enrol.replaceChildren()));
						enrol.querySelector('input').focus();
					}),
					button(t('people.reset2fa'), () => act(async () => {
						const x = await call(P + 'ResetPerson', { personId: p.id, newSecondFactor: true });
						enrol.replaceChildren(qr(x.otpauthUri));
						await redraw();
					}, t('people.reset2fa.ok'))))])) : empty(t('people.none')));
	};
	const name = field(t('people.name'), 'display', { required: true, maxlength: 128 });
	const login = field(t('people.login'), 'login', { required: true, maxlength: 128, autocomplete: 'off',
		hint: t('people.login.hint', { org: ctx.orgId }) });
	const role = field(t('role'), 'role', { options: opts(ROLES) });
	const pw = field(t('people.password'), 'password', { type: 'password', required: true, autocomplete: 'new-password', hint: t('people.password.hint') });
	main.append(enrol, card(t('people.list'), list), card(t('people.add'), form(t('people.add'), [name, login, role, pw], t('people.add'), async (f) => {
		if (!name.control.value.trim() || !/^[a-zA-Z0-9._-]{1,64}(@[a-zA-Z0-9._-]{1,63})?$/.test(login.control.value) || pw.control.value.length < 12) {
			say(t('people.incomplete'), 'error');
			return;
		}
		const x = await act(() => call(P + 'CreatePerson', { orgId: ctx.orgId, login: login.control.value,
			displayName: name.control.value.trim(), role: role.control.value, password: pw.control.value }), t('people.added'));
		pw.control.value = '';
		if (x) {
			f.reset();
			enrol.replaceChildren(qr(x.otpauthUri, x.person && x.person.login));
			enrol.querySelector('h3').setAttribute('tabindex', '-1');
			enrol.querySelector('h3').focus();
			await redraw();
		}
	})));
	await act(redraw);
	return null;
}
