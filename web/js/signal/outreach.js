/*
 * outreach.js - the signals page of the logged-in app (route #/signals, referrers): the open
 * signals of the organisation's region (Signals/ListSignals; every read is audited by the
 * node), newest first, refreshed with the app's tick; acknowledge, close with a coded outcome,
 * or turn a signal into a referral in one step: a pseudonymous person (the alias the worker
 * types, the language of the signal), her consent as she gave it to the worker, the referral
 * (a need from the kind of help asked), and Signals/ConvertSignal linking the two.
 *
 * Its texts are its own (nl, en, by the app's language), so that the app's catalogues stay
 * the app's; the sender's contact is shown as text only, never kept beyond the page.
 */
import { call } from '../api.js';
import { lang } from '../i18n.js';
import { h, act, say, when, empty, button } from '../ui.js';

const S = 'haven.signals.v1.Signals/';
const TYPE_OF_HELP = { HELP_SAFETY: 'SHELTER', HELP_ADVICE: 'LEGAL_AID', HELP_WORK_PAY: 'LEGAL_AID',
	HELP_MEDICAL: 'MEDICAL', HELP_OTHER: 'CASE_MANAGEMENT' };
const TYPES = ['SHELTER', 'LEGAL_AID', 'MEDICAL', 'MENTAL_HEALTH', 'INTERPRETATION', 'CASE_MANAGEMENT',
	'PEER_SUPPORT'];
const POPS = ['WOMEN', 'MEN', 'MINORS', 'FAMILIES', 'NON_BINARY'];
const OUTCOMES = ['NO_CONTACT', 'NO_EXPLOITATION', 'REFERRED_ELSEWHERE', 'DECLINED_HELP', 'DUPLICATE', 'ABUSE'];

