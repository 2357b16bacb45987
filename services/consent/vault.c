/*
 * vault.c - the keys of the personal-data vault: the key-encryption key (KEK) in
 * DATA_DIR/keys/kek, the per-subject data keys it wraps, the sealing of personal fields, the
 * rotation of the KEK, and the node's receipt signing key.
 *
 * Key file: "HKEK" || version (1) || be64 generation || 32 key bytes, mode 0600, in a 0700
 * directory. The store names the generation in use and a check value of its key (KekState),
 * so a key file that is not the store's is refused at open instead of failing subject by
 * subject.
 *
 * Rotation, crash-safe in this order, under an exclusive flock on keys/lock that every process
 * sharing the data directory takes to rotate or to recover:
 *   1. write keys/kek.new (generation g+1), fsync it and the directory;
 *   2. in ONE store transaction, re-wrap every live data key under g+1 and set KekState to g+1;
 *   3. rename kek.new over keys/kek, fsync the directory, then overwrite the old file's blocks
 *      (through a descriptor opened before the rename) and fsync them.
 * A crash before 2 committed leaves kek.new that the store does not name: rolled back (shredded)
 * at the next open. A crash after leaves kek.new that the store names: the rotation is finished
 * at the next open. Either way exactly one key file matches the store afterwards.
 *
 * Processes that share the store but did not rotate notice a record of a newer generation and
 * load it from keys/kek (or keys/kek.new, just before the rename) without taking the flock: a
 * reader that waited for the flock inside a write transaction could deadlock against the
 * rotator, which holds the flock while it waits for the write lock.
 *
 * Keys in memory live in two slots per process, wiped as soon as the store no longer names
 * them; every copy taken for one operation is wiped when it ends.
 */
#include "consent_vault.h"

#include "consent_keyfile.h"

#include "haven/bytes.h"
#include "haven/file.h"
#include "haven/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEK_FILE       "kek"
#define KEK_NEW_FILE   "kek.new"
#define SIGN_FILE      "receipt-ed25519.pem"
#define KEK_AAD_PREFIX "haven-kek"
#define META_KEY       "kek"
#define SIGN_PEM_MAX   4096
#define REWRAP_CHUNK   1024 /* records re-wrapped per cursor pass */
#define RELOAD_TRIES   3

const char *
vault_field_name(unsigned field)
{
	/* PersonalData's field numbers (consent.proto); the names are associated data, so they
	 * never change. */
	switch (field) {
	case 1:
		return ("name");
	case 2:
		return ("date_of_birth");
	case 3:
		return ("nationality");
	case 4:
		return ("languages");
	case 5:
		return ("contact");
	case 6:
		return ("notes");
	case 7:
		return ("guardian");
	default:
		return (NULL);
	}
}

/* ---- keys in memory ------------------------------------------------------------------- */

static bool
slot_get(consent_service *cs, uint64_t gen, uint8_t key[KEK_LEN])
{
	bool found = false;

	pthread_mutex_lock(&cs->cs_kmtx);
	for (int i = 0; i < 2; i++) {
		if (cs->cs_kek[i].ks_gen == gen && gen != 0) {
			memcpy(key, cs->cs_kek[i].ks_key, KEK_LEN);
			found = true;
		}
	}
	pthread_mutex_unlock(&cs->cs_kmtx);
	return (found);
}

/* Wipes the slots of generations in [lo, hi). */
static void
slot_drop(consent_service *cs, uint64_t lo, uint64_t hi)
{
	pthread_mutex_lock(&cs->cs_kmtx);
	for (int i = 0; i < 2; i++) {
		if (cs->cs_kek[i].ks_gen >= lo && cs->cs_kek[i].ks_gen < hi) {
			crypto_wipe(&cs->cs_kek[i], sizeof(cs->cs_kek[i]));
		}
	}
	pthread_mutex_unlock(&cs->cs_kmtx);
}

