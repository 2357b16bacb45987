/*
 * fuzz_seeds.c - writes the generated part of the seed corpora (fuzz/corpus/<harness>/seed-*)
 * from the same code the node runs: `fuzz_seeds DIR` writes DIR/rpc, DIR/receipt, DIR/audit.
 *
 *   rpc      a Request envelope for every method of every service, its payload the method's
 *            request type with every field set (reflection over the protobuf-c descriptors:
 *            strings, bytes, numbers, enums, repeated fields, the first member of each oneof,
 *            nested messages), as a client sends it; plus envelopes with metadata and an
 *            idempotency key.
 *   receipt  consent receipts as GetReceipt returns them (receipt_json, indented, signed with
 *            FUZZ_RECEIPT_KEY_PEM), one tampered and one without a signature.
 *   audit    audit.log values as audit.c encodes them (keyed and legacy versions).
 *   pbjson   the same filled requests as the converter writes them (pbjson_encode), each after
 *            the byte that makes fuzz_pbjson read it as its type.
 *
 * Not a fuzzer; scripts/fuzz.sh --seeds runs it. Output names are stable, so a run over an
 * existing corpus rewrites the same files.
 */
#include "fuzz_util.h"

#include "consent_receipt.h"
#include "haven/crypto.h"
#include "haven/pbfield.h"
#include "haven/pbjson.h"

#include "haven/admin/v1/admin.pb-c.h"
#include "haven/auth/v1/auth.pb-c.h"
#include "haven/capacity/v1/capacity.pb-c.h"
#include "haven/consent/v1/audit.pb-c.h"
#include "haven/consent/v1/consent.pb-c.h"
#include "haven/diag/v1/diag.pb-c.h"
#include "haven/health/v1/health.pb-c.h"
#include "haven/referral/v1/referral.pb-c.h"
#include "haven/rpc/v1/rpc.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FILL_DEPTH 4
#define ALLOCS_MAX 100000

static void  *allocs[ALLOCS_MAX];
static size_t nallocs;

static void *
grab(size_t n)
{
	void *p = calloc(1, n > 0 ? n : 1);

	if (p == NULL || nallocs == ALLOCS_MAX) {
		abort();
	}
	allocs[nallocs++] = p;
	return (p);
}

static void
release_all(void)
{
	while (nallocs > 0) {
		free(allocs[--nallocs]);
	}
}

static void
put_file(const char *dir, const char *sub, const char *name, const void *data, size_t len)
{
	char  path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/seed-%s", dir, sub, name);
	if ((f = fopen(path, "wb")) == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static ProtobufCMessage *fill(const ProtobufCMessageDescriptor *d, unsigned depth);

/* One value of field f's type at p. */
static void
fill_value(const ProtobufCFieldDescriptor *f, void *p, unsigned depth)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		*(char **) p = "fuzz-seed";
		break;
	case PROTOBUF_C_TYPE_BYTES:
		((ProtobufCBinaryData *) p)->data = (uint8_t *) "\x01\x02\x03";
		((ProtobufCBinaryData *) p)->len  = 3;
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		*(ProtobufCMessage **) p =
		    depth < FILL_DEPTH ? fill(f->descriptor, depth + 1) : NULL;
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *e = f->descriptor;
		*(int *) p = e->n_values > 1 ? e->values[1].value : e->values[0].value;
		break;
	}
	case PROTOBUF_C_TYPE_BOOL:
		*(protobuf_c_boolean *) p = 1;
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		*(float *) p = 1.5f;
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		*(double *) p = 1.5;
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		*(uint64_t *) p = 1700000000000ull;
		break;
	default: /* the 32-bit integers */
		*(uint32_t *) p = 7;
		break;
	}
}

/* A message of type d with every field set (one entry in each repeated field, the first
 * member of each oneof). */
static ProtobufCMessage *
fill(const ProtobufCMessageDescriptor *d, unsigned depth)
{
	ProtobufCMessage *m    = grab(d->sizeof_message);
	char             *base = (char *) m;

	protobuf_c_message_init(d, m);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			void *arr = grab(pbfield_size(f->type));
			fill_value(f, arr, depth);
			if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(void **) arr == NULL) {
				continue;
			}
			*(size_t *) (base + f->quantifier_offset) = 1;
			*(void **) (base + f->offset)             = arr;
			continue;
		}
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
			uint32_t *which = (uint32_t *) (base + f->quantifier_offset);
			if (*which != 0) {
				continue;
			}
			*which = f->id;
		} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
		    f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
			*(protobuf_c_boolean *) (base + f->quantifier_offset) = 1;
		}
		fill_value(f, base + f->offset, depth);
	}
	return (m);
}

