/*
 * ui.js - small DOM helpers: elements built with textContent only (never innerHTML, so no
 * text from the node can become markup), form fields with their labels, the status line read
 * out by screen readers, and the number formats every page shares ("<5" for small counts).
 */
import { t, lang } from './i18n.js';

/* h('button', {class: 'x', onclick: fn}, 'text', child...) */
export function h(tag, attrs, ...children) {
	const el = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === undefined || v === null || v === false) {
			continue;
		}
		if (k.startsWith('on') && typeof v === 'function') {
			el.addEventListener(k.slice(2), v);
		} else if (k === 'class') {
			el.className = v;
		} else if (k === 'dataset') {
			Object.assign(el.dataset, v);
		} else {
			el.setAttribute(k, v === true ? '' : String(v));
		}
	}
	append(el, children);
	return el;
}

function append(el, children) {
	for (const c of children.flat(Infinity)) {
		if (c === undefined || c === null || c === false) {
			continue;
		}
		el.append(c instanceof Node ? c : document.createTextNode(String(c)));
	}
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
	const el = document.createElementNS(SVG, tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		el.setAttribute(k, String(v));
	}
	append(el, children);
	return el;
}

let fieldSeq = 0;
/* A labelled field: input, select or textarea. opts: {type, options: [[value, label]], value,
 * required, hint, multiple, autocomplete, inputmode}. Returns the wrapper; .control is the input. */
export function field(label, name, opts = {}) {
	const id = `f-${name}-${++fieldSeq}`;
	let control;
	const common = { id, name, required: opts.required, autocomplete: opts.autocomplete || 'off' };
	if (opts.options) {
		control = h('select', { ...common, multiple: opts.multiple },
			opts.options.map(([v, l]) => h('option', { value: v, selected: opts.value === v }, l)));
	} else if (opts.type === 'textarea') {
		control = h('textarea', { ...common, rows: 3, maxlength: opts.maxlength });
		control.value = opts.value || '';
	} else {
		control = h('input', { ...common, type: opts.type || 'text', inputmode: opts.inputmode,
			pattern: opts.pattern, maxlength: opts.maxlength, min: opts.min, max: opts.max });
		if (opts.value !== undefined) {
			control.value = opts.value;
		}
	}
	const hintId = opts.hint ? id + '-hint' : undefined;
	if (hintId) {
		control.setAttribute('aria-describedby', hintId);
	}
	const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), control,
		opts.hint ? h('p', { class: 'hint', id: hintId }, opts.hint) : null);
	wrap.control = control;
	return wrap;
}

/* A group of checkboxes in a fieldset. Returns the fieldset; .values() the checked ones. */
export function checks(legend, name, options, checked = []) {
	const boxes = options.map(([v, l]) => {
		const id = `c-${name}-${++fieldSeq}`;
		const box = h('input', { type: 'checkbox', id, name, value: v, checked: checked.includes(v) });
		return h('div', { class: 'check' }, box, h('label', { for: id }, l));
	});
	const fs = h('fieldset', { class: 'checks' }, h('legend', {}, legend), boxes);
	fs.values = () => [...fs.querySelectorAll('input:checked')].map((b) => b.value);
	return fs;
}

/* The page's status line (role=status / alert): what just happened or went wrong. */
export function say(text, kind = 'ok') {
	const el = document.getElementById('status');
	el.textContent = '';
	el.className = 'status ' + kind;
	el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
	el.textContent = text;
}

/* The words for an API error: the node's code in the user's language, never a value. */
export function errorText(e) {
	const key = 'err.' + (e && e.code ? e.code : 'unknown');
	const known = t(key);
	return known !== key ? known : t('err.unknown');
}

export async function act(fn, okText) {
	try {
		const r = await fn();
		if (okText) {
			say(okText);
		}
		return r;
	} catch (e) {
		say(errorText(e) + (e && e.message && e.code !== 'unavailable' ? ` (${e.message})` : ''),
			'error');
		return undefined;
	}
}

/* A count for numbers-only pages: 1..4 as "<5", as the node's statistics do (0 stays 0: a full
 * shelter must read as full); strings from the node ("<5", "x") as they are. */
