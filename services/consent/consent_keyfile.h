/*
 * consent_keyfile.h - keyfile.c: the vault's files in DATA_DIR/keys. Stands on
 * consent_base.h only.
 */
#ifndef HAVEN_CONSENT_KEYFILE_H
#define HAVEN_CONSENT_KEYFILE_H

#include "consent_base.h"

/* A key file's contents. */
typedef struct kek_file {
	uint64_t kf_gen;
	uint8_t  kf_key[KEK_LEN];
} kek_file;

/* DATA_DIR/keys/name into out. */
void key_path(consent_service *cs, const char *name, char *out, size_t outsz);

/* Overwrites a file's bytes in place with zeros through fd and syncs it, so that the key it
 * held is not left in the blocks the file system frees when the file goes. Best effort: a
 * copy-on-write file system or an SSD's wear levelling may keep old blocks anyway. Closes fd;
 * -1 is allowed. open_for_shred opens path for it (-1 when it cannot). */
void shred_fd(int fd);
int  open_for_shred(const char *path);

/* Puts npath (keys/kek.new) in the place of kpath (keys/kek): the rename first, so that
 * keys/kek always holds a whole key for readers in other processes, then the old file's blocks
 * are overwritten through a descriptor opened before it was unlinked. */
hv_status kek_replace(consent_service *cs, const char *npath, const char *kpath);

/* Reads a key file: HV_NOT_FOUND when missing, HV_PERMISSION_DENIED when open to others,
 * HV_DATA_LOSS when malformed (*out wiped then). */
hv_status kek_read(const char *path, kek_file *out);
/* Creates a key file (0600, synced; not its directory). */
hv_status kek_write(const char *path, const kek_file *k);
/* The check value of a key the store keeps beside its generation (an HMAC, not the key). */
void kek_check(const uint8_t key[KEK_LEN], uint8_t out[KEK_CHECK_LEN]);

/* Takes the key directory's flock (exclusive); returns the descriptor or -1 (logged).
 * keys_unlock releases it; -1 allowed. */
int  keys_lock(consent_service *cs);
void keys_unlock(int fd);

#endif
