/*
 * store_data.c - reading and writing inside a store transaction: keys and values, protobuf
 * messages, cursors, counting and clearing a table. Every LMDB error passes store_txn_note,
 * so a write transaction remembers what it means for the commit (store.h).
 */
#include "store_internal.h"

#include "haven/clock.h"
#include "haven/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static hv_status
check_key(const void *key, size_t klen)
{
	if (key == NULL || klen == 0 || klen > STORE_KEY_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	return (HV_OK);
}

/* Arguments of a put; a value may be empty (and then NULL). */
static hv_status
check_put(const store_txn *txn, const void *key, size_t klen, const void *val, size_t vlen)
{
	if (txn == NULL || check_key(key, klen) != HV_OK || (val == NULL && vlen > 0) ||
	    vlen > UINT32_MAX) {
		return (HV_INVALID_ARGUMENT);
	}
	if (!txn->t_write) {
		return (HV_FAILED_PRECONDITION);
	}
	return (HV_OK);
}

hv_status
store_get(store_txn *txn, store_table t, const void *key, size_t klen, const void **val,
    size_t *vlen)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_val   k;
	MDB_val   v;

	if (val != NULL) {
		*val = NULL;
	}
	if (vlen != NULL) {
		*vlen = 0;
	}
	if (txn == NULL || check_key(key, klen) != HV_OK) {
		goto out;
	}
	k.mv_size = klen;
	k.mv_data = (void *) key;
	if ((rv = store_txn_note(txn, mdb_get(txn->t_txn, t, &k, &v))) != HV_OK) {
		goto out;
	}
	if (val != NULL) {
		*val = v.mv_data;
	}
	if (vlen != NULL) {
		*vlen = v.mv_size;
	}
out:
	return (rv);
}

static hv_status
put_flags(store_txn *txn, store_table t, const void *key, size_t klen, const void *val, size_t vlen,
    unsigned flags)
{
	hv_status rv;
	MDB_val   k;
	MDB_val   v;

	if ((rv = check_put(txn, key, klen, val, vlen)) != HV_OK) {
		goto out;
	}
	k.mv_size = klen;
	k.mv_data = (void *) key;
	v.mv_size = vlen;
	v.mv_data = (void *) val;
	rv        = store_txn_note(txn, mdb_put(txn->t_txn, t, &k, &v, flags));
out:
	return (rv);
}

hv_status
store_put(store_txn *txn, store_table t, const void *key, size_t klen, const void *val, size_t vlen)
{
	return (put_flags(txn, t, key, klen, val, vlen, 0));
}

hv_status
store_put_new(store_txn *txn, store_table t, const void *key, size_t klen, const void *val,
    size_t vlen)
{
	return (put_flags(txn, t, key, klen, val, vlen, MDB_NOOVERWRITE));
}

hv_status
store_append(store_txn *txn, store_table t, const void *key, size_t klen, const void *val,
    size_t vlen)
{
	return (put_flags(txn, t, key, klen, val, vlen, MDB_APPEND));
}

hv_status
store_del(store_txn *txn, store_table t, const void *key, size_t klen)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_val   k;

	if (txn == NULL || check_key(key, klen) != HV_OK) {
		goto out;
	}
	if (!txn->t_write) {
		rv = HV_FAILED_PRECONDITION;
		goto out;
	}
	k.mv_size = klen;
	k.mv_data = (void *) key;
	rv        = store_txn_note(txn, mdb_del(txn->t_txn, t, &k, NULL));
out:
	return (rv);
}

static bool
msg_ok(const ProtobufCMessage *msg)
{
	return (msg != NULL && msg->descriptor != NULL &&
	    msg->descriptor->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
}

hv_status
store_put_msg(store_txn *txn, store_table t, const void *key, size_t klen,
    const ProtobufCMessage *msg)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	size_t    len;
	MDB_val   k;
	MDB_val   v;

	if (!msg_ok(msg)) {
		goto out;
	}
	len = protobuf_c_message_get_packed_size(msg);
	if ((rv = check_put(txn, key, klen, "", len)) != HV_OK) {
		goto out;
	}
	/* MDB_RESERVE: LMDB makes room in the map and we pack straight into it. */
	k.mv_size = klen;
	k.mv_data = (void *) key;
	v.mv_size = len;
	v.mv_data = NULL;
	if ((rv = store_txn_note(txn, mdb_put(txn->t_txn, t, &k, &v, MDB_RESERVE))) != HV_OK) {
		goto out;
	}
	if (protobuf_c_message_pack(msg, v.mv_data) != len) {
		/* The reserved bytes hold garbage now: the transaction must not commit. */
		if (txn->t_err == HV_OK) {
			txn->t_err = HV_INTERNAL;
		}
		rv = HV_INTERNAL;
		goto out;
	}
	rv = HV_OK;
out:
	return (rv);
}

hv_status
store_get_msg(store_txn *txn, store_table t, const void *key, size_t klen,
    const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *alloc, ProtobufCMessage **out)
{
	hv_status   rv = HV_INVALID_ARGUMENT;
	const void *v;
	size_t      vlen;

	if (out != NULL) {
		*out = NULL;
	}
	if (out == NULL || desc == NULL || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC) {
		goto out;
	}
	if ((rv = store_get(txn, t, key, klen, &v, &vlen)) != HV_OK) {
		goto out;
	}
	if ((*out = protobuf_c_message_unpack(desc, alloc, vlen, v)) == NULL) {
		rv = HV_DATA_LOSS;
		goto out;
	}
	rv = HV_OK;
out:
	return (rv);
}

