/*
 * connect_client.c - a small Connect protocol client over libcurl (see connect_client.h).
 */
#include "connect_client.h"

#include "haven/auth.h"
#include "haven/pbjson.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cc_client {
	CURL  *cc_curl;
	char   cc_base[256];
	char  *cc_buf; /* the last answer's body */
	size_t cc_len;
	size_t cc_cap;
	FILE  *cc_rec; /* HAVEN_CONNECT_RECORD: the request being sent (cc_record_begin) */
};

static int
on_debug(CURL *curl, curl_infotype type, char *data, size_t n, void *arg)
{
	(void) curl;
	if (type == CURLINFO_HEADER_OUT || type == CURLINFO_DATA_OUT) {
		fwrite(data, 1, n, arg);
	}
	return (0);
}

void *
cc_record_begin(void *curl)
{
	static atomic_uint seq;
	const char        *dir = getenv("HAVEN_CONNECT_RECORD");
	char               path[512];
	FILE              *f;

	if (dir == NULL || dir[0] == '\0') {
		return (NULL);
	}
	snprintf(path, sizeof(path), "%s/%d-%u.http", dir, (int) getpid(),
	    atomic_fetch_add(&seq, 1));
	if ((f = fopen(path, "w")) != NULL) {
		curl_easy_setopt(curl, CURLOPT_DEBUGFUNCTION, on_debug);
		curl_easy_setopt(curl, CURLOPT_DEBUGDATA, f);
		curl_easy_setopt(curl, CURLOPT_VERBOSE, 1L);
	}
	return (f);
}

void
cc_record_end(void *curl, void *rec)
{
	if (rec != NULL) {
		curl_easy_setopt(curl, CURLOPT_VERBOSE, 0L);
		fclose(rec);
	}
}

static size_t
on_body(char *p, size_t sz, size_t n, void *arg)
{
	cc_client *c = arg;
	size_t     k = sz * n;

	if (c->cc_len + k + 1 > c->cc_cap) {
		size_t cap = (c->cc_len + k + 1) * 2;
		char  *b   = realloc(c->cc_buf, cap);
		if (b == NULL) {
			return (0);
		}
		c->cc_buf = b;
		c->cc_cap = cap;
	}
	memcpy(c->cc_buf + c->cc_len, p, k);
	c->cc_len += k;
	c->cc_buf[c->cc_len] = '\0';
	return (k);
}

hv_status
cc_open(cc_client **out, const char *base, const char *ca_file)
{
	cc_client *c;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->cc_curl = curl_easy_init()) == NULL) {
		free(c);
		return (HV_RESOURCE_EXHAUSTED);
	}
	snprintf(c->cc_base, sizeof(c->cc_base), "%s", base);
	curl_easy_setopt(c->cc_curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->cc_curl, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->cc_curl, CURLOPT_NOSIGNAL, 1L);
	if (ca_file != NULL) {
		curl_easy_setopt(c->cc_curl, CURLOPT_CAINFO, ca_file);
	}
	*out = c;
	return (HV_OK);
}

void
cc_close(cc_client *c)
{
	if (c != NULL) {
		curl_easy_cleanup(c->cc_curl);
		free(c->cc_buf);
		free(c);
	}
}

/* The status of a Connect error body; HV_UNKNOWN when it is not one. */
static hv_status
error_of(const char *body, size_t len, char *err, size_t errsz)
{
	json_t     *o    = json_loadb(body, len, 0, NULL);
	const char *code = NULL, *msg = "";
	hv_status   st = HV_UNKNOWN;

	if (o != NULL && json_unpack(o, "{s:s, s?:s}", "code", &code, "message", &msg) == 0) {
		for (int i = 1; i <= HV_STATUS_MAX; i++) {
			/* hv_status_name gives "PERMISSION_DENIED"; Connect: "permission_denied",
			 * and "canceled" for CANCELLED. */
			char        want[64];
			const char *n = hv_status_name(i);
			size_t      k;
			for (k = 0; n[k] != '\0' && k + 1 < sizeof(want); k++) {
				want[k] =
				    (char) (n[k] >= 'A' && n[k] <= 'Z' ? n[k] - 'A' + 'a' : n[k]);
			}
			want[k] = '\0';
			if (strcmp(want, code) == 0 ||
			    (i == HV_CANCELLED && strcmp(code, "canceled") == 0)) {
				st = (hv_status) i;
			}
		}
	}
	if (err != NULL && errsz > 0) {
		snprintf(err, errsz, "%s", msg != NULL ? msg : "");
	}
	json_decref(o);
	return (st);
}

