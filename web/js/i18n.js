/*
 * i18n.js - the two catalogues (lang/nl.js, lang/en.js; Dutch by default) and t(key, params).
 * The choice is kept in memory and in sessionStorage (a language code only); the document's
 * lang attribute follows it, so screen readers pronounce the page right.
 */
import nl from './lang/nl.js';
import en from './lang/en.js';

const catalogues = { nl, en };
let current = 'nl';
try {
	const saved = sessionStorage.getItem('haven.lang');
	if (saved in catalogues) {
		current = saved;
	}
} catch {
	/* storage off: Dutch */
}

export function lang() {
	return current;
}

export function setLang(code) {
	if (!(code in catalogues)) {
		return;
	}
	current = code;
	document.documentElement.lang = code;
	try {
		sessionStorage.setItem('haven.lang', code);
	} catch {
		/* kept in memory only */
	}
}

/* The text for key, with {name} replaced from params; the key itself when neither catalogue
 * has it (a test checks that both have every key). */
export function t(key, params) {
	let s = catalogues[current][key] ?? catalogues.en[key];
	if (s === undefined) {
		return key;
	}
	for (const [k, v] of Object.entries(params || {})) {
		s = s.replaceAll(`{${k}}`, String(v));
	}
	return s;
}

export function languages() {
	return Object.keys(catalogues);
}
