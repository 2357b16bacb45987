/*
 * bytes.h - unsigned integers in byte strings: big-endian for keys and file records (so that
 * LMDB's byte order is numeric order), little-endian where a format says so.
 *
 * p points to at least n bytes (n is 1..8); no alignment is needed. The n-byte forms write
 * the low n bytes of v and read into the low n bytes of the result.
 */
#ifndef HAVEN_BYTES_H
#define HAVEN_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline void
hv_put_be(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = n; i > 0; i--) {
		p[i - 1] = (uint8_t) v;
		v >>= 8;
	}
}

static inline uint64_t
hv_get_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++) {
		v = v << 8 | p[i];
	}
	return (v);
}

static inline void
hv_put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		p[i] = (uint8_t) v;
		v >>= 8;
	}
}

static inline uint64_t
hv_get_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = n; i > 0; i--) {
		v = v << 8 | p[i - 1];
	}
	return (v);
}

static inline void
hv_put_be32(uint8_t *p, uint32_t v)
{
	hv_put_be(p, v, 4);
}

static inline uint32_t
hv_get_be32(const uint8_t *p)
{
	return ((uint32_t) hv_get_be(p, 4));
}

static inline void
hv_put_be64(uint8_t *p, uint64_t v)
{
	hv_put_be(p, v, 8);
}

static inline uint64_t
hv_get_be64(const uint8_t *p)
{
	return (hv_get_be(p, 8));
}

#endif