export function small(n) {
	if (typeof n === 'string' && !/^\d+$/.test(n)) {
		return n === 'x' ? t('num.withheld') : n;
	}
	const v = Number(n || 0);
	return v > 0 && v < 5 ? '<5' : String(v);
}

export function when(ms) {
	const v = Number(ms || 0);
	if (!v) {
		return '—';
	}
	return new Date(v).toLocaleString(lang() === 'nl' ? 'nl-NL' : 'en-GB',
		{ dateStyle: 'short', timeStyle: 'short', timeZone: 'Europe/Amsterdam' });
}

/* "2 h 05 min" until ms, or the word for passed. */
export function countdown(ms) {
	const left = Math.floor((Number(ms) - Date.now()) / 1000);
	if (left <= 0) {
		return t('offer.expired');
	}
	const hh = Math.floor(left / 3600), mm = Math.floor((left % 3600) / 60), ss = left % 60;
	const pad = (x) => String(x).padStart(2, '0');
	return hh > 0 ? `${hh}:${pad(mm)}:${pad(ss)}` : `${mm}:${pad(ss)}`;
}

/* A span of seconds for people: "12 min" under an hour, else as duration(). */
export function span(seconds) {
	const v = Math.max(0, Number(seconds || 0));
	if (v < 3600) {
		return t('unit.min', { n: Math.max(1, Math.round(v / 60)) });
	}
	return v < 48 * 3600 ? t('unit.hours', { n: Math.round(v / 3600) }) : t('unit.days', { n: Math.round(v / 86400) });
}

export function duration(ms) {
	const h_ = Number(ms || 0) / 3600000;
	return h_ >= 48 ? t('unit.days', { n: (h_ / 24).toFixed(1) }) : t('unit.hours', { n: h_.toFixed(1) });
}

/* An enum value's words: t('enum.SHELTER') or the value itself. */
export function en(v) {
	const k = 'enum.' + v;
	const w = t(k);
	return w !== k ? w : String(v || '—');
}

export function opts(values) {
	return values.map((v) => [v, en(v)]);
}

export function card(title, ...children) {
	return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

/* A table with a header row and a row header per row. On a phone (app.css) a table of more
 * than two columns shows each row as a card: the row header on top, each cell under its
 * column's name (data-label), so that nothing hides off the screen's edge. A long table of
 * figures (stack: false) stays a table there, compact, its row headers kept in view while it
 * scrolls sideways: as cards it would be pages long. The explicit roles keep it a table for
 * screen readers when CSS changes how its parts display. */
export function table(caption, heads, rows, { stack = heads.length > 2 } = {}) {
	const label = (x) => (typeof x === 'string' ? x : x && x.textContent) || '';
	/* focusable, so that a keyboard can scroll a wide table on a desk */
	return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
		h('table', { class: stack ? 'stack' : 'figures', role: 'table' },
			h('caption', {}, caption),
			h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' },
				heads.map((x) => h('th', { scope: 'col', role: 'columnheader' }, x)))),
			h('tbody', { role: 'rowgroup' }, rows.map((r) => h('tr', { role: 'row' }, r.map((c, i) => i === 0
				? h('th', { scope: 'row', role: 'rowheader' }, c)
				: h('td', { role: 'cell', 'data-label': label(heads[i]) }, c)))))));
}

export function empty(text) {
	return h('p', { class: 'empty' }, text);
}

export function button(label, onclick, cls = '') {
	return h('button', { type: 'button', class: cls, onclick }, label);
}

/* A form whose submit runs fn (the default submit, a page load with the data in the URL, never
 * happens). */
export function form(label, children, submitLabel, fn) {
	const f = h('form', { 'aria-label': label, novalidate: true }, children,
		h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, submitLabel)));
	f.addEventListener('submit', async (ev) => {
		ev.preventDefault();
		const btn = f.querySelector('button[type=submit]');
		btn.disabled = true;
		try {
			await fn(f);
		} finally {
			btn.disabled = false;
		}
	});
	return f;
}
