/*
 * pow-worker.js - the proof-of-work's search off the page's thread (pow.js): one message
 * {nonce, difficulty} in, {solution} (an ArrayBuffer of 4 bytes) or {error} out.
 */
import { search } from './pow.js';

self.onmessage = async (ev) => {
	try {
		const s = await search(ev.data.nonce, ev.data.difficulty, null, false);
		self.postMessage({ solution: s.buffer }, [s.buffer]);
	} catch (e) {
		self.postMessage({ error: String(e) });
	}
};