const TEXT = {
	nl: {
		title: 'Signalen', none: 'Geen open signalen in je regio.', danger: 'Nu in gevaar',
		received: 'Binnen', help: 'Hulp', sector: 'Werk', signs: 'Signalen', language: 'Taal',
		contact: 'Contact', noContact: 'geen contact opgegeven', state: 'Stand',
		ack: 'Oppakken', acked: 'Signaal opgepakt.', close: 'Afsluiten', closed: 'Signaal afgesloten.',
		outcome: 'Uitkomst', convert: 'Doorverwijzen', converted: 'Doorverwezen: het signaal is gekoppeld aan de verwijzing.',
		alias: 'Naam of alias van de persoon', consent: 'De persoon heeft mondeling toestemming gegeven om door te verwijzen en gegevens te delen met de hulpverlener die accepteert',
		type: 'Soort hulp', population: 'Doelgroep', urgency: 'Urgentie', make: 'Verwijzing maken',
		needAlias: 'Vul een naam of alias in.', needConsent: 'Zonder toestemming geen verwijzing.',
		HELP_SAFETY: 'veilige plek', HELP_ADVICE: 'advies', HELP_WORK_PAY: 'loon, papieren, contract',
		HELP_MEDICAL: 'medisch', HELP_OTHER: 'anders', NEW: 'nieuw', ACKNOWLEDGED: 'opgepakt',
		FARM: 'land- en tuinbouw', DISTRIBUTION_CENTRE: 'distributiecentrum', CONSTRUCTION: 'bouw',
		CLEANING: 'schoonmaak', HOSPITALITY: 'horeca', SHIPPING: 'scheepvaart, transport',
		DOMESTIC: 'huishoudelijk werk', SEX_WORK: 'sekswerk', SECTOR_OTHER: 'ander werk',
		PASSPORT_TAKEN: 'paspoort afgepakt', DEBT: 'schuld', NO_PAY: 'geen loon', LOCKED_IN: 'mag niet weg',
		THREATS: 'bedreiging', VIOLENCE: 'geweld', HOUSING_FROM_EMPLOYER: 'huisvesting via de baas',
		LONG_HOURS: 'lange werkdagen', NO_CONTRACT: 'geen contract', SIGN_OTHER: 'anders',
		NO_CONTACT: 'geen contact gekregen', NO_EXPLOITATION: 'geen uitbuiting',
		REFERRED_ELSEWHERE: 'elders gemeld', DECLINED_HELP: 'wilde geen hulp', DUPLICATE: 'dubbel',
		ABUSE: 'misbruik', SHELTER: 'opvang', LEGAL_AID: 'juridische hulp', MEDICAL: 'medisch',
		MENTAL_HEALTH: 'geestelijke gezondheid', INTERPRETATION: 'tolk', CASE_MANAGEMENT: 'casemanagement',
		PEER_SUPPORT: 'ervaringsdeskundigen', WOMEN: 'vrouwen', MEN: 'mannen', MINORS: 'minderjarigen',
		FAMILIES: 'gezinnen', NON_BINARY: 'non-binair', IMMEDIATE: 'vannacht', URGENT: 'binnen 48 uur',
		PLANNED: 'gepland',
	},
	en: {
		title: 'Signals', none: 'No open signals in your region.', danger: 'In danger now',
		received: 'Received', help: 'Help', sector: 'Work', signs: 'Signs', language: 'Language',
		contact: 'Contact', noContact: 'no contact given', state: 'State',
		ack: 'Take up', acked: 'Signal taken up.', close: 'Close', closed: 'Signal closed.',
		outcome: 'Outcome', convert: 'Refer', converted: 'Referred: the signal is linked to the referral.',
		alias: "The person's name or alias", consent: 'The person gave verbal consent to be referred and to share data with the provider who accepts',
		type: 'Kind of help', population: 'Population', urgency: 'Urgency', make: 'Make the referral',
		needAlias: 'Fill in a name or alias.', needConsent: 'No referral without consent.',
		HELP_SAFETY: 'safe place', HELP_ADVICE: 'advice', HELP_WORK_PAY: 'pay, papers, contract',
		HELP_MEDICAL: 'medical', HELP_OTHER: 'other', NEW: 'new', ACKNOWLEDGED: 'taken up',
		PEER_SUPPORT: 'peer support', IMMEDIATE: 'tonight', URGENT: 'within 48 hours', PLANNED: 'planned',
	},
};

function w(key) {
	const T = TEXT[lang()] || TEXT.en;
	return T[key] ?? TEXT.en[key] ?? String(key).toLowerCase().replaceAll('_', ' ');
}

let seq = 0;
function select(label, values, value) {
	const id = `sig-f-${++seq}`;
	const s = h('select', { id }, values.map((v) => h('option', { value: v, selected: v === value }, w(v))));
	return [h('label', { for: id }, label), s];
}

