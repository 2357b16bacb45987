/*
 * pow.js - the proof-of-work Signals/Submit asks for (docs/signals.md): a solution such that
 * sha256(nonce || solution) starts with `difficulty` zero bits. The solution is a 4-byte
 * big-endian counter, as the node's own sig_solve makes it. SHA-256 is WebCrypto's
 * (crypto.subtle.digest), run in batches of promises: each digest resolves as a task of its
 * own, so clicks, typing and the quick exit are handled between them and the page never
 * freezes. An AbortSignal stops the search (a new challenge, the page left).
 */

const BATCH = 256;

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

/* The solution (Uint8Array of 4) for nonce (a string of ASCII) at difficulty bits; rejects
 * with an AbortError when aborted. onProgress(tries) is called after each batch, if given. */
export async function solve(nonce, difficulty, abort, onProgress) {
	const prefix = new TextEncoder().encode(nonce);
	for (let base = 0; base < 0xffffffff; base += BATCH) {
		if (abort?.aborted) {
			throw new DOMException('aborted', 'AbortError');
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
		onProgress?.(base + BATCH);
	}
	throw new Error('no solution');
}

/* Bytes as base64 (proto3 JSON's form of a bytes field). */
export function base64(bytes) {
	let s = '';
	for (const b of bytes) {
		s += String.fromCharCode(b);
	}
	return btoa(s);
}
