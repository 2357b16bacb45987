/*
 * keyfile.c - the vault's files in DATA_DIR/keys: key files ("HKEK" || version || be64
 * generation || key; 0600, synced), the rename that finishes a rotation and the overwriting of
 * the old key's blocks, and the flock that serialises rotations of every process sharing the
 * data directory. Calls nothing of the library above consent_base.h (vault.c explains the
 * rotation these steps make crash-safe).
 */
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

#define KEK_MAGIC        "HKEK"
#define KEK_FILE_VERSION 1
#define KEK_FILE_LEN     (4 + 1 + 8 + KEK_LEN)
#define KEK_CHECK_LABEL  "haven-kek-check"
#define LOCK_FILE        "lock"

/* ---- files ---------------------------------------------------------------------------- */

void
key_path(consent_service *cs, const char *name, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/%s", cs->cs_keys, name);
}

/* Overwrites a file's bytes in place with zeros through fd and syncs it, so that the key it
 * held is not left in the blocks the file system frees when the file goes. Best effort: a
 * copy-on-write file system or an SSD's wear levelling may keep old blocks anyway. Closes fd;
 * -1 is allowed. */
void
shred_fd(int fd)
{
	static const uint8_t zeros[256];
	struct stat          sb;
	off_t                done = 0;

	if (fd < 0) {
		return;
	}
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
		while (done < sb.st_size) {
			size_t  n = (size_t) (sb.st_size - done) < sizeof(zeros)
			     ? (size_t) (sb.st_size - done)
			     : sizeof(zeros);
			ssize_t w = pwrite(fd, zeros, n, done);
			if (w < 0) {
				if (errno == EINTR) {
					continue;
				}
				break;
			}
			done += w;
		}
		(void) fsync(fd);
	}
	close(fd);
}

int
open_for_shred(const char *path)
{
	return (open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
}

/*
 * Puts keys/kek.new in the place of keys/kek: the rename first, so that keys/kek always holds
 * a whole key for readers in other processes, then the old file's blocks are overwritten
 * through a descriptor opened before it was unlinked.
 */
hv_status
kek_replace(consent_service *cs, const char *npath, const char *kpath)
{
	int       old = open_for_shred(kpath);
	hv_status st  = HV_OK;

	if (rename(npath, kpath) != 0) {
		st = hv_status_from_errno(errno);
		if (old >= 0) {
			close(old);
		}
		return (st);
	}
	(void) hv_file_sync_dir(cs->cs_keys);
	shred_fd(old);
	return (HV_OK);
}

/* Reads a key file. HV_NOT_FOUND when missing, HV_PERMISSION_DENIED when open to others,
 * HV_DATA_LOSS when malformed. */
hv_status
kek_read(const char *path, kek_file *out)
{
	char     *buf = NULL;
	size_t    len = 0;
	hv_status st;

	memset(out, 0, sizeof(*out));
	st = hv_file_read(path, KEK_FILE_LEN, true, &buf, &len);
	if (st == HV_OUT_OF_RANGE) {
		st = HV_DATA_LOSS; /* longer than a key file */
	}
	if (st != HV_OK) {
		goto out;
	}
	if (len != KEK_FILE_LEN || memcmp(buf, KEK_MAGIC, 4) != 0 || buf[4] != KEK_FILE_VERSION) {
		st = HV_DATA_LOSS;
		goto out;
	}
	out->kf_gen = hv_get_be64((const uint8_t *) buf + 5);
	memcpy(out->kf_key, buf + 13, KEK_LEN);
	st = out->kf_gen == 0 ? HV_DATA_LOSS : HV_OK;
out:
	if (buf != NULL) {
		crypto_wipe(buf, len);
		free(buf);
	}
	if (st != HV_OK) {
		crypto_wipe(out, sizeof(*out));
	}
	return (st);
}

hv_status
kek_write(const char *path, const kek_file *k)
{
	uint8_t   buf[KEK_FILE_LEN];
	hv_status st;

	memcpy(buf, KEK_MAGIC, 4);
	buf[4] = KEK_FILE_VERSION;
	hv_put_be64(buf + 5, k->kf_gen);
	memcpy(buf + 13, k->kf_key, KEK_LEN);
	st = hv_file_create_private(path, buf, sizeof(buf));
	crypto_wipe(buf, sizeof(buf));
	return (st);
}

void
kek_check(const uint8_t key[KEK_LEN], uint8_t out[KEK_CHECK_LEN])
{
	uint8_t mac[CRYPTO_HMAC_LEN];

	crypto_hmac_sha256(mac, key, KEK_LEN, KEK_CHECK_LABEL, strlen(KEK_CHECK_LABEL));
	memcpy(out, mac, KEK_CHECK_LEN);
	crypto_wipe(mac, sizeof(mac));
}

/* Takes the key directory's flock (exclusive); returns the descriptor or -1. */
int
keys_lock(consent_service *cs)
{
	char path[PATH_MAX + 16];
	int  fd;

	key_path(cs, LOCK_FILE, path, sizeof(path));
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		log_error("consent: cannot open %s: %s", path, strerror(errno));
		return (-1);
	}
	while (flock(fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			log_error("consent: cannot lock %s: %s", path, strerror(errno));
			close(fd);
			return (-1);
		}
	}
	return (fd);
}

void
keys_unlock(int fd)
{
	if (fd >= 0) {
		flock(fd, LOCK_UN);
		close(fd);
	}
}