/* The one-step referral of a signal. */
function convertForm(sig, redraw) {
	const id = `sig-alias-${++seq}`, cid = `sig-consent-${seq}`;
	const alias = h('input', { id, name: 'alias', maxlength: 200, autocomplete: 'off' });
	const consent = h('input', { id: cid, type: 'checkbox', name: 'consent' });
	const [tl, type] = select(w('type'), TYPES, TYPE_OF_HELP[sig.help] || 'CASE_MANAGEMENT');
	const [pl, pop] = select(w('population'), POPS, 'WOMEN');
	const [ul, urgency] = select(w('urgency'), ['IMMEDIATE', 'URGENT', 'PLANNED'], sig.dangerNow ? 'IMMEDIATE' : 'URGENT');
	const idem = crypto.randomUUID(); /* one referral per form, however often it is sent */
	const f = h('form', { class: 'convert', novalidate: true, 'aria-label': w('convert') },
		h('label', { for: id }, w('alias')), alias,
		h('div', { class: 'check' }, consent, h('label', { for: cid }, w('consent'))),
		tl, type, pl, pop, ul, urgency,
		h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, w('make'))));
	f.addEventListener('submit', async (ev) => {
		ev.preventDefault();
		if (!alias.value.trim()) {
			say(w('needAlias'), 'error');
			alias.focus();
			return;
		}
		if (!consent.checked) {
			say(w('needConsent'), 'error');
			consent.focus();
			return;
		}
		const langs = sig.language ? [sig.language] : [];
		const ok = await act(async () => {
			const s = await call('haven.consent.v1.Consent/CreateSubject',
				{ personal: { name: alias.value.trim(), languages: langs } });
			await call('haven.consent.v1.Consent/Grant', { subject: s.id,
				purposes: ['PURPOSE_REFERRAL', 'PURPOSE_SHARE_WITH_PROVIDER', 'PURPOSE_CONTACT'],
				categories: ['CATEGORY_IDENTITY', 'CATEGORY_CONTACT'], acceptingProvider: true,
				givenBy: 'GIVEN_BY_SUBJECT', method: 'METHOD_VERBAL', language: sig.language || 'nl',
				expiresMs: String(Date.now() + 365 * 86400000) });
			const r = await call('haven.referral.v1.Referrals/CreateReferral', { subject: s.id,
				urgency: urgency.value, exploitation: 'LABOUR',
				needs: [{ type: type.value, population: pop.value, languages: langs }] }, idem);
			await call(S + 'ConvertSignal', { id: sig.id, referralId: r.id });
			return r;
		}, w('converted'));
		if (ok) {
			location.hash = '#/referral/' + ok.id;
		} else {
			redraw();
		}
	});
	return f;
}

function signalCard(sig, redraw) {
	const dl = h('dl', { class: 'facts' },
		h('dt', {}, w('received')), h('dd', {}, when(sig.createdMs)),
		h('dt', {}, w('help')), h('dd', {}, w(sig.help)),
		sig.sector ? [h('dt', {}, w('sector')), h('dd', {}, w(sig.sector))] : null,
		(sig.signs || []).length ? [h('dt', {}, w('signs')), h('dd', {}, sig.signs.map(w).join(', '))] : null,
		h('dt', {}, w('language')), h('dd', {}, sig.language || '—'),
		h('dt', {}, w('contact')), h('dd', { class: 'contact' }, sig.contact || w('noContact')),
		h('dt', {}, w('state')), h('dd', {}, w(sig.state)));
	const [ol, outcome] = select(w('outcome'), OUTCOMES, 'NO_CONTACT');
	const box = h('section', { class: 'card signal', 'data-id': sig.id },
		h('h2', {}, sig.dangerNow ? h('span', { class: 'warn' }, w('danger')) : null, ' ', sig.region),
		dl,
		h('div', { class: 'actions row' },
			sig.state === 'NEW' ? button(w('ack'), () => act(() => call(S + 'AcknowledgeSignal', { id: sig.id }), w('acked')).then(redraw)) : null,
			ol, outcome,
			button(w('close'), () => act(() => call(S + 'CloseSignal', { id: sig.id, outcome: outcome.value }), w('closed')).then(redraw))),
		h('details', {}, h('summary', {}, w('convert')), convertForm(sig, redraw)));
	return box;
}

export async function render(main) {
	main.append(h('h1', {}, w('title')));
	const list = h('div', { class: 'signals', 'aria-live': 'polite' });
	main.append(list);
	let last = '';
	const redraw = async (force = true) => {
		const r = await act(() => call(S + 'ListSignals', {}));
		if (!r) {
			return;
		}
		const sigs = r.signals || [];
		const key = sigs.map((s) => s.id + s.state).join();
		/* redrawn only when something changed, so an open form is not wiped by the tick */
		if (!force && key === last) {
			return;
		}
		last = key;
		list.replaceChildren(...(sigs.length ? sigs.map((s) => signalCard(s, redraw)) : [empty(w('none'))]));
	};
	await redraw();
	return { refresh: () => redraw(false) };
}
