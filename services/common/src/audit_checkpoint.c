/*
 * audit_checkpoint.c - signed checkpoints of the audit chain's committed head, appended to
 * DATA/audit.checkpoints (audit.h). A checkpoint is written after the commit that carries its
 * head, reading the head in a read transaction of its own, never from a write function.
 */
#include "haven/audit.h"
#include "audit_internal.h"
#include "haven/bytes.h"
#include "haven/clock.h"
#include "haven/crypto.h"
#include "haven/file.h"
#include "haven/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- checkpoints ---------------------------------------------------------------------- */

static void
cp_message(uint8_t msg[CP_MSG_LEN], uint64_t seq, const uint8_t hash[AUDIT_HASH_LEN],
    uint64_t time_ms)
{
	memcpy(msg, CP_LABEL, sizeof(CP_LABEL));
	hv_put_be64(msg + sizeof(CP_LABEL), seq);
	memcpy(msg + sizeof(CP_LABEL) + 8, hash, AUDIT_HASH_LEN);
	hv_put_be64(msg + sizeof(CP_LABEL) + 8 + AUDIT_HASH_LEN, time_ms);
}

/* A checkpoint line, its signature checked: 0; -1 when it does not parse, -2 when it is not
 * signed by pub. line loses its newline. */
int
audit__cp_parse(char *line, const uint8_t pub[CRYPTO_ED25519_PUBLIC_LEN], checkpoint *cp)
{
	char   *f[5], *save = NULL, *p;
	size_t  n = 0, len = strlen(line);
	uint8_t sig[CRYPTO_ED25519_SIG_LEN], msg[CP_MSG_LEN];

	if (len == 0 || line[len - 1] != '\n') {
		return (-1);
	}
	line[len - 1] = '\0';
	for (p = strtok_r(line, " ", &save); p != NULL && n < 5; p = strtok_r(NULL, " ", &save)) {
		f[n++] = p;
	}
	if (n != 5 || p != NULL || strcmp(f[0], "v1") != 0 ||
	    audit__dec_get(f[1], &cp->cp_seq) != 0 ||
	    audit__hex_get(f[2], cp->cp_hash, AUDIT_HASH_LEN) != 0 ||
	    audit__dec_get(f[3], &cp->cp_time_ms) != 0 ||
	    audit__hex_get(f[4], sig, sizeof(sig)) != 0) {
		return (-1);
	}
	cp_message(msg, cp->cp_seq, cp->cp_hash, cp->cp_time_ms);
	return (crypto_ed25519_verify(pub, msg, sizeof(msg), sig, sizeof(sig)) == HV_OK ? 0 : -2);
}

/* The committed head, in a read transaction of its own. */
hv_status
audit__committed_head(audit *a, chain_head *h)
{
	store_txn *txn;
	hv_status  st;

	if ((st = store_read_begin(a->a_store, &txn)) != HV_OK) {
		return (st);
	}
	st = audit__head_read(a, txn, h);
	store_read_end(txn);
	return (st);
}

/* Appends a signed checkpoint of h to the file (a_cpmtx held), making the file when create. */
hv_status
audit__cp_append(audit *a, const chain_head *h, bool create)
{
	uint8_t   msg[CP_MSG_LEN], sig[CRYPTO_ED25519_SIG_LEN];
	char      line[CP_LINE_MAX], hex[2 * AUDIT_HASH_LEN + 1];
	char      sighex[2 * CRYPTO_ED25519_SIG_LEN + 1];
	uint64_t  now = (uint64_t) hv_clock_wall_ms();
	int       fd  = -1, n;
	hv_status st;

	a->a_cp_at = hv_clock_mono_ms();
	cp_message(msg, h->ch_seq, h->ch_hash, now);
	if ((st = crypto_ed25519_sign(sig, a->a_secret, msg, sizeof(msg))) != HV_OK) {
		goto out;
	}
	audit__hex_put(hex, h->ch_hash, AUDIT_HASH_LEN);
	audit__hex_put(sighex, sig, sizeof(sig));
	n  = snprintf(line, sizeof(line), "v1 %llu %s %llu %s\n", (unsigned long long) h->ch_seq,
	     hex, (unsigned long long) now, sighex);
	fd = open(a->a_cpath, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0),
	    0600);
	if (fd < 0) {
		st = errno == ENOENT ? HV_FAILED_PRECONDITION : hv_status_from_errno(errno);
		goto out;
	}
	/* One write of one line: appends of other processes land before or after it. */
	if ((st = audit__write_all(fd, line, (size_t) n)) != HV_OK) {
		goto out;
	}
	if (fsync(fd) != 0) {
		st = hv_status_from_errno(errno);
		goto out;
	}
	a->a_cp_any = true;
	a->a_cp_seq = h->ch_seq;
	log_info("audit: checkpoint seq %llu hash %s", (unsigned long long) h->ch_seq, hex);