static void
put_envelope(const char *dir, const char *name, Haven__Rpc__V1__Request *env)
{
	size_t   n   = haven__rpc__v1__request__get_packed_size(env);
	uint8_t *buf = grab(n);

	haven__rpc__v1__request__pack(env, buf);
	put_file(dir, "rpc", name, buf, n);
}

/* The JSON form of req after the byte k that makes fuzz_pbjson read it as req's type. */
static void
pbjson_seed(const char *dir, const char *name, const ProtobufCMessage *req, unsigned k)
{
	char    *text;
	size_t   n;
	uint8_t *buf;

	if (k > 255 || fuzz_request_type(k) != req->descriptor ||
	    pbjson_encode(req, NULL, &text, &n, NULL, 0) != HV_OK) {
		abort();
	}
	buf    = grab(n + 1);
	buf[0] = (uint8_t) k;
	memcpy(buf + 1, text, n);
	free(text);
	put_file(dir, "pbjson", name, buf, n + 1);
}

static void
rpc_seeds(const char *dir, const ProtobufCServiceDescriptor *sd, unsigned *k)
{
	for (unsigned i = 0; i < sd->n_methods; i++, (*k)++) {
		const ProtobufCMethodDescriptor *md  = &sd->methods[i];
		Haven__Rpc__V1__Request          env = HAVEN__RPC__V1__REQUEST__INIT;
		ProtobufCMessage                *req = fill(md->input, 0);
		size_t                           n   = protobuf_c_message_get_packed_size(req);
		char                             method[256], name[300];

		snprintf(method, sizeof(method), "%s/%s", sd->name, md->name);
		env.request_id   = i + 1;
		env.method       = method;
		env.timeout_ms   = 10000;
		env.payload.data = grab(n);
		env.payload.len  = protobuf_c_message_pack(req, env.payload.data);
		snprintf(name, sizeof(name), "%s.%s", sd->short_name, md->name);
		put_envelope(dir, name, &env);
		pbjson_seed(dir, name, req, *k);
	}
}

static void
rpc_extra_seeds(const char *dir)
{
	Haven__Rpc__V1__Request   env    = HAVEN__RPC__V1__REQUEST__INIT;
	Haven__Rpc__V1__Metadata  md     = HAVEN__RPC__V1__METADATA__INIT;
	Haven__Rpc__V1__Metadata *mds[1] = { &md };

	env.request_id      = 99;
	env.method          = "haven.health.v1.Health/Check";
	env.idempotency_key = "00000000-fuzz-seed-key";
	md.key              = "authorization";
	md.value            = "Bearer v1.fuzz.seed.token";
	env.metadata        = mds;
	env.n_metadata      = 1;
	put_envelope(dir, "metadata", &env);
	env.method = "haven.nothing.v1.Nothing/Call";
	put_envelope(dir, "unknown-method", &env);
}

