/*
 * file.h - private files (keys and secrets): read whole with their mode and size checked,
 * created whole (0600, synced) or not at all.
 *
 * Used for auth's token-key file, the consent vault's key files and the audit key. The
 * callers keep their own rules on top: a file of the wrong size or format is HV_DATA_LOSS and
 * is never replaced (a damaged key file is left for an operator, not overwritten), and a file
 * is put in place by rename(2) or link(2) after hv_file_create_private wrote it under another
 * name, then hv_file_sync_dir makes the new name durable.
 */
#ifndef HAVEN_FILE_H
#define HAVEN_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "haven/status.h"

/* Reads a whole file of at most maxlen bytes into a NUL-terminated malloc'd buffer (*out,
 * length in *outlen when not NULL). When private is true the file must not be readable or
 * writable by group or others (HV_PERMISSION_DENIED otherwise, naming no contents). A longer
 * file is HV_OUT_OF_RANGE, a directory or other non-regular file HV_INVALID_ARGUMENT, and
 * open(2) errors are converted with hv_status_from_errno (a missing file is HV_NOT_FOUND).
 * The checks are made on the open descriptor. *out is NULL after a failure; the buffer is
 * the caller's to wipe (when private) and free. */
hv_status hv_file_read(const char *path, size_t maxlen, bool private, char **out, size_t *outlen);

/* Creates path, mode 0600 whatever the umask, not following a symlink, holding len bytes of
 * data, and fsyncs it. HV_ALREADY_EXISTS when path exists (it is never replaced); another
 * failure is converted from errno, and a file this call created but could not write whole is
 * removed again. The directory entry is durable only after hv_file_sync_dir. */
hv_status hv_file_create_private(const char *path, const void *data, size_t len);

/* fsyncs a directory, so that names created, linked or renamed in it survive a crash. */
hv_status hv_file_sync_dir(const char *dir);

#endif
