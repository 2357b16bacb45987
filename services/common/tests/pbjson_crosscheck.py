#!/usr/bin/env python3
"""pbjson_crosscheck.py - haven's JSON converter against python3-protobuf, a second and
independent implementation of the proto3 JSON mapping (Debian's python3-protobuf and protoc
from protobuf-compiler; scripts/deps.sh installs both for scripts/test.sh).

For every message M built here with python's generated classes, B = M.SerializeToString():
  1. ours(B) (pbjson_tool to-json) equals json_format.MessageToJson(M) as a JSON value;
  2. python's Parse(ours(B)) serialises byte for byte as protobuf-c's pack(unpack(B));
  3. python's JSON (JSON names, and proto field names) decodes with ours to exactly B;
  4. our own JSON decodes with ours back to pack(unpack(B)).
Every haven proto is checked for what pbjson cannot express (a map, a json_name option,
proto3 optional). Unknown binary fields are dropped from both JSON outputs. Lenient inputs
that both accept (64-bit numbers, numeric strings, enum numbers, URL or unpadded base64, null)
decode to the same binary in both; bad JSON and type mismatches are refused by both, ours with a message.

  pbjson_crosscheck.py PBJSON_TOOL PROTO_ROOT TEST_PROTO_ROOT
"""
import atexit
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

tool, proto_root, test_root = sys.argv[1:4]
tmp = tempfile.mkdtemp(dir=os.environ.get("HAVEN_TEST_TMP"))
atexit.register(shutil.rmtree, tmp, True)
subprocess.run(["protoc", "-I", test_root, "--python_out", tmp,
                "haven/testing/v1/pbjson.proto"], check=True)
project_protos = sorted(os.path.relpath(os.path.join(d, f), proto_root)
                        for d, _, files in os.walk(proto_root) for f in files
                        if f.endswith(".proto"))
subprocess.run(["protoc", "-I", proto_root, "--python_out", tmp] + project_protos, check=True)
sys.path.insert(0, tmp)

from google.protobuf import json_format  # noqa: E402
from haven.referral.v1 import referral_pb2  # noqa: E402
from haven.testing.v1 import pbjson_pb2 as T  # noqa: E402

fails = 0


def camel(name):
    """pbjson's JSON name: underscores dropped, the letter after one upper-cased."""
    out, up = [], False
    for ch in name:
        if ch == "_":
            up = True
            continue
        out.append(ch.upper() if up else ch)
        up = False
    return "".join(out)


def project_guard():
    """pbjson knows what protobuf-c's descriptors carry: no json_name option, no map
    (written as an array of entries), no proto3 optional. Fails when a haven proto gains one."""
    import importlib
    bad = []
    for rel in project_protos:
        mod = importlib.import_module(rel[:-len(".proto")].replace("/", ".") + "_pb2")
        todo = list(mod.DESCRIPTOR.message_types_by_name.values())
        while todo:
            m = todo.pop()
            todo.extend(m.nested_types)
            if m.GetOptions().map_entry:
                bad.append(f"{m.full_name}: a map entry")
            for f in m.fields:
                if f.json_name != camel(f.name):
                    bad.append(f"{f.full_name}: json_name {f.json_name}")
                if f.containing_oneof is not None and f.containing_oneof.name.startswith("_"):
                    bad.append(f"{f.full_name}: proto3 optional")
    return bad


def fail(what):
    global fails
    fails += 1
    print("FAIL:", what)


def run(mode, typename, data):
    p = subprocess.run([tool, mode, typename], input=data, capture_output=True)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace").strip()


