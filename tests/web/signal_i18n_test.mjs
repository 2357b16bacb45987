// signal_i18n_test.mjs - the public signal page's nine catalogues (web/js/signal/lang) hold the
// same keys as the English one, no text is empty, the {placeholders} match, and every key the
// page's code names (t('...'), tx(tag, '...'), formError('...'), the enum lists with their
// prefixes) is in them. Prints "N passed, 0 failed".
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'js', 'signal');
const codes = ['nl', 'en', 'pl', 'ro', 'bg', 'uk', 'hu', 'pt', 'ar'];
const cats = {};
for (const c of codes) {
	cats[c] = (await import(join(dir, 'lang', c + '.js'))).default;
}
const errors = [];
let checks = 0;
const ph = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join();
const en = cats.en;
for (const c of codes) {
	for (const k of new Set([...Object.keys(en), ...Object.keys(cats[c])])) {
		checks++;
		if (!(k in cats[c])) {
			errors.push(`${k}: missing in ${c}`);
		} else if (!(k in en)) {
			errors.push(`${k}: in ${c}, not in en`);
		} else if (!String(cats[c][k]).trim()) {
			errors.push(`${k}: empty in ${c}`);
		} else if (ph(cats[c][k]) !== ph(en[k])) {
			errors.push(`${k}: placeholders differ between ${c} and en`);
		} else if (c !== 'en' && c !== 'nl' && !/^(page\.title|region)$/.test(k) &&
			cats[c][k] === en[k] && cats[c][k].length > 12) {
			errors.push(`${k}: in ${c} the same as English (not translated?)`);
		}
	}
}
const code = readFileSync(join(dir, 'main.js'), 'utf8');
const used = new Set();
for (const m of code.matchAll(/\b(?:t|formError)\('([a-zA-Z0-9_.]+)'/g)) {
	used.add(m[1]);
}
for (const m of code.matchAll(/\btx\('[a-z0-9]+', '([a-zA-Z0-9_.]*[a-zA-Z0-9_])'[,)]/g)) {
	used.add(m[1]);
}
/* the enum lists: every value with its prefix */
for (const [list, prefix] of [['HELP', 'help.'], ['SECTORS', 'sector.'], ['SIGNS', 'sign.']]) {
	const m = code.match(new RegExp(`const ${list} = \\[([^\\]]*)\\]`));
	if (!m) {
		errors.push(`main.js: no list ${list}`);
		continue;
	}
	for (const v of m[1].matchAll(/'([A-Z_]+)'/g)) {
		used.add(prefix + v[1]);
	}
}
for (const m of code.matchAll(/'(err\.[a-z]+)'/g)) {
	used.add(m[1]);
}
for (const k of used) {
	checks++;
	if (!(k in en)) {
		errors.push(`${k}: used in main.js, in no catalogue`);
	}
}
if (used.size < 40) {
	errors.push(`only ${used.size} keys found in main.js: the scan is broken`);
}
for (const e of errors) {
	console.log('FAIL ' + e);
}
console.log(`${checks - errors.length} passed, ${errors.length} failed`);
process.exit(errors.length ? 1 : 0);
