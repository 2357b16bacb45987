// vendor.mjs - copies the front end's npm libraries (pinned in package-lock.json) into
// web/vendor, where the node serves them: the page loads nothing from any other host.
// Run by scripts/web.sh after `npm ci`.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(web, '..');
const files = [
	['node_modules/qrcode-generator/dist/qrcode.mjs', 'qrcode.mjs'],
];
mkdirSync(join(web, 'vendor'), { recursive: true });
for (const [from, to] of files) {
	copyFileSync(join(root, from), join(web, 'vendor', to));
}
console.log(`vendor.mjs: ${files.length} file(s) in web/vendor`);