def same_json(a, b):
    """Equal as JSON values; numbers compared as doubles (1 == 1.0), NaN never appears
    as a number (it is the string "NaN")."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b) and not math.isnan(float(a))
    return a == b


def check(name, msg, extra=b""):
    typename = msg.DESCRIPTOR.full_name
    binary = msg.SerializeToString() + extra
    rc, ours, err = run("to-json", typename, binary)
    if rc != 0:
        return fail(f"{name}: to-json exited {rc}: {err}")
    theirs = json_format.MessageToJson(msg)
    if not same_json(json.loads(ours), json.loads(theirs)):
        return fail(f"{name}: JSON differs\n  ours:   {ours.decode()}\n  python: {theirs}")
    rc, repacked, err = run("repack", typename, binary)
    if rc != 0:
        return fail(f"{name}: repack exited {rc}: {err}")
    plain = type(msg)()
    plain.CopyFrom(msg)
    plain.DiscardUnknownFields()
    if extra:
        # protobuf-c keeps unknown fields through unpack and pack; JSON has no place for
        # them, so what comes back from JSON is the message without them.
        if repacked == plain.SerializeToString():
            return fail(f"{name}: protobuf-c dropped the unknown fields")
        repacked = plain.SerializeToString()
    parsed = type(msg)()
    json_format.Parse(ours, parsed)
    if parsed.SerializeToString() != repacked:
        return fail(f"{name}: python's binary of our JSON differs from protobuf-c's pack")
    for names in (False, True):
        text = json_format.MessageToJson(msg, preserving_proto_field_name=names).encode()
        rc, got, err = run("from-json", typename, text)
        if rc != 0 or got != plain.SerializeToString():
            return fail(f"{name}: python's JSON (proto names {names}) decoded to other "
                        f"binary (exit {rc}: {err})")
    rc, got, err = run("from-json", typename, ours)
    if rc != 0 or got != repacked:
        return fail(f"{name}: our JSON does not round-trip (exit {rc}: {err})")
    print(f"ok: {name}")


def full():
    m = T.AllTypes(
        f_double=1e300, f_float=0.1, f_int32=-2147483648, f_int64=-9223372036854775808,
        f_uint32=4294967295, f_uint64=18446744073709551615, f_sint32=-7,
        f_sint64=-9007199254740993, f_fixed32=123456789, f_fixed64=9007199254740993,
        f_sfixed32=-1, f_sfixed64=42, f_bool=True, f_string="Grüße, 東京 \u2028\"\\\n",
        f_bytes=bytes([0xfb, 0xff, 0xbf, 0x00, 0x01]), f_enum=T.COLOUR_GREEN,
        snake_case_2_field=3)
    m.f_inner.value = 5
    m.f_inner.label = "inner"
    m.f_inner.child.value = -1
    m.r_double.extend([0.0, -2.5, float("nan"), float("inf"), float("-inf"), 5e-324])
    # Not FLT_MAX: python writes it 3.4028235e+38 and then refuses that as too large.
    m.r_float.extend([1.5, 3.4e38, float("-inf"), 1e-45, 16777217.0])
    m.r_int32.extend([0, -1, 2147483647])
    m.r_int64.extend([0, 9223372036854775807, -1])
    m.r_uint32.extend([0, 1])
    m.r_uint64.extend([18446744073709551615, 0])
    m.r_sint32.extend([-2147483648])
    m.r_sint64.extend([-9223372036854775808, 1])
    m.r_fixed32.extend([4294967295])
    m.r_fixed64.extend([1, 2])
    m.r_sfixed32.extend([-5])
    m.r_sfixed64.extend([-6])
    m.r_bool.extend([True, False])
    m.r_string.extend(["", "a", "ü"])
    m.r_bytes.extend([b"", b"\x00", b"ab", b"abc"])
    m.r_enum.extend([T.COLOUR_RED, T.COLOUR_NEGATIVE, T.COLOUR_UNSPECIFIED])
    m.r_inner.add(value=1)
    m.r_inner.add()
    m.o_inner.label = "one"
    return m


def referral():
    r = referral_pb2.Referral(
        id="r-0123456789abcdef", subject="s-fedcba9876543210", referrer_org="ngo.north",
        urgency=2, exploitation=1, note="", home_region="nl.north",
        created_ms=1764979200123, version=7, idempotency_key="k1",
        sealed_note=b"\x01\x02\x03")
    r.excluded_regions.extend(["nl.west"])
    r.preferred_regions.extend(["nl.north", "nl.east"])
    n = r.needs.add(index=0, type=1, population=1, state=1, offer_id="o-1",
                    service_id="svc.a", waiting_since_ms=1764979200999)
    n.languages.extend(["nl", "en"])
    r.events.add(time_ms=1764979201000, actor_org="ngo.north", need_index=0, to=1,
                 reason="created")
    return r


problems = project_guard()
if problems:
    for p in problems:
        fail(f"haven proto has what pbjson does not support: {p}")
else:
    print(f"ok: {len(project_protos)} haven protos: no json_name option, map or proto3 optional")
check("every field type", full())
check("empty message", T.AllTypes())
check("oneof string set to its default", T.AllTypes(o_string=""))
check("oneof int64 set to 0", T.AllTypes(o_int64=0))
check("oneof enum set to 0", T.AllTypes(o_enum=T.COLOUR_UNSPECIFIED))
check("oneof message set empty", T.AllTypes(o_inner=T.Inner()))
check("unknown enum numbers", T.AllTypes(f_enum=7, r_enum=[1, 99, -100], o_enum=12))
check("referral", referral())
# Field 1000 (varint 1) and 1001 (bytes "xy") unknown to the descriptor: not in JSON.
check("unknown binary fields", T.AllTypes(f_int32=1), extra=b"\xc0\x3e\x01\xca\x3e\x02xy")

# Inputs that are not canonical but that both implementations accept: same binary.
lenient = [
    '{"fInt64": 5, "fUint64": 9223372036854775807, "rSint64": [-3, "4"]}',
    '{"fInt32": "7", "fUint32": "4000000000", "fFixed32": 1.0, "rInt32": [1e2],'
    ' "fUint64": 1.8e19, "fSint64": -9.2e18}',
    '{"f_int32": 1, "f_string": "x", "snake_case_2_field": "2", "fInt64": null}',
    '{"fEnum": 2, "rEnum": ["COLOUR_RED", 5, -3], "oEnum": "COLOUR_NEGATIVE"}',
    '{"fBytes": "-_8", "rBytes": ["+/8=", "YWI", "YWI=", "", "AA=="]}',
    '{"fDouble": "1.5", "fFloat": "NaN", "rFloat": ["Infinity", "-Infinity", 2],'
    ' "rDouble": ["-2e-3", 7]}',
    '{"fInt32": null, "fInner": null, "rInt32": null, "oString": null}',
    '{"fInner": {"child": {"child": {"label": "deep"}}}, "rInner": [{}, {"value": 3}]}',
    '{}',
]
for i, text in enumerate(lenient):
    mine = run("from-json", "haven.testing.v1.AllTypes", text.encode())
    py = T.AllTypes()
    try:
        json_format.Parse(text, py)
    except json_format.ParseError as e:
        fail(f"lenient {i}: python refuses it ({e})")
        continue
    if mine[0] != 0 or mine[1] != py.SerializeToString():
        fail(f"lenient {i}: ours exit {mine[0]} ({mine[2]}) or other binary than python's")
    else:
        print(f"ok: lenient {i}")

# Refused by ours with a message naming the problem (and the field where there is one), and
# by python too, but for the few where python 3.21 is more lenient (marked False): a top-level
# array, one field under both its names, base64 with characters outside both alphabets (python
# skips them), and integers above 2^63-1 as JSON numbers (jansson cannot read them; the
# canonical form is a string, which both accept).
bad = [
    ('{', "invalid JSON", True),
    ('{"fInt32": 1,}', "invalid JSON", True),
    ('[]', "expected a JSON object", False),
    ('{"noSuchField": 1}', "unknown field \"noSuchField\"", True),
    ('{"fInt32": 1, "fInt32": 2}', "invalid JSON (duplicate key) at line 1 column 22", True),
    ('{"fInt32": 1, "f_int32": 2}', "f_int32: given twice", False),
    ('{"fInt32": "abc"}', "f_int32: not an integer", True),
    ('{"fInt32": 1.5}', "f_int32: integer out of range", True),
    ('{"fInt32": 2147483648}', "f_int32: integer out of range", True),
    ('{"fUint32": -1}', "f_uint32: integer out of range", True),
    ('{"fInt64": "9223372036854775808"}', "f_int64: not an integer", True),
    ('{"fUint64": "-1"}', "f_uint64: not an integer", True),
    ('{"fUint64": 18446744073709551615}', "invalid JSON (number too large)", False),
    ('{"fInt64": " 1"}', "f_int64: not an integer", True),
    ('{"fInt32": true}', "f_int32: expected an integer", True),
    ('{"fBool": "true"}', "f_bool: expected true or false", True),
    ('{"fBool": 1}', "f_bool: expected true or false", True),
    ('{"fString": 5}', "f_string: expected a string", True),
    ('{"fFloat": 1e39}', "f_float: out of range for a float", True),
    ('{"fDouble": "abc"}', "f_double: not a number", True),
    ('{"fDouble": {}}', "f_double: expected a number", True),
    ('{"fEnum": "COLOUR_BLUE"}', "f_enum: unknown enum value name", True),
    ('{"fEnum": 2147483648}', "f_enum: integer out of range", True),
    ('{"fBytes": "!!!!"}', "f_bytes: not valid base64", False),
    ('{"fBytes": 5}', "f_bytes: expected a base64 string", True),
    ('{"fInner": 5}', "f_inner: expected an object", True),
    ('{"fInner": {"nope": 1}}', "haven.testing.v1.Inner: unknown field \"nope\"", True),
    ('{"rInt32": 5}', "r_int32: expected an array", True),
    ('{"rInt32": [1, "x"]}', "r_int32: not an integer", True),
    ('{"rInner": [{"value": "x"}]}', "haven.testing.v1.Inner.value: not an integer", True),
    ('{"oString": "a", "oInt64": "1"}', "another member of its oneof is set", True),
    ('{"fString": "\\ud800"}', "invalid JSON (syntax error)", True),
]
for text, want, py_refuses in bad:
    rc, out, err = run("from-json", "haven.testing.v1.AllTypes", text.encode())
    try:
        json_format.Parse(text, T.AllTypes())
        py_refused = False
    except (json_format.ParseError, ValueError):
        py_refused = True
    if rc != 1 or want not in err:
        fail(f"bad {text!r}: ours exit {rc}, message {err!r}, wanted {want!r}")
    elif py_refused != py_refuses:
        fail(f"bad {text!r}: python refuses it: {py_refused}, expected {py_refuses}")
    else:
        print(f"ok: refused {text!r}: {err}")

if fails:
    print(f"pbjson_crosscheck: {fails} failed")
    sys.exit(1)
print("pbjson_crosscheck: ok")