static void
receipt_seeds(const char *dir)
{
	static const struct {
		const char *name;
		int64_t     withdrawn;
		size_t      npurposes, nrecipients, ncategories;
		const char *language;
	} cases[] = {
		{ "granted", 0, 2, 1, 2, "ro" },
		{ "withdrawn", 1700000500000, 1, 0, 1, "nl" },
		{ "many", 0, 4, 3, 5, "pt-BR" },
		{ "empty-lists", 0, 0, 0, 0, "" },
	};
	uint8_t secret[CRYPTO_ED25519_SECRET_LEN], pub[CRYPTO_ED25519_PUBLIC_LEN];
	uint8_t md[CRYPTO_SHA256_LEN], sig[CRYPTO_ED25519_SIG_LEN];
	char    key_id[CONSENT_KEY_ID_HEX];

	if (crypto_ed25519_secret(FUZZ_RECEIPT_KEY_PEM, strlen(FUZZ_RECEIPT_KEY_PEM), secret) !=
	        HV_OK ||
	    crypto_ed25519_public(FUZZ_RECEIPT_KEY_PEM, strlen(FUZZ_RECEIPT_KEY_PEM), pub) !=
	        HV_OK) {
		abort();
	}
	crypto_sha256(md, pub, sizeof(pub));
	for (size_t i = 0; i < sizeof(md); i++) {
		snprintf(key_id + 2 * i, 3, "%02x", md[i]);
	}
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		Haven__Consent__V1__ConsentRecord c = HAVEN__CONSENT__V1__CONSENT_RECORD__INIT;
		Haven__Consent__V1__Purpose       purposes[4]   = { 1, 2, 3, 4 };
		Haven__Consent__V1__Category      categories[5] = { 1, 2, 3, 4, 5 };
		char   *recipients[3] = { "shelter-rdam", "legal-aid-zwb", "care-nn" };
		char   *text;
		json_t *r;

		c.id                 = "0123456789abcdef0123456789abcdef";
		c.subject            = "subj-0123456789abcdef";
		c.n_purposes         = cases[k].npurposes;
		c.purposes           = purposes;
		c.n_recipients       = cases[k].nrecipients;
		c.recipients         = recipients;
		c.accepting_provider = k % 2 == 0;
		c.n_categories       = cases[k].ncategories;
		c.categories         = categories;
		c.given_by           = 1;
		c.method             = 3;
		c.language           = (char *) cases[k].language;
		c.valid_from_ms      = 1700000000000;
		c.expires_ms         = 1800000000000;
		c.withdrawn_at_ms    = cases[k].withdrawn;
		c.recorded_by        = "fairwork-ngo";
		c.recorded_at_ms     = 1700000000123;
		c.version            = k + 1;
		c.key_id             = key_id;
		if ((r = receipt_json(&c, false)) == NULL ||
		    (text = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)) ==
		        NULL ||
		    crypto_ed25519_sign(sig, secret, text, strlen(text)) != HV_OK) {
			abort();
		}
		json_decref(r);
		free(text);
		c.signature.data = sig;
		c.signature.len  = sizeof(sig);
		if ((r = receipt_json(&c, true)) == NULL ||
		    (text = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII)) ==
		        NULL) {
			abort();
		}
		put_file(dir, "receipt", cases[k].name, text, strlen(text));
		if (consent_receipt_verify(text, strlen(text), pub, NULL, 0) != HV_OK) {
			abort(); /* a seed that does not verify would leave the signature check
			            unfuzzed */
		}
		if (k == 0) {
			char *at = strstr(text, "\"version\": 1");
			if (at != NULL) {
				at[11] =
				    '2'; /* a changed field: the signature no longer covers it */
			}
			put_file(dir, "receipt", "tampered", text, strlen(text));
			json_object_del(r, "signature");
			free(text);
			if ((text = json_dumps(r, JSON_COMPACT)) == NULL) {
				abort();
			}
			put_file(dir, "receipt", "unsigned", text, strlen(text));
		}
		json_decref(r);
		free(text);
	}
	crypto_wipe(secret, sizeof(secret));
}

static size_t
put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	p[0] = (uint8_t) n;
	memcpy(p + 1, s, n);
	return (n + 1);
}

static size_t
put_be(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++) {
		p[i] = (uint8_t) (v >> (8 * (bytes - 1 - i)));
	}
	return (bytes);
}

/* An audit.log value (audit.h's encoding). */
static void
audit_seed(const char *dir, const char *name, unsigned version, uint64_t seq, const char *org,
    const char *method, const char *subject, const char *purpose, int32_t result)
{
	uint8_t v[1024];
	size_t  o = 0;

	v[o++] = (uint8_t) version;
	o += put_be(v + o, seq, 8);
	o += put_be(v + o, 1700000000000ull + seq, 8);
	o += put_be(v + o, 1u << 4, 4);
	o += put_str(v + o, org);
	o += put_str(v + o, method);
	o += put_str(v + o, subject);
	o += put_str(v + o, purpose);
	o += put_be(v + o, (uint32_t) result, 4);
	memset(v + o, (int) seq, 64); /* prev_hash, hash */
	o += 64;
	put_file(dir, "audit", name, v, o);
}

static void
audit_seeds(const char *dir)
{
	audit_seed(dir, "check", 2, 1, "fairwork-ngo", "haven.consent.v1.Consent/Check",
	    "subj-0123456789abcdef", "referral", 0);
	audit_seed(dir, "grant", 2, 2, "fairwork-ngo", "haven.consent.v1.Consent/Grant",
	    "subj-0123456789abcdef", "", 0);
	audit_seed(dir, "denied", 2, 3, "shelter-rdam", "haven.consent.v1.Subjects/Get",
	    "subj-fedcba9876543210", "share-with-provider", 7);
	audit_seed(dir, "operator", 2, 4, "", "haven.admin.v1.Admin/EraseSubject", "subj-1", "", 0);
	audit_seed(dir, "legacy", 1, 5, "outreach-nh", "haven.consent.v1.Consent/Withdraw",
	    "subj-2", "referral", 0);
}

int
main(int argc, char **argv)
{
	unsigned k = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz_seeds CORPUS_DIR\n");
		return (2);
	}
	for (size_t i = 0; i < fuzz_nservices; i++) {
		rpc_seeds(argv[1], fuzz_services[i], &k);
	}
	rpc_extra_seeds(argv[1]);
	receipt_seeds(argv[1]);
	audit_seeds(argv[1]);
	release_all();
	return (0);
}
