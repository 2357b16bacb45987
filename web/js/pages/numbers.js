/*
 * numbers.js - numbers only, for municipalities and coordinators: free places by region and
 * service type as a table and as a map of the ten regions coloured by free places (SVG),
 * unmet demand and time to placement per finished month as charts, and the signals of a
 * finished month per region, sector and outcome (Signals/Statistics). Every count under 5 is
 * shown as "<5"; the node's own suppression ("<5", "x") is kept as it comes.
 */
import { call } from '../api.js';
import { t } from '../i18n.js';
import { h, s, act, card, en, opts, field, small, table, duration, empty } from '../ui.js';

/* The police regions as tiles placed roughly where they lie (column, row). */
const TILES = {
	'Noord-Nederland': [3, 0], 'Noord-Holland': [1, 1], 'Oost-Nederland': [3, 2],
	Amsterdam: [2, 1], 'Midden-Nederland': [2, 2], 'Den Haag': [0, 2], Rotterdam: [1, 3],
	'Zeeland-West-Brabant': [0, 4], 'Oost-Brabant': [2, 4], Limburg: [3, 5],
};
/* Light to dark blue: dark text on the light end, white on the dark end (contrast >= 4.5). */
const SHADES = [['#f1f5fb', '#111'], ['#c8daf0', '#111'], ['#8fb4e0', '#111'], ['#2f6db5', '#fff'], ['#17427a', '#fff']];

/* The shade of a region by the band its count falls in (0, <5, 5-9, 10-19, 20 and more), so
 * that the colour tells no more than the "<5" written on it. */
function shade(free) {
	return SHADES[free <= 0 ? 0 : free < 5 ? 1 : free < 10 ? 2 : free < 20 ? 3 : 4];
}

function regionMap(byRegion, label) {
	/* large type: the map is read on a phone too, where it is a third of this size */
	const W = 176, H = 112, gap = 8;
	const svg = s('svg', { viewBox: `0 0 ${4 * (W + gap)} ${6 * (H + gap)}`, role: 'img',
		'aria-labelledby': 'map-title', class: 'map' }, s('title', { id: 'map-title' }, label));
	for (const [name, [cx, cy]] of Object.entries(TILES)) {
		const free = byRegion[name] || 0;
		const [fill, ink] = shade(free);
		const x = cx * (W + gap), y = cy * (H + gap);
		/* a long name on a line per part ("Zeeland-" "West-" "Brabant") */
		const lines = name.length > 9 ? name.split(/(?<=-)/) : [name];
		svg.append(s('g', {}, s('rect', { x, y, width: W, height: H, rx: 6, fill, stroke: '#17427a' }),
			s('text', { x: x + 8, y: y + 28, fill: ink, 'font-size': 25 },
				lines.map((l, i) => s('tspan', { x: x + 8, dy: i ? 28 : 0 }, l))),
			s('text', { x: x + W - 10, y: y + H - 10, fill: ink, 'font-size': 32, 'font-weight': 'bold',
				'text-anchor': 'end' }, small(free))));
	}
	return svg;
}

/* The shades with their bands, in words beside the colour. */
function legend() {
	const bands = ['0', '<5', '5–9', '10–19', '20+'];
	return h('ul', { class: 'swatches', 'aria-label': t('num.legend.label') },
		bands.map((b, i) => h('li', {}, h('span', { class: 'swatch shade-' + i, 'aria-hidden': 'true' }), b)));
}

/* A bar chart of values per period: numbers as bars, "<5" as a short light bar, withheld
 * as a gap with its word. Nothing to show: a sentence instead of an empty chart. */