/* Keeps a key: in its generation's slot, else an empty one, else the older one's. */
static void
slot_put(consent_service *cs, uint64_t gen, const uint8_t key[KEK_LEN])
{
	int i;

	pthread_mutex_lock(&cs->cs_kmtx);
	for (i = 0; i < 2 && cs->cs_kek[i].ks_gen != gen; i++) {
	}
	if (i == 2) {
		i = cs->cs_kek[0].ks_gen == 0                     ? 0
		    : cs->cs_kek[1].ks_gen == 0                   ? 1
		    : cs->cs_kek[0].ks_gen < cs->cs_kek[1].ks_gen ? 0
		                                                  : 1;
	}
	cs->cs_kek[i].ks_gen = gen;
	memcpy(cs->cs_kek[i].ks_key, key, KEK_LEN);
	pthread_mutex_unlock(&cs->cs_kmtx);
}

/*
 * The KEK of a generation: from memory, or from the key files when another process rotated
 * (the store names a generation only after its key file was synced). Loading generation g
 * from a file means the store names g, so every older key is wiped.
 */
static hv_status
kek_get(consent_service *cs, uint64_t gen, uint8_t key[KEK_LEN])
{
	char     path[PATH_MAX + 16];
	kek_file k;

	if (slot_get(cs, gen, key)) {
		return (HV_OK);
	}
	for (int attempt = 0; attempt < RELOAD_TRIES; attempt++) {
		const char *files[] = { KEK_FILE, KEK_NEW_FILE };
		for (int f = 0; f < 2; f++) {
			key_path(cs, files[f], path, sizeof(path));
			if (kek_read(path, &k) == HV_OK && k.kf_gen == gen) {
				slot_put(cs, gen, k.kf_key);
				slot_drop(cs, 1, gen);
				memcpy(key, k.kf_key, KEK_LEN);
				crypto_wipe(&k, sizeof(k));
				return (HV_OK);
			}
			crypto_wipe(&k, sizeof(k));
		}
	}
	return (HV_DATA_LOSS);
}

/* ---- state in the store --------------------------------------------------------------- */

static hv_status
meta_get(consent_service *cs, store_txn *txn, Haven__Consent__V1__KekState **out)
{
	return (store_get_msg(txn, cs->cs_meta, META_KEY, strlen(META_KEY),
	    &haven__consent__v1__kek_state__descriptor, NULL, (ProtobufCMessage **) out));
}

hv_status
vault_generation_txn(consent_service *cs, store_txn *txn, uint64_t *gen)
{
	Haven__Consent__V1__KekState *m = NULL;
	hv_status                     st;

	if ((st = meta_get(cs, txn, &m)) != HV_OK) {
		return (st == HV_NOT_FOUND ? HV_DATA_LOSS : st);
	}
	*gen = m->generation;
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return (HV_OK);
}

/* Reads KekState in a read transaction of its own; *have is false when the store has none. */
static hv_status
meta_read(consent_service *cs, bool *have, uint64_t *gen, uint8_t check[KEK_CHECK_LEN],
    int64_t *rotated_at)
{
	Haven__Consent__V1__KekState *m   = NULL;
	store_txn                    *txn = NULL;
	hv_status                     st;

	*have = false;
	if ((st = store_read_begin(cs->cs_store, &txn)) != HV_OK) {
		return (st);
	}
	st = meta_get(cs, txn, &m);
	store_read_end(txn);
	if (st == HV_NOT_FOUND) {
		return (HV_OK);
	}
	if (st != HV_OK) {
		return (st);
	}
	if (m->check.len != KEK_CHECK_LEN || m->generation == 0) {
		protobuf_c_message_free_unpacked(&m->base, NULL);
		return (HV_DATA_LOSS);
	}
	*have = true;
	*gen  = m->generation;
	memcpy(check, m->check.data, KEK_CHECK_LEN);
	if (rotated_at != NULL) {
		*rotated_at = m->rotated_at_ms;
	}
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return (HV_OK);
}

typedef struct meta_job {
	consent_service *mj_cs;
	uint64_t         mj_gen;
	uint8_t          mj_check[KEK_CHECK_LEN];
	int64_t          mj_now;
} meta_job;