hv_status
cc_call(cc_client *c, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, const char *token,
    bool json, const char *idempotency_key, uint32_t timeout_ms, long *http_status, char *err,
    size_t errsz)
{
	struct curl_slist *h = NULL;
	char               url[512], line[AUTH_TOKEN_MAX + 64];
	char              *body   = NULL;
	size_t             len    = 0;
	long               status = 0;
	hv_status          st     = HV_RESOURCE_EXHAUSTED;
	CURLcode           cr;

	*reply = NULL;
	if (http_status != NULL) {
		*http_status = 0;
	}
	if (err != NULL && errsz > 0) {
		err[0] = '\0';
	}
	if (json) {
		if ((st = pbjson_encode(req, NULL, &body, &len, err, errsz)) != HV_OK) {
			return (st);
		}
	} else {
		len = protobuf_c_message_get_packed_size(req);
		if ((body = malloc(len + 1)) == NULL) {
			return (HV_RESOURCE_EXHAUSTED);
		}
		protobuf_c_message_pack(req, (uint8_t *) body);
	}
	snprintf(url, sizeof(url), "%s/%s", c->cc_base, method);
	h = curl_slist_append(h,
	    json ? "Content-Type: application/json" : "Content-Type: application/proto");
	h = curl_slist_append(h, "Connect-Protocol-Version: 1");
	h = curl_slist_append(h, "Expect:");
	snprintf(line, sizeof(line), "Connect-Timeout-Ms: %u",
	    timeout_ms != 0 ? timeout_ms : 10000);
	h = curl_slist_append(h, line);
	if (token != NULL) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
		h = curl_slist_append(h, line);
	}
	if (idempotency_key != NULL) {
		snprintf(line, sizeof(line), "Idempotency-Key: %s", idempotency_key);
		h = curl_slist_append(h, line);
	}
	c->cc_len = 0;
	curl_easy_setopt(c->cc_curl, CURLOPT_URL, url);
	curl_easy_setopt(c->cc_curl, CURLOPT_POST, 1L);
	curl_easy_setopt(c->cc_curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->cc_curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	curl_easy_setopt(c->cc_curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c->cc_curl, CURLOPT_TIMEOUT_MS,
	    (long) (timeout_ms != 0 ? timeout_ms : 10000) + 1000L);
	c->cc_rec = cc_record_begin(c->cc_curl);
	cr        = curl_easy_perform(c->cc_curl);
	cc_record_end(c->cc_curl, c->cc_rec);
	c->cc_rec = NULL;
	curl_slist_free_all(h);
	free(body);
	if (cr != CURLE_OK) {
		if (err != NULL && errsz > 0) {
			snprintf(err, errsz, "HTTP: %s", curl_easy_strerror(cr));
		}
		return (HV_UNAVAILABLE);
	}
	curl_easy_getinfo(c->cc_curl, CURLINFO_RESPONSE_CODE, &status);
	if (http_status != NULL) {
		*http_status = status;
	}
	if (status != 200) {
		return (error_of(c->cc_buf != NULL ? c->cc_buf : "", c->cc_len, err, errsz));
	}
	if (json) {
		return (pbjson_decode(reply_desc, c->cc_buf != NULL ? c->cc_buf : "{}",
		    c->cc_buf != NULL ? c->cc_len : 2, NULL, NULL, reply, err, errsz));
	}
	*reply = protobuf_c_message_unpack(reply_desc, NULL, c->cc_len, (uint8_t *) c->cc_buf);
	if (*reply == NULL) {
		if (err != NULL && errsz > 0) {
			snprintf(err, errsz, "reply does not decode as %s", reply_desc->name);
		}
		return (HV_INTERNAL);
	}
	return (HV_OK);
}
