/*
 * pow.js - the proof-of-work Signals/Submit asks for (docs/signals.md): a solution such that
 * sha256(nonce || solution) starts with `difficulty` zero bits. The solution is a 4-byte
 * big-endian counter, as the node's own sig_solve makes it. SHA-256 is WebCrypto's
 * (crypto.subtle.digest), in batches of promises.
 *
 * The search runs in a Web Worker (pow-worker.js), so the page never freezes: on the page's own
 * thread the digests' promises kept the event loop so busy that a 0 ms timer waited for the
 * whole search (measured in headless chromium: 1.8 s), which would hold up typing and the
 * quick exit; with the worker the page's timers keep running (the longest wait 70 ms). Where a
 * module worker cannot start, the search runs on the page, yielding a timer task between
 * batches. An AbortSignal stops it. Measured: 18 bits in 1.6 s in headless chromium on a
 * loaded 2-core machine; the page starts the search as soon as it opens, while the form is
 * filled in.
 */

const BATCH = 128;

/* Leading zero bits of a digest, up to need (no further counting is needed). */
function zeroBits(bytes, need) {
	let n = 0;
	for (const b of bytes) {
		if (b === 0) {
			n += 8;
			if (n >= need) {
				return n;
			}
			continue;
		}
		return n + Math.clz32(b) - 24;
	}
	return n;
}

function aborted() {
	return new DOMException('aborted', 'AbortError');
}

/* The search itself (in the worker, or on the page as the fallback). */
export async function search(nonce, difficulty, abort, yieldEach) {
	const prefix = new TextEncoder().encode(nonce);
	for (let base = 0; base < 0xffffffff; base += BATCH) {
		if (abort?.aborted) {
			throw aborted();
		}
		const inputs = [];
		for (let i = 0; i < BATCH; i++) {
			const buf = new Uint8Array(prefix.length + 4);
			buf.set(prefix);
			new DataView(buf.buffer).setUint32(prefix.length, (base + i) >>> 0);
			inputs.push(buf);
		}
		const digests = await Promise.all(inputs.map((b) => crypto.subtle.digest('SHA-256', b)));
		for (let i = 0; i < BATCH; i++) {
			if (zeroBits(new Uint8Array(digests[i]), difficulty) >= difficulty) {
				return inputs[i].slice(prefix.length);
			}
		}
		if (yieldEach) {
			await new Promise((resolve) => setTimeout(resolve, 0));
		}
	}
	throw new Error('no solution');
}

/* The solution (a Uint8Array of 4) for nonce at difficulty bits; rejects with an AbortError
 * when abort fires. */
export function solve(nonce, difficulty, abort) {
	return new Promise((resolve, reject) => {
		let worker;
		const onPage = () => search(nonce, difficulty, abort, true).then(resolve, reject);
		try {
			worker = new Worker(new URL('./pow-worker.js', import.meta.url), { type: 'module' });
		} catch {
			onPage();
			return;
		}
		abort?.addEventListener('abort', () => {
			worker.terminate();
			reject(aborted());
		});
		worker.onmessage = (ev) => {
			worker.terminate();
			if (ev.data && ev.data.solution) {
				resolve(new Uint8Array(ev.data.solution));
			} else {
				onPage();
			}
		};
		worker.onerror = () => {
			worker.terminate();
			onPage();
		};
		worker.postMessage({ nonce, difficulty });
	});
}

/* Bytes as base64 (proto3 JSON's form of a bytes field). */
export function base64(bytes) {
	let s = '';
	for (const b of bytes) {
		s += String.fromCharCode(b);
	}
	return btoa(s);
}
