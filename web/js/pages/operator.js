/*
 * operator.js - for people of the network's admin organisation: organisations and services
 * (register, disable, retire, approve), and the node's status.
 */
import { call, listAll } from '../api.js';
import { t } from '../i18n.js';
import { h, act, say, card, empty, button, en, opts, field, form, table } from '../ui.js';
import { regions } from './referrer.js';

const C = 'haven.capacity.v1.Capacity/';
const ROLES = ['REFERRER', 'PROVIDER', 'PEER_SUPPORT_GROUP', 'MUNICIPALITY', 'COORDINATOR', 'NATIONAL_COORDINATOR', 'ADMIN'];
const ID_RE = /^[a-z0-9._-]{1,63}$/;

export async function orgs(main) {
	main.append(h('h1', {}, t('nav.orgs')));
	const regs = (await act(regions)) || [];
	const orgList = h('div', {});
	const svcList = h('div', {});
	const redraw = async () => {
		const [os, ss] = await Promise.all([
			listAll(C + 'ListOrganisations', { pageSize: 500 }, 'organisations'),
			listAll(C + 'FindServices', { pageSize: 500 }, 'services')]);
		orgList.replaceChildren(os.length ? table(t('nav.orgs'), [t('org'), t('people.name'), t('role'), t('region'), t('state'), t('actions')],
			os.map((o) => [o.id, o.name, en(o.role), o.region, o.disabled ? t('people.disabled') : t('people.enabled'),
				button(o.disabled ? t('people.enable') : t('people.disable'), () => act(() => call(C + 'DisableOrganisation',
					{ id: o.id, disabled: !o.disabled }).then(redraw), t('saved')), o.disabled ? '' : 'danger')])) : empty('—'));
		svcList.replaceChildren(ss.length ? table(t('op.services'), [t('op.service'), t('org'), t('need.type'), t('region'), t('num.free'), t('actions')],
			ss.map((v) => [v.service.id, v.service.orgId, en(v.service.type), v.service.serviceArea, String(v.free || 0),
				h('div', { class: 'row' },
					v.service.pending ? button(t('op.approve'), () => act(() => call(C + 'ApproveService', { id: v.service.id, basedOnVersion: v.service.version }).then(redraw), t('saved'))) : null,
					button(t('op.retire'), () => act(() => call(C + 'RetireService', { id: v.service.id, basedOnVersion: v.service.version }).then(redraw), t('saved')), 'danger'))])) : empty('—'));
	};
	const id = field(t('op.orgId'), 'id', { required: true, maxlength: 63, hint: t('op.id.hint') });
	const name = field(t('people.name'), 'name', { required: true, maxlength: 200 });
	const role = field(t('role'), 'role', { options: opts(ROLES) });
	const region = field(t('region'), 'region', { options: regs.map((r) => [r, r]) });
	const contact = field(t('org.contact'), 'contact', { maxlength: 200 });
	const orgForm = form(t('op.addOrg'), [id, name, role, region, contact], t('op.addOrg'), async (f) => {
		if (!ID_RE.test(id.control.value) || !name.control.value.trim()) {
			say(t('op.incomplete'), 'error');
			return;
		}
		if (await act(() => call(C + 'RegisterOrganisation', { organisation: { id: id.control.value,
			name: name.control.value.trim(), role: role.control.value, region: region.control.value,
			contact: contact.control.value.trim() } }), t('saved'))) {
			f.reset();
			await redraw();
		}
	});
	const sorg = field(t('org'), 'sorg', { required: true, maxlength: 63 });
	const stype = field(t('need.type'), 'stype', { options: opts(['SHELTER', 'LEGAL_AID', 'MEDICAL', 'MENTAL_HEALTH', 'INTERPRETATION', 'CASE_MANAGEMENT', 'PEER_SUPPORT']) });
	const sregion = field(t('region'), 'sregion', { options: regs.map((r) => [r, r]) });
	const spop = field(t('need.population'), 'spop', { options: opts(['WOMEN', 'MEN', 'MINORS', 'FAMILIES', 'NON_BINARY']) });
	const smax = field(t('num.max'), 'smax', { type: 'number', min: 1, max: 100000, value: '1' });
	const sdoor = field(t('op.frontDoor'), 'sdoor', { required: true, maxlength: 200 });
	const svcForm = form(t('op.addService'), [sorg, stype, sregion, spop, smax, sdoor], t('op.addService'), async (f) => {
		if (!ID_RE.test(sorg.control.value) || !sdoor.control.value.trim() || !(Number(smax.control.value) >= 1)) {
			say(t('op.incomplete'), 'error');
			return;
		}
		if (await act(() => call(C + 'RegisterService', { service: { orgId: sorg.control.value,
			type: stype.control.value, serviceArea: sregion.control.value, populations: [spop.control.value],
			maximum: Number(smax.control.value), frontDoorContact: sdoor.control.value.trim() } }), t('saved'))) {
			f.reset();
			await redraw();
		}
	});
	main.append(card(t('nav.orgs'), orgList), card(t('op.addOrg'), orgForm), card(t('op.services'), svcList), card(t('op.addService'), svcForm));
	await act(redraw);
	return null;
}

export async function status(main) {
	main.append(h('h1', {}, t('nav.status')));
	const [health, st, audit] = await Promise.all([
		call('haven.health.v1.Health/Check', {}).catch(() => null),
		call('haven.admin.v1.Admin/Status', {}).catch(() => null),
		call('haven.audit.v1.Audit/Verify', {}).catch(() => null)]);
	const mb = (b) => `${(Number(b || 0) / 1048576).toFixed(1)} MiB`;
	main.append(card(t('nav.status'), h('dl', {},
		h('dt', {}, t('status.health')), h('dd', {}, health ? health.status : t('err.unavailable')),
		st ? [h('dt', {}, t('status.schema')), h('dd', {}, String(st.schemaVersion || 0)),
			h('dt', {}, t('status.store')), h('dd', {}, `${mb(st.usedBytes)} / ${mb(st.mapSize)}`),
			h('dt', {}, t('status.calls')), h('dd', {}, `${st.calls || 0} (${t('status.rejected')}: ${st.rejected || 0})`)] : null,
		h('dt', {}, t('status.audit')), h('dd', {}, audit ? (audit.intact ? t('status.intact', { n: audit.entries || 0 }) : t('status.broken')) : '—'))));
	return null;
}