hv_status
store_cursor_open(store_txn *txn, store_table t, store_cursor **out)
{
	hv_status     rv = HV_INVALID_ARGUMENT;
	store_cursor *c  = NULL;

	if (out != NULL) {
		*out = NULL;
	}
	if (txn == NULL || out == NULL) {
		goto out;
	}
	rv = HV_RESOURCE_EXHAUSTED;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		goto out;
	}
	if ((rv = store_txn_note(txn, mdb_cursor_open(txn->t_txn, t, &c->c_cur))) != HV_OK) {
		goto out;
	}
	c->c_txn  = txn;
	c->c_next = txn->t_cursors;
	if (c->c_next != NULL) {
		c->c_next->c_prev = c;
	}
	txn->t_cursors = c;
	*out           = c;
	c              = NULL;
	rv             = HV_OK;
out:
	free(c);
	return (rv);
}

static hv_status
cursor_get(store_cursor *c, MDB_val *mk, MDB_cursor_op op, const void **k, size_t *kl,
    const void **v, size_t *vl)
{
	hv_status rv;
	MDB_val   mv;

	if ((rv = store_txn_note(c->c_txn, mdb_cursor_get(c->c_cur, mk, &mv, op))) != HV_OK) {
		return (rv);
	}
	if (k != NULL) {
		*k = mk->mv_data;
	}
	if (kl != NULL) {
		*kl = mk->mv_size;
	}
	if (v != NULL) {
		*v = mv.mv_data;
	}
	if (vl != NULL) {
		*vl = mv.mv_size;
	}
	return (HV_OK);
}

static void
cursor_clear(const void **k, size_t *kl, const void **v, size_t *vl)
{
	if (k != NULL) {
		*k = NULL;
	}
	if (kl != NULL) {
		*kl = 0;
	}
	if (v != NULL) {
		*v = NULL;
	}
	if (vl != NULL) {
		*vl = 0;
	}
}

hv_status
store_cursor_seek(store_cursor *c, const void *key, size_t klen, const void **k, size_t *kl,
    const void **v, size_t *vl)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_val   mk;

	cursor_clear(k, kl, v, vl);
	if (c == NULL || (klen > 0 && check_key(key, klen) != HV_OK)) {
		goto out;
	}
	if (c->c_txn == NULL) {
		rv = HV_FAILED_PRECONDITION; /* its transaction has ended */
		goto out;
	}
	mk.mv_size = klen;
	mk.mv_data = (void *) key;
	rv         = cursor_get(c, &mk, klen == 0 ? MDB_FIRST : MDB_SET_RANGE, k, kl, v, vl);
out:
	return (rv);
}

hv_status
store_cursor_next(store_cursor *c, const void **k, size_t *kl, const void **v, size_t *vl)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_val   mk;

	cursor_clear(k, kl, v, vl);
	if (c == NULL) {
		goto out;
	}
	if (c->c_txn == NULL) {
		rv = HV_FAILED_PRECONDITION;
		goto out;
	}
	mk.mv_size = 0;
	mk.mv_data = NULL;
	rv         = cursor_get(c, &mk, MDB_NEXT, k, kl, v, vl);
out:
	return (rv);
}

hv_status
store_cursor_del(store_cursor *c)
{
	hv_status rv = HV_INVALID_ARGUMENT;

	if (c == NULL) {
		goto out;
	}
	if (c->c_txn == NULL || !c->c_txn->t_write) {
		rv = HV_FAILED_PRECONDITION;
		goto out;
	}
	rv = store_txn_note(c->c_txn, mdb_cursor_del(c->c_cur, 0));
out:
	return (rv);
}

void
store_cursor_close(store_cursor *c)
{
	if (c == NULL) {
		return;
	}
	if (c->c_txn != NULL) {
		mdb_cursor_close(c->c_cur);
		if (c->c_prev != NULL) {
			c->c_prev->c_next = c->c_next;
		} else {
			c->c_txn->t_cursors = c->c_next;
		}
		if (c->c_next != NULL) {
			c->c_next->c_prev = c->c_prev;
		}
	}
	free(c);
}

hv_status
store_count(store_txn *txn, store_table t, uint64_t *out)
{
	hv_status rv = HV_INVALID_ARGUMENT;
	MDB_stat  st;

	if (out != NULL) {
		*out = 0;
	}
	if (txn == NULL || out == NULL) {
		goto out;
	}
	if ((rv = store_txn_note(txn, mdb_stat(txn->t_txn, t, &st))) != HV_OK) {
		goto out;
	}
	*out = st.ms_entries;
out:
	return (rv);
}

hv_status
store_clear(store_txn *txn, store_table t)
{
	if (txn == NULL) {
		return (HV_INVALID_ARGUMENT);
	}
	if (!txn->t_write) {
		return (HV_FAILED_PRECONDITION);
	}
	return (store_txn_note(txn, mdb_drop(txn->t_txn, t, 0)));
}