static hv_status
meta_put(meta_job *j, store_txn *txn, bool fresh)
{
	Haven__Consent__V1__KekState m = HAVEN__CONSENT__V1__KEK_STATE__INIT;
	uint8_t                      buf[64];
	size_t                       n;

	m.generation    = j->mj_gen;
	m.check.data    = j->mj_check;
	m.check.len     = KEK_CHECK_LEN;
	m.rotated_at_ms = j->mj_now;
	if (protobuf_c_message_get_packed_size(&m.base) > sizeof(buf)) {
		return (HV_INTERNAL);
	}
	n = protobuf_c_message_pack(&m.base, buf);
	return (fresh ? store_put_new(txn, j->mj_cs->cs_meta, META_KEY, strlen(META_KEY), buf, n)
	              : store_put(txn, j->mj_cs->cs_meta, META_KEY, strlen(META_KEY), buf, n));
}

static hv_status
meta_init_fn(store_txn *txn, void *arg)
{
	return (meta_put(arg, txn, true));
}

/* ---- recovery and start-up ------------------------------------------------------------ */

/* recover's end for a store without a key state: keys/kek is made on first start (or taken
 * as it is) and the store records its generation and check value. */
static hv_status
recover_first(consent_service *cs, const char *kpath, hv_status stk, kek_file *k)
{
	meta_job  j = { .mj_cs = cs, .mj_now = consent_now(cs) };
	hv_status st;

	if (stk == HV_NOT_FOUND) {
		/* First start: the first key. */
		k->kf_gen = 1;
		/* The directory entry must be durable before the store records the key state:
		 * after a power cut a store whose key file is gone cannot be read. */
		if ((st = crypto_random(k->kf_key, KEK_LEN)) != HV_OK ||
		    (st = kek_write(kpath, k)) != HV_OK ||
		    (st = hv_file_sync_dir(cs->cs_keys)) != HV_OK) {
			log_error("consent: cannot create %s: %s", kpath, hv_status_name(st));
			return (st);
		}
		log_info("consent: created the key-encryption key %s", kpath);
	} else if (stk != HV_OK) {
		log_error("consent: %s is malformed", kpath);
		return (stk);
	}
	j.mj_gen = k->kf_gen;
	kek_check(k->kf_key, j.mj_check);
	if ((st = store_write(cs->cs_store, meta_init_fn, &j)) != HV_OK) {
		log_error("consent: cannot record the key state: %s", hv_status_name(st));
	}
	return (st);
}

/* recover's end for a store that names a key: keys/kek must be that key. */
static hv_status
recover_match(const char *kpath, hv_status stk, const kek_file *k, uint64_t gen,
    const uint8_t check[KEK_CHECK_LEN])
{
	uint8_t c[KEK_CHECK_LEN];
	bool    same;

	if (stk == HV_NOT_FOUND) {
		log_error("consent: %s is missing: personal data in this store was wrapped under "
		          "generation %llu and cannot be decrypted without it",
		    kpath, (unsigned long long) gen);
		return (HV_DATA_LOSS);
	}
	if (stk != HV_OK) {
		log_error("consent: %s is malformed", kpath);
		return (stk);
	}
	kek_check(k->kf_key, c);
	same = k->kf_gen == gen && crypto_equal(c, check, KEK_CHECK_LEN);
	crypto_wipe(c, sizeof(c));
	if (!same) {
		log_error("consent: %s (generation %llu) does not match the key this store was "
		          "wrapped under (generation %llu)",
		    kpath, (unsigned long long) k->kf_gen, (unsigned long long) gen);
		return (HV_DATA_LOSS);
	}
	return (HV_OK);
}

/*
 * Makes keys/kek the key the store names, finishing or rolling back a rotation a crash
 * interrupted, or making the first key of an empty store. Called with the flock held. Loads
 * the key into a slot.
 */