function barChart(title, points, fmt) {
	if (!points.some((p) => (typeof p.v === 'number' && p.v > 0) || p.v === '<5')) {
		return h('p', { class: 'empty' }, t('num.noData'));
	}
	const W = 560, H = 220, pad = 12, bw = (W - pad) / Math.max(1, points.length);
	const nums = points.map((p) => (typeof p.v === 'number' ? p.v : 0));
	const max = Math.max(5, ...nums);
	const svg = s('svg', { viewBox: `0 0 ${W} ${H + 44}`, role: 'img', class: 'chart' }, s('title', {}, title));
	svg.append(s('line', { x1: pad, y1: H, x2: W, y2: H, stroke: '#333' }));
	points.forEach((p, i) => {
		const x = pad + i * bw + 6;
		const v = typeof p.v === 'number' ? p.v : p.v === '<5' ? 2.5 : 0;
		const bh = (v / max) * (H - 34);
		if (bh > 0) {
			svg.append(s('rect', { x, y: H - bh, width: bw - 12, height: bh,
				fill: p.v === '<5' ? '#8fb4e0' : '#2f6db5' }));
		}
		svg.append(s('text', { x: x + (bw - 12) / 2, y: H - bh - 8, 'text-anchor': 'middle', 'font-size': 17,
			fill: '#111' }, fmt(p.v)),
		s('text', { x: x + (bw - 12) / 2, y: H + 24, 'text-anchor': 'middle', 'font-size': 16, fill: '#111' },
			p.label.slice(2)));
	});
	return svg;
}

function lastMonths(n) {
	const out = [];
	const d = new Date();
	for (let i = n; i >= 1; i--) {
		const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i, 15));
		out.push(`${m.getUTCFullYear()}-${String(m.getUTCMonth() + 1).padStart(2, '0')}`);
	}
	return out;
}

function count(v) {
	return /^\d+$/.test(v || '0') ? Number(v || 0) : v;
}

async function trend(box, regions) {
	const months = lastMonths(6);
	const answers = await Promise.all(months.map((period) => call('haven.referral.v1.Referrals/Statistics',
		{ period, regions }).catch(() => null)));
	const unmet = [], median = [];
	answers.forEach((a, i) => {
		const label = months[i];
		if (!a) {
			unmet.push({ label, v: 'x' });
			median.push({ label, v: 'x' });
			return;
		}
		let sum = 0, withheld = false;
		for (const tot of a.totals || []) {
			const c = count(tot.unmet);
			if (typeof c === 'number') {
				sum += c;
			} else {
				withheld = true;
			}
		}
		unmet.push({ label, v: withheld ? 'x' : sum < 5 && sum > 0 ? '<5' : sum });
		const ms = (a.cells || []).map((c) => Number(c.medianMsToPlacement || 0)).filter(Boolean);
		median.push({ label, v: ms.length ? ms.sort((x, y) => x - y)[Math.floor(ms.length / 2)] / 3600000 : 0 });
	});
	const fmtCount = (v) => (typeof v === 'number' ? String(v) : v === 'x' ? t('num.withheld') : v);
	const fmtTime = (v) => (typeof v === 'number' ? (v ? duration(v * 3600000) : '—') : t('num.withheld'));
	box.replaceChildren(card(t('num.unmet'), barChart(t('num.unmet'), unmet, fmtCount),
		table(t('num.unmet'), [t('period'), t('num.unmet')], unmet.map((p) => [p.label, fmtCount(p.v)]))),
	card(t('num.time'), barChart(t('num.time'), median, fmtTime),
		table(t('num.time'), [t('period'), t('num.time')], median.map((p) => [p.label, fmtTime(p.v)]))));
}

/* A signal statistics cell's sector and outcome in words. proto3 JSON leaves out a zero enum:
 * no sector given, and no outcome (still open at the month's end). */
function sector(v) {
	return t('sig.sector.' + (v || 'SECTOR_UNSPECIFIED'));
}
function outcome(v) {
	return t('sig.outcome.' + (v || 'OUTCOME_UNSPECIFIED'));
}

/* The signals that came in in one finished month, per region, sector and outcome as the node
 * counts them, and per region. Asked for when the page opens and when the month changes,
 * never on the page's refresh: a finished month's answer never changes, and the node writes
 * each query into its audit log. The box is emptied first, so that a refused month never
 * shows under another month's figures; an answer for a month no longer chosen is dropped. */
