/*
 * live.js - the node's event stream for the open page: GET /events (Server-Sent Events: the
 * organisation's alerts, kinds and ids only, never a person), one EventSource per browser.
 *
 * It starts from now (WatchEvents from_now gives the cursor), so a page is not sent the week
 * of alerts it has no use for. Each alert goes to onEvent (the shell refreshes the page and
 * the badge). "event: end" with UNAUTHENTICATED means the session ended on the node (idle or
 * absolute timeout, sign-out elsewhere, a person or organisation disabled): onEnd, and the
 * stream stays closed. Any other failure (the node's cap on streams answers 503, a proxy, the
 * network, the node restarting) is tried again after 2 s, doubling to 60 s; until the stream
 * is back the page falls back to a slow poll (onPoll every SLOW_POLL_MS). onState hears
 * 'live', 'retrying' and 'off'.
 *
 * The stream's polls are no person's act (docs/people.md): a page left open does not keep its
 * session alive, which is why the end of the stream is how an idle page learns it ended.
 *
 * One stream per browser, not per tab: a browser keeps at most six HTTP/1.1 connections to a
 * host, and a stream holds one for good (a seventh tab would hang), and the node allows 8
 * streams per organisation. The tabs elect a leader with the Web Locks API (the lock
 * "haven.live"); the leader holds the stream and passes what it hears to the other tabs on
 * the BroadcastChannel "haven.live" (events, its state, the end); when it closes, the next
 * tab takes the lock, opens the stream and refreshes once for what it may have missed.
 * Without those APIs (an old browser, plain http) each tab has its own stream.
 */
import { call } from './api.js';

const BACKOFF_MIN_MS = 2000;
const BACKOFF_MAX_MS = 60000;
export const SLOW_POLL_MS = 30000;

let es = null;
let cursor = '';
let backoff = BACKOFF_MIN_MS;
let retry = null;
let poll = null;
let on = null;
let state = 'off';
let leading = false;  /* this tab holds the stream (always, without Web Locks) */
let release = null;   /* ends this tab's hold of the lock */
let abort = null;     /* stops waiting for the lock */
const bus = typeof BroadcastChannel === 'function' && navigator.locks ? new BroadcastChannel('haven.live') : null;

function setState(s) {
	if (leading && bus) {
		bus.postMessage({ type: 'state', state: s });
	}
	if (s !== state) {
		state = s;
		on?.onState?.(s);
	}
}

/* What the leader tab heard, in the other tabs. */
if (bus) {
	bus.onmessage = (m) => {
		const d = m.data || {};
		if (!on || leading) {
			if (on && leading && d.type === 'ask') {
				bus.postMessage({ type: 'state', state });
			}
			return;
		}
		if (d.type === 'event') {
			on.onEvent?.(d.event);
		} else if (d.type === 'state') {
			slow(d.state !== 'live');
			setState(d.state);
		} else if (d.type === 'end') {
			on.onEnd?.();
		}
	};
}

function closeStream() {
	if (es) {
		es.onopen = es.onmessage = es.onerror = null;
		es.close();
		es = null;
	}
}

/* The slow poll, while the stream is away. */
function slow(wanted) {
	if (wanted && !poll && on) {
		poll = setInterval(() => on?.onPoll?.(), SLOW_POLL_MS);
	} else if (!wanted && poll) {
		clearInterval(poll);
		poll = null;
	}
}

/* Tries again after the back-off. A check of the session first: an EventSource cannot tell a
 * 401 from a network failure, a call can (api.js ends the session on a 401). */
function later() {
	closeStream();
	if (!on) {
		return;
	}
	setState('retrying');
	slow(true);
	clearTimeout(retry);
	retry = setTimeout(async () => {
		retry = null;
		try {
			await call('haven.health.v1.Health/Check', {});
		} catch (e) {
			if (e.code === 'unauthenticated') {
				return;
			}
		}
		connect();
	}, backoff);
	backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
}

async function connect() {
	if (!on) {
		return;
	}
	if (!cursor) {
		try {
			const r = await call('haven.alerts.v1.Alerts/WatchEvents', { fromNow: true });
			cursor = String(r.cursor || '0');
		} catch (e) {
			if (e.code !== 'unauthenticated') {
				later();
			}
			return;
		}
		if (!on) {
			return;
		}
	}
	es = new EventSource('/events?after=' + encodeURIComponent(cursor));
	es.onopen = () => {
		backoff = BACKOFF_MIN_MS;
		slow(false);
		setState('live');
	};
	es.onmessage = (m) => {
		if (/^\d+$/.test(m.lastEventId || '')) {
			cursor = m.lastEventId;
		}
		let ev = null;
		try {
			ev = JSON.parse(m.data);
		} catch {
			return;
		}
		bus?.postMessage({ type: 'event', event: ev });
		on?.onEvent?.(ev);
	};
	es.addEventListener('end', (m) => {
		let code = '';
		try {
			code = JSON.parse(m.data).code;
		} catch {
			/* no code: try again */
		}
		if (code === 'UNAUTHENTICATED') {
			closeStream();
			slow(false);
			setState('off');
			bus?.postMessage({ type: 'end' });
			on?.onEnd?.();
			return;
		}
		later();
	});
	es.onerror = () => {
		if (es && es.readyState === EventSource.CLOSED) {
			later(); /* refused (401, 503, ...): the browser gave up, we try again later */
		} else {
			setState('retrying'); /* the browser reconnects by itself (retry: 2000) */
			slow(true);
		}
	};
}

/* Opens the stream for the signed-in person (or waits for the tab that has it);
 * handlers: {onEvent, onEnd, onPoll, onState}. */
export function start(handlers) {
	stop();
	on = handlers;
	cursor = '';
	backoff = BACKOFF_MIN_MS;
	if (!bus) {
		leading = true;
		connect();
		return;
	}
	const ctl = new AbortController();
	abort = ctl;
	navigator.locks.request('haven.live', { signal: ctl.signal }, () => new Promise((done) => {
		if (!on || abort !== ctl) {
			done();
			return;
		}
		release = done;
		leading = true;
		connect();
		on.onPoll?.(); /* the tab that led before may have closed before it passed on an event */
	})).catch(() => { /* stopped while waiting */ });
	bus.postMessage({ type: 'ask' });
}

/* Closes it (sign-out, session ended), and lets the next tab lead. */
export function stop() {
	const had = on;
	on = null;
	closeStream();
	clearTimeout(retry);
	retry = null;
	slow(false);
	abort?.abort();
	abort = null;
	release?.();
	release = null;
	leading = false;
	state = 'off';
	had?.onState?.('off');
}

export function mode() {
	return state;
}