static hv_status
recover(consent_service *cs)
{
	char      kpath[PATH_MAX + 16], npath[PATH_MAX + 16];
	kek_file  k, n;
	uint8_t   check[KEK_CHECK_LEN], c[KEK_CHECK_LEN];
	uint64_t  gen = 0;
	bool      have;
	hv_status st, stk, stn;

	memset(&k, 0, sizeof(k));
	memset(&n, 0, sizeof(n));
	key_path(cs, KEK_FILE, kpath, sizeof(kpath));
	key_path(cs, KEK_NEW_FILE, npath, sizeof(npath));
	if ((st = meta_read(cs, &have, &gen, check, NULL)) != HV_OK) {
		log_error("consent: the key state in the store does not read: %s",
		    hv_status_name(st));
		goto out;
	}
	stk = kek_read(kpath, &k);
	stn = kek_read(npath, &n);
	if (stk == HV_PERMISSION_DENIED || stn == HV_PERMISSION_DENIED) {
		log_error("consent: %s is open to other users: chmod 600 it",
		    stk == HV_PERMISSION_DENIED ? kpath : npath);
		st = HV_PERMISSION_DENIED;
		goto out;
	}
	if (stn == HV_OK) {
		kek_check(n.kf_key, c);
	}
	if (stn == HV_OK && have && n.kf_gen == gen && crypto_equal(c, check, KEK_CHECK_LEN)) {
		/* The store was re-wrapped under kek.new: finish the rotation. */
		if ((st = kek_replace(cs, npath, kpath)) != HV_OK) {
			log_error("consent: cannot finish the key rotation (rename %s): %s", npath,
			    hv_status_name(st));
			goto out;
		}
		log_warn("consent: finished a key rotation a crash interrupted (generation %llu)",
		    (unsigned long long) gen);
		k   = n;
		stk = HV_OK;
	} else if (stn != HV_NOT_FOUND) {
		/* Never committed (or torn while it was written): the store does not need it. */
		shred_fd(open_for_shred(npath));
		unlink(npath);
		(void) hv_file_sync_dir(cs->cs_keys);
		log_warn("consent: rolled back a key rotation a crash interrupted");
	}

	st = have ? recover_match(kpath, stk, &k, gen, check) : recover_first(cs, kpath, stk, &k);
	if (st != HV_OK) {
		goto out;
	}
	slot_put(cs, k.kf_gen, k.kf_key);
	slot_drop(cs, 1, k.kf_gen);
	st = HV_OK;
out:
	crypto_wipe(&k, sizeof(k));
	crypto_wipe(&n, sizeof(n));
	crypto_wipe(c, sizeof(c));
	return (st);
}

/* Loads the receipt signing key, making it on first start. */
static hv_status
sign_key_load(consent_service *cs)
{
	char      path[PATH_MAX + 32];
	char     *pem = NULL;
	size_t    len = 0;
	uint8_t   md[CRYPTO_SHA256_LEN];
	hv_status st;

	key_path(cs, SIGN_FILE, path, sizeof(path));
	st = hv_file_read(path, SIGN_PEM_MAX, true, &pem, &len);
	if (st == HV_NOT_FOUND) {
		/* Durable before the first receipt is signed with it. */
		if ((st = crypto_ed25519_keygen(&pem, &len)) != HV_OK ||
		    (st = hv_file_create_private(path, pem, len)) != HV_OK ||
		    (st = hv_file_sync_dir(cs->cs_keys)) != HV_OK) {
			log_error("consent: cannot create %s: %s", path, hv_status_name(st));
			goto out;
		}
		log_info("consent: created the receipt signing key %s", path);
		crypto_wipe(pem, len);
		free(pem);
		pem = NULL;
		st  = hv_file_read(path, SIGN_PEM_MAX, true, &pem, &len);
	}
	if (st != HV_OK) {
		log_error("consent: cannot read %s: %s%s", path, hv_status_name(st),
		    st == HV_PERMISSION_DENIED ? " (open to other users: chmod 600 it)" : "");
		goto out;
	}
	/* Parsed once: OpenSSL's PEM decoders are far too slow to run for every receipt. */
	if (crypto_ed25519_secret(pem, len, cs->cs_sign_secret) != HV_OK ||
	    crypto_ed25519_public(pem, len, cs->cs_pub) != HV_OK) {
		st = HV_DATA_LOSS;
		log_error("consent: %s is not an Ed25519 private key", path);
		goto out;
	}
	crypto_sha256(md, cs->cs_pub, sizeof(cs->cs_pub));
	for (size_t i = 0; i < sizeof(md); i++) {
		snprintf(cs->cs_key_id + 2 * i, 3, "%02x", md[i]);
	}
out:
	if (pem != NULL) {
		crypto_wipe(pem, len);
		free(pem);
	}
	return (st);
}

