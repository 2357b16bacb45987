#!/usr/bin/env python3
"""http_seeds.py - the seed corpus of fuzz_http from recorded test traffic.

    HAVEN_CONNECT_RECORD=/tmp/rec ctest -R '^(connect_it|matrix_http_it)$'   # in a build dir
    fuzz/http_seeds.py /tmp/rec fuzz/corpus/http

The tests' HTTP clients (tests/connect_client.c: matrix_it --http calls every method of the
node as each role, in JSON and binary; connect_it the Connect API's edge cases: sessions,
cookies and CSRF, content types, limits, web files) write each request as sent. This keeps one
request per (request line, Content-Type, credential kind, body kind) so that every method,
verb and header combination the tests sent is in the corpus once, named traffic-<n>.
"""
import os
import re
import sys


def key(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    hdr = {}
    for l in lines[1:]:
        name, _, v = l.partition(b":")
        hdr[name.strip().lower()] = v.strip()
    cred = b"bearer" if b"authorization" in hdr else b"cookie" if b"cookie" in hdr else b"-"
    return (lines[0], hdr.get(b"content-type", b"-"), cred, bool(body),
            b"idempotency-key" in hdr)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    seen = {}
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), "rb") as f:
            raw = f.read()
        if not raw.startswith((b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ",
                               b"PATCH ")):
            continue
        k = key(raw)
        if k not in seen or len(raw) < len(seen[k]):
            seen[k] = raw
    for f in os.listdir(dst):
        if re.fullmatch(r"traffic-\d+", f):
            os.remove(os.path.join(dst, f))
    for i, raw in enumerate(sorted(seen.values())):
        with open(os.path.join(dst, "traffic-%03d" % i), "wb") as f:
            f.write(raw)
    print("http_seeds: %d requests kept" % len(seen))


if __name__ == "__main__":
    main()
