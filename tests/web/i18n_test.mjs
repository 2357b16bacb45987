// i18n_test.mjs - the two catalogues of the web app hold the same keys, no text is empty,
// the {placeholders} of each text are the same in both, and every key the code names
// literally (t('...')) is in them. Prints "N passed, 0 failed".
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'js');
const nl = (await import(join(web, 'lang', 'nl.js'))).default;
const en = (await import(join(web, 'lang', 'en.js'))).default;
const errors = [];
let checks = 0;
const ph = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join();

for (const [a, b, an, bn] of [[nl, en, 'nl', 'en'], [en, nl, 'en', 'nl']]) {
	for (const k of Object.keys(a)) {
		checks++;
		if (!(k in b)) {
			errors.push(`${k}: in ${an}, missing in ${bn}`);
		} else if (!a[k].trim()) {
			errors.push(`${k}: empty in ${an}`);
		} else if (ph(a[k]) !== ph(b[k])) {
			errors.push(`${k}: placeholders differ between ${an} and ${bn}`);
		}
	}
}
const files = ['.', 'pages'].flatMap((d) => readdirSync(join(web, d)).filter((f) => f.endsWith('.js'))
	.map((f) => join(web, d, f)));
for (const f of files) {
	for (const m of readFileSync(f, 'utf8').matchAll(/\bt\('([a-zA-Z0-9_.-]+)'/g)) {
		checks++;
		if (!m[1].endsWith('.') && !(m[1] in nl)) {
			errors.push(`${m[1]}: used in ${f.slice(web.length + 1)}, in no catalogue`);
		}
	}
}
for (const e of errors) {
	console.log('FAIL ' + e);
}
console.log(`${checks - errors.length} passed, ${errors.length} failed`);
process.exit(errors.length ? 1 : 0);