hv_status
vault_open(consent_service *cs, const char *data_dir)
{
	struct stat sb;
	int         lock = -1;
	hv_status   st   = HV_INVALID_ARGUMENT;

	if (data_dir == NULL ||
	    (size_t) snprintf(cs->cs_keys, sizeof(cs->cs_keys), "%s/keys", data_dir) >=
	        sizeof(cs->cs_keys)) {
		goto out;
	}
	if (mkdir(cs->cs_keys, 0700) != 0 && errno != EEXIST) {
		st = hv_status_from_errno(errno);
		log_error("consent: cannot create %s: %s", cs->cs_keys, strerror(errno));
		goto out;
	}
	if (lstat(cs->cs_keys, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		st = HV_FAILED_PRECONDITION;
		log_error("consent: %s is not a directory", cs->cs_keys);
		goto out;
	}
	if ((sb.st_mode & 077) != 0) {
		st = HV_PERMISSION_DENIED;
		log_error("consent: %s is open to other users (mode %03o): chmod 700 it",
		    cs->cs_keys, (unsigned) (sb.st_mode & 0777));
		goto out;
	}
	st = HV_UNAVAILABLE;
	if ((lock = keys_lock(cs)) < 0) {
		goto out;
	}
	if ((st = recover(cs)) != HV_OK || (st = sign_key_load(cs)) != HV_OK) {
		goto out;
	}
	st = HV_OK;
out:
	keys_unlock(lock);
	return (st);
}

void
vault_close(consent_service *cs)
{
	crypto_wipe(cs->cs_kek, sizeof(cs->cs_kek));
	crypto_wipe(cs->cs_sign_secret, sizeof(cs->cs_sign_secret));
}

/* ---- wrapping and sealing ------------------------------------------------------------- */

static void
kek_aad(uint64_t gen, const uint8_t id[CONSENT_ID_LEN], uint8_t aad[9 + 8 + CONSENT_ID_LEN])
{
	memcpy(aad, KEK_AAD_PREFIX, 9);
	for (int i = 0; i < 8; i++) {
		aad[9 + i] = (uint8_t) (gen >> (56 - 8 * i));
	}
	memcpy(aad + 17, id, CONSENT_ID_LEN);
}

hv_status
vault_wrap(consent_service *cs, uint64_t gen, const uint8_t id[CONSENT_ID_LEN],
    const uint8_t dk[DATA_KEY_LEN], uint8_t out[WRAPPED_LEN])
{
	uint8_t   kek[KEK_LEN];
	uint8_t   aad[9 + 8 + CONSENT_ID_LEN];
	hv_status st;

	if ((st = kek_get(cs, gen, kek)) != HV_OK) {
		return (st);
	}
	kek_aad(gen, id, aad);
	if ((st = crypto_random(out, CRYPTO_AEAD_NONCE_LEN)) == HV_OK) {
		st = crypto_aead_encrypt(out + CRYPTO_AEAD_NONCE_LEN,
		    out + CRYPTO_AEAD_NONCE_LEN + DATA_KEY_LEN, kek, out, aad, sizeof(aad), dk,
		    DATA_KEY_LEN);
	}
	crypto_wipe(kek, sizeof(kek));
	return (st);
}

hv_status
vault_unwrap(consent_service *cs, uint64_t gen, const uint8_t id[CONSENT_ID_LEN],
    const uint8_t *wrapped, size_t len, uint8_t dk[DATA_KEY_LEN])
{
	uint8_t   kek[KEK_LEN];
	uint8_t   aad[9 + 8 + CONSENT_ID_LEN];
	hv_status st;

	if (len != WRAPPED_LEN) {
		return (HV_DATA_LOSS);
	}
	if ((st = kek_get(cs, gen, kek)) != HV_OK) {
		return (st);
	}
	kek_aad(gen, id, aad);
	st = crypto_aead_decrypt(dk, kek, wrapped, wrapped + CRYPTO_AEAD_NONCE_LEN + DATA_KEY_LEN,
	    aad, sizeof(aad), wrapped + CRYPTO_AEAD_NONCE_LEN, DATA_KEY_LEN);
	crypto_wipe(kek, sizeof(kek));
	return (st == HV_OK ? HV_OK : HV_DATA_LOSS);
}

/* aad of a field: id || field name. */
static size_t
field_aad(const uint8_t id[CONSENT_ID_LEN], const char *name, uint8_t aad[64])
{
	size_t n = strlen(name);

	memcpy(aad, id, CONSENT_ID_LEN);
	memcpy(aad + CONSENT_ID_LEN, name, n);
	return (CONSENT_ID_LEN + n);
}

void
vault_field_free(Haven__Consent__V1__SealedField *f)
{
	free(f->nonce.data);
	free(f->ciphertext.data);
	free(f->tag.data);
	haven__consent__v1__sealed_field__init(f);
}

hv_status
vault_seal(const uint8_t dk[DATA_KEY_LEN], const uint8_t id[CONSENT_ID_LEN], unsigned field,
    const char *text, Haven__Consent__V1__SealedField *f)
{
	const char *name = vault_field_name(field);
	uint8_t     aad[64];
	size_t      aadlen, n = strlen(text);
	hv_status   st = HV_RESOURCE_EXHAUSTED;

	haven__consent__v1__sealed_field__init(f);
	if (name == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	aadlen   = field_aad(id, name, aad);
	f->field = field;
	if ((f->nonce.data = malloc(CRYPTO_AEAD_NONCE_LEN)) == NULL ||
	    (f->ciphertext.data = malloc(n > 0 ? n : 1)) == NULL ||
	    (f->tag.data = malloc(CRYPTO_AEAD_TAG_LEN)) == NULL) {
		goto out;
	}
	f->nonce.len      = CRYPTO_AEAD_NONCE_LEN;
	f->ciphertext.len = n;
	f->tag.len        = CRYPTO_AEAD_TAG_LEN;
	if ((st = crypto_random(f->nonce.data, CRYPTO_AEAD_NONCE_LEN)) != HV_OK) {
		goto out;
	}
	st = crypto_aead_encrypt(f->ciphertext.data, f->tag.data, dk, f->nonce.data, aad, aadlen,
	    text, n);
out:
	if (st != HV_OK) {
		vault_field_free(f);
	}
	return (st);
}

hv_status
vault_unseal(const uint8_t dk[DATA_KEY_LEN], const uint8_t id[CONSENT_ID_LEN],
    const Haven__Consent__V1__SealedField *f, char **text)
{
	const char *name = vault_field_name(f->field);
	uint8_t     aad[64];
	size_t      aadlen;
	char       *out;

	*text = NULL;
	if (name == NULL || f->nonce.len != CRYPTO_AEAD_NONCE_LEN ||
	    f->tag.len != CRYPTO_AEAD_TAG_LEN || f->ciphertext.len > 64 * 1024) {
		return (HV_DATA_LOSS);
	}
	if ((out = malloc(f->ciphertext.len + 1)) == NULL) {
		return (HV_RESOURCE_EXHAUSTED);
	}
	aadlen = field_aad(id, name, aad);
	if (crypto_aead_decrypt((uint8_t *) out, dk, f->nonce.data, f->tag.data, aad, aadlen,
	        f->ciphertext.data, f->ciphertext.len) != HV_OK) {
		free(out); /* decrypt wiped it */
		return (HV_DATA_LOSS);
	}
	out[f->ciphertext.len] = '\0';
	*text                  = out;
	return (HV_OK);
}

hv_status
vault_sign(consent_service *cs, const void *msg, size_t n, uint8_t sig[CRYPTO_ED25519_SIG_LEN])
{
	return (crypto_ed25519_sign(sig, cs->cs_sign_secret, msg, n));
}

/* ---- rotation ------------------------------------------------------------------------- */

typedef struct rewrap_job {
	consent_service *rj_cs;
	uint64_t         rj_old;   /* the generation the store names before */
	meta_job         rj_meta;  /* and after */
	uint64_t         rj_count; /* out */
} rewrap_job;

/* One re-wrapped record, packed, to put once the cursor is closed. */
typedef struct rewrap_item {
	uint8_t  ri_key[CONSENT_ID_LEN];
	uint8_t *ri_val;
	size_t   ri_len;
} rewrap_item;

/*
 * Re-wraps the data keys of up to REWRAP_CHUNK subjects with ids >= from (inclusive when
 * *first, else exclusive); *more is set when more may follow and from is advanced.
 */
static hv_status
rewrap_chunk(rewrap_job *j, store_txn *txn, uint8_t from[CONSENT_ID_LEN], bool *first, bool *more)
{
	consent_service *cs    = j->rj_cs;
	rewrap_item     *items = NULL;
	store_cursor    *c     = NULL;
	size_t           n     = 0;
	const void      *k, *v;
	size_t           kl, vl;
	uint8_t          dk[DATA_KEY_LEN];
	uint8_t          wrapped[WRAPPED_LEN];
	hv_status        st = HV_RESOURCE_EXHAUSTED, rc;

	*more = false;
	if ((items = calloc(REWRAP_CHUNK, sizeof(*items))) == NULL) {
		goto out;
	}
	if ((st = store_cursor_open(txn, cs->cs_subjects, &c)) != HV_OK) {
		goto out;
	}
	rc = store_cursor_seek(c, from, CONSENT_ID_LEN, &k, &kl, &v, &vl);
	if (rc == HV_OK && !*first && kl == CONSENT_ID_LEN && memcmp(k, from, kl) == 0) {
		rc = store_cursor_next(c, &k, &kl, &v, &vl);
	}
	for (; rc == HV_OK; rc = store_cursor_next(c, &k, &kl, &v, &vl)) {
		Haven__Consent__V1__SubjectRecord *r;
		Haven__Consent__V1__SubjectRecord  w;

		if (n == REWRAP_CHUNK) {
			*more = true;
			break;
		}
		if (kl != CONSENT_ID_LEN ||
		    (r = haven__consent__v1__subject_record__unpack(NULL, vl, v)) == NULL) {
			st = HV_DATA_LOSS;
			goto out;
		}
		if (r->wrapped_key.len == 0) {
			haven__consent__v1__subject_record__free_unpacked(r, NULL);
			continue; /* a tombstone: nothing to wrap */
		}
		st = vault_unwrap(cs, r->kek_generation, k, r->wrapped_key.data, r->wrapped_key.len,
		    dk);
		if (st == HV_OK) {
			st = vault_wrap(cs, j->rj_meta.mj_gen, k, dk, wrapped);
		}
		crypto_wipe(dk, sizeof(dk));
		if (st != HV_OK) {
			haven__consent__v1__subject_record__free_unpacked(r, NULL);
			goto out;
		}
		w                  = *r;
		w.kek_generation   = j->rj_meta.mj_gen;
		w.wrapped_key.data = wrapped;
		w.wrapped_key.len  = WRAPPED_LEN;
		memcpy(items[n].ri_key, k, CONSENT_ID_LEN);
		items[n].ri_len = haven__consent__v1__subject_record__get_packed_size(&w);
		if ((items[n].ri_val = malloc(items[n].ri_len)) == NULL) {
			haven__consent__v1__subject_record__free_unpacked(r, NULL);
			st = HV_RESOURCE_EXHAUSTED;
			goto out;
		}
		haven__consent__v1__subject_record__pack(&w, items[n].ri_val);
		haven__consent__v1__subject_record__free_unpacked(r, NULL);
		n++;
	}
	if (rc != HV_OK && rc != HV_NOT_FOUND) {
		st = rc;
		goto out;
	}
	store_cursor_close(c);
	c = NULL;
	for (size_t i = 0; i < n; i++) {
		if ((st = store_put(txn, cs->cs_subjects, items[i].ri_key, CONSENT_ID_LEN,
		         items[i].ri_val, items[i].ri_len)) != HV_OK) {
			goto out;
		}
	}
	j->rj_count += n;
	if (n > 0) {
		memcpy(from, items[n - 1].ri_key, CONSENT_ID_LEN);
		*first = false;
	}
	st = HV_OK;
out:
	store_cursor_close(c);
	crypto_wipe(wrapped, sizeof(wrapped));
	if (items != NULL) {
		for (size_t i = 0; i < REWRAP_CHUNK; i++) {
			free(items[i].ri_val);
		}
		free(items);
	}
	return (st);
}

static hv_status
rewrap_fn(store_txn *txn, void *arg)
{
	rewrap_job *j = arg;
	uint8_t     from[CONSENT_ID_LEN];
	bool        first = true, more = true;
	uint64_t    gen;
	hv_status   st;

	j->rj_count = 0;
	if ((st = vault_generation_txn(j->rj_cs, txn, &gen)) != HV_OK) {
		return (st);
	}
	if (gen != j->rj_old) {
		return (HV_ABORTED); /* another rotation got there first */
	}
	memset(from, 0, sizeof(from));
	while (more) {
		if ((st = rewrap_chunk(j, txn, from, &first, &more)) != HV_OK) {
			return (st);
		}
	}
	return (meta_put(&j->rj_meta, txn, false));
}

hv_status
vault_rotate(consent_service *cs, int64_t min_age_ms, uint64_t *genp, uint64_t *countp)
{
	char       kpath[PATH_MAX + 16], npath[PATH_MAX + 16];
	rewrap_job j;
	kek_file   next;
	uint8_t    check[KEK_CHECK_LEN];
	uint8_t    old[KEK_LEN];
	uint64_t   gen        = 0;
	int64_t    rotated_at = 0;
	bool       have;
	int        lock = -1;
	hv_status  st   = HV_UNAVAILABLE;

	memset(&j, 0, sizeof(j));
	memset(&next, 0, sizeof(next));
	key_path(cs, KEK_FILE, kpath, sizeof(kpath));
	key_path(cs, KEK_NEW_FILE, npath, sizeof(npath));
	pthread_mutex_lock(&cs->cs_rotmtx);
	if ((lock = keys_lock(cs)) < 0) {
		goto out;
	}
	/* Another process may have rotated, or crashed rotating, since this one looked. */
	if ((st = recover(cs)) != HV_OK ||
	    (st = meta_read(cs, &have, &gen, check, &rotated_at)) != HV_OK) {
		goto out;
	}
	if (!have) {
		st = HV_DATA_LOSS;
		goto out;
	}
	if (min_age_ms > 0 && consent_now(cs) - rotated_at < min_age_ms) {
		st = HV_OK;
		goto out;
	}
	/* Refuse before writing anything when the current key is not at hand. */
	if ((st = kek_get(cs, gen, old)) != HV_OK) {
		goto out;
	}
	next.kf_gen = gen + 1;
	if ((st = crypto_random(next.kf_key, KEK_LEN)) != HV_OK) {
		goto out;
	}
	if ((st = kek_write(npath, &next)) != HV_OK ||
	    (st = hv_file_sync_dir(cs->cs_keys)) != HV_OK) {
		log_error("consent: cannot write %s: %s", npath, hv_status_name(st));
		goto out;
	}
	slot_put(cs, next.kf_gen, next.kf_key);

	j.rj_cs          = cs;
	j.rj_old         = gen;
	j.rj_meta.mj_cs  = cs;
	j.rj_meta.mj_gen = next.kf_gen;
	j.rj_meta.mj_now = consent_now(cs);
	kek_check(next.kf_key, j.rj_meta.mj_check);
	st = store_write(cs->cs_store, rewrap_fn, &j);
	if (st != HV_OK) {
		log_error("consent: key rotation to generation %llu failed: %s",
		    (unsigned long long) next.kf_gen, hv_status_name(st));
		if (st != HV_UNAVAILABLE) {
			/* Certainly not committed: the new key is not needed. After UNAVAILABLE
			 * the commit may have happened; the next open decides. */
			slot_drop(cs, next.kf_gen, next.kf_gen + 1);
			shred_fd(open_for_shred(npath));
			unlink(npath);
			(void) hv_file_sync_dir(cs->cs_keys);
		}
		goto out;
	}
	/* Committed: the old key is useless to the store and must not survive anywhere. */
	if ((st = kek_replace(cs, npath, kpath)) != HV_OK) {
		log_error("consent: cannot rename %s: %s (the next start finishes the rotation)",
		    npath, hv_status_name(st));
		goto out;
	}
	slot_drop(cs, 1, next.kf_gen);
	log_info("consent: key-encryption key rotated to generation %llu (%llu data keys)",
	    (unsigned long long) next.kf_gen, (unsigned long long) j.rj_count);
	gen = next.kf_gen;
	st  = HV_OK;
out:
	keys_unlock(lock);
	pthread_mutex_unlock(&cs->cs_rotmtx);
	crypto_wipe(&next, sizeof(next));
	crypto_wipe(old, sizeof(old));
	if (genp != NULL) {
		*genp = gen;
	}
	if (countp != NULL) {
		*countp = j.rj_count;
	}
	return (st);
}