async function signalStats(box, period, chosen) {
	box.replaceChildren();
	const r = await call('haven.signals.v1.Signals/Statistics', { period });
	if (chosen() !== period) {
		return;
	}
	const cells = r.cells || [];
	if (!cells.length) {
		box.replaceChildren(empty(t('num.sig.none', { period })));
		return;
	}
	box.replaceChildren(
		table(t('num.sig.table', { period }), [t('region'), t('num.sig.sector'), t('num.sig.outcome'), t('num.sig.count')],
			cells.map((c) => [c.region, sector(c.sector), outcome(c.outcome), small(c.count)])),
		h('h3', {}, t('num.sig.byRegion')),
		table(t('num.sig.totals', { period }), [t('region'), t('num.sig.count')],
			(r.regionTotals || []).map((c) => [c.region, small(c.count)])));
}

/* The signals section: a finished month to choose (the last twelve, newest first) and its
 * tables. */
async function signalSection(main) {
	const months = lastMonths(12).reverse();
	const month = field(t('period'), 'sigperiod', { options: months.map((m) => [m, m]), value: months[0] });
	const box = h('div', { class: 'sig-tables' });
	const chosen = () => month.control.value;
	month.control.addEventListener('change', () => act(() => signalStats(box, chosen(), chosen)));
	main.append(h('div', { class: 'signal-stats' }, card(t('num.signals'), h('p', { class: 'meta' }, t('num.sig.intro')),
		h('div', { class: 'filters row' }, month), box)));
	await act(() => signalStats(box, months[0], chosen));
}

export async function render(main) {
	main.append(h('h1', {}, t('nav.numbers')));
	const pop = field(t('need.population'), 'population', { options: [['', t('num.allPops')], ...opts(['WOMEN', 'MEN', 'MINORS', 'FAMILIES', 'NON_BINARY'])] });
	const type = field(t('need.type'), 'type', { options: opts(['SHELTER', 'LEGAL_AID', 'MEDICAL', 'MENTAL_HEALTH', 'INTERPRETATION', 'CASE_MANAGEMENT', 'PEER_SUPPORT']) });
	const avail = h('div', {});
	const charts = h('div', { class: 'grid two' });
	main.append(h('div', { class: 'filters row' }, type, pop), avail, h('h2', {}, t('num.trend')), charts);
	let cells = [];
	const draw = () => {
		const p = pop.control.value, ty = type.control.value;
		const chosen = cells.filter((c) => (!p || c.population === p));
		/* one service counts in each population it takes: without a population chosen, the
		 * region's figure is the largest population cell, never a sum that counts a bed twice */
		const by = {}, rows = {};
		for (const c of chosen) {
			const key = c.region + '|' + c.type;
			rows[key] = rows[key] || { region: c.region, type: c.type, free: 0, max: 0, stale: 0, services: 0 };
			const r = rows[key];
			r.free = Math.max(r.free, c.free || 0);
			r.max = Math.max(r.max, c.maximum || 0);
			r.stale = Math.max(r.stale, c.staleServices || 0);
			r.services = Math.max(r.services, c.services || 0);
		}
		for (const r of Object.values(rows)) {
			if (r.type === ty) {
				by[r.region] = r.free;
			}
		}
		const sorted = Object.values(rows).sort((a, b) => a.region.localeCompare(b.region) || a.type.localeCompare(b.type));
		avail.replaceChildren(h('div', { class: 'grid map-table' },
			card(t('num.map', { type: en(ty) }), regionMap(by, t('num.map', { type: en(ty) })),
				legend(), h('p', { class: 'meta' }, t('num.legend'))),
			card(t('num.table'), table(t('num.table'), [t('region'), t('need.type'), t('num.services'), t('num.free'), t('num.max'), t('num.stale')],
				sorted.map((r) => [r.region, en(r.type), small(r.services), small(r.free), small(r.max), small(r.stale)]),
				{ stack: false }))));
	};
	pop.control.addEventListener('change', draw);
	type.control.addEventListener('change', draw);
	const load = async () => {
		const r = await call('haven.capacity.v1.Capacity/Summary', {});
		cells = r.cells || [];
		draw();
	};
	await act(load);
	await act(() => trend(charts, []));
	await signalSection(main);
	return { refresh: () => (main.contains(document.activeElement) && document.activeElement.tagName === 'SELECT' ? null : load()) };
}