out:
	if (fd >= 0) {
		close(fd);
	}
	if (st != HV_OK && !a->a_cp_warned) {
		a->a_cp_warned = true;
		log_error("audit: cannot append a checkpoint to %s: %s%s", a->a_cpath,
		    hv_status_name(st),
		    st == HV_FAILED_PRECONDITION ? " (the file is missing; audit verify reports it)"
		                                 : "");
	}
	return (st);
}

hv_status
audit_checkpoint(audit *a)
{
	chain_head h;
	hv_status  st;

	pthread_mutex_lock(&a->a_cpmtx);
	if ((st = audit__committed_head(a, &h)) == HV_OK &&
	    !(a->a_cp_any && h.ch_seq == a->a_cp_seq)) {
		st = audit__cp_append(a, &h, false);
	}
	pthread_mutex_unlock(&a->a_cpmtx);
	return (st);
}

/* A checkpoint when the last one of this handle is AUDIT_CHECKPOINT_MS old. */
void
audit__cp_maybe(audit *a)
{
	bool due;

	pthread_mutex_lock(&a->a_cpmtx);
	due = hv_clock_mono_ms() - a->a_cp_at >= AUDIT_CHECKPOINT_MS;
	pthread_mutex_unlock(&a->a_cpmtx);
	if (due) {
		(void) audit_checkpoint(a);
	}
}

/* Whether the committed log's last entry (and so any entry) is keyed. */
static hv_status
log_keyed(audit *a, const chain_head *h, bool *keyed)
{
	store_txn  *txn;
	uint8_t     key[8];
	const void *v;
	size_t      vl;
	hv_status   st;

	*keyed = false;
	if (h->ch_seq == 0) {
		return (HV_OK);
	}
	if ((st = store_read_begin(a->a_store, &txn)) != HV_OK) {
		return (st);
	}
	hv_put_be64(key, h->ch_seq);
	if ((st = store_get(txn, a->a_log, key, sizeof(key), &v, &vl)) == HV_OK) {
		*keyed = vl > 0 && ((const uint8_t *) v)[0] != AUDIT_VERSION_LEGACY;
	}
	store_read_end(txn);
	return (st == HV_NOT_FOUND ? HV_OK : st);
}

/* At open: a checkpoint of the head. Without a checkpoint file (or with an empty one) the
 * first line is the boundary, but only of a log that holds no keyed entry yet and with a key
 * made by this open (a new store, or one written before the key). Otherwise the file was lost
 * or removed, and is not replaced: a log rewritten as all legacy by someone who removed the
 * file would get a new boundary. */
hv_status
audit__cp_open(audit *a, bool key_created)
{
	struct stat sb;
	chain_head  h;
	bool        keyed, fresh;
	hv_status   st;

	pthread_mutex_lock(&a->a_cpmtx);
	if ((st = audit__committed_head(a, &h)) != HV_OK) {
		goto out;
	}
	fresh = lstat(a->a_cpath, &sb) != 0 || sb.st_size == 0;
	if (fresh && (st = log_keyed(a, &h, &keyed)) != HV_OK) {
		goto out;
	}
	if (fresh && (keyed || !key_created)) {
		a->a_cp_warned = true;
		log_error("audit: %s is missing or empty but the audit key is older: no new one is "
		          "started, and audit verify reports it",
		    a->a_cpath);
		goto out;
	}
	if (fresh && h.ch_seq > 0) {
		log_info("audit: the log's %llu entries from before the audit key stay unkeyed; "
		         "entries after them are keyed",
		    (unsigned long long) h.ch_seq);
	}
	if ((st = audit__cp_append(a, &h, fresh)) != HV_OK) {
		log_error("audit: cannot write a checkpoint to %s", a->a_cpath);
	}
out:
	pthread_mutex_unlock(&a->a_cpmtx);
	return (st);
}

hv_status
audit__write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (hv_status_from_errno(errno));
		}
		p += w;
		len -= (size_t) w;
	}
	return (HV_OK);
}

/* DATA/keys: made 0700 when missing, refused when open to other users. */
