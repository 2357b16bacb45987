#!/usr/bin/env python3
"""totp.py URI - the current six-digit code of an otpauth:// URI (RFC 6238, SHA-1, 30 s),
as an authenticator app shows it. For the quickstart's demo people only: a real person keeps
the secret in an app on their own phone."""
import base64, hashlib, hmac, struct, sys, time, urllib.parse

q = urllib.parse.parse_qs(urllib.parse.urlparse(sys.argv[1]).query)
s = q["secret"][0]
key = base64.b32decode(s + "=" * ((8 - len(s) % 8) % 8))
step = int(time.time()) // 30 + (int(sys.argv[2]) if len(sys.argv) > 2 else 0)
h = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
o = h[-1] & 15
print("%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000))
