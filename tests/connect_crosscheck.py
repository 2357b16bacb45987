#!/usr/bin/env python3
"""connect_crosscheck.py - the Connect API of a real haven-node, called by a second, independent
protobuf implementation (Debian's python3-protobuf, with Python code protoc generates from
proto/) over a plain HTTP client (urllib): every request is sent once as JSON and once as binary
and the two answers must decode to the same message; each JSON answer must equal
python3-protobuf's own JSON of the binary one (the proto3 JSON mapping, both ways).

A provider organisation signs in over the Connect API itself (Challenge, a signature made with
`openssl dgst` over "haven-auth-v1" || nonce || org id, Authenticate) and then registers
services, reads them, finds them, lists regions and echoes bytes. Errors must carry the same
Connect code and message either way.

    connect_crosscheck.py HAVEN_NODE HAVEN_CLI PKI_SH PROTO_DIR
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

node_bin, cli_bin, pki_sh, proto_root = sys.argv[1:5]
base_tmp = os.environ.get("HAVEN_TEST_TMP", "/tmp")
os.makedirs(base_tmp, exist_ok=True)
tmp = tempfile.mkdtemp(prefix="connect-xc-", dir=base_tmp)
os.chmod(tmp, 0o700)
procs = []


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
    shutil.rmtree(tmp, ignore_errors=True)


atexit.register(cleanup)

protos = []
for d, _, files in os.walk(proto_root):
    protos += [os.path.join(d, f) for f in files if f.endswith(".proto")]
gen = os.path.join(tmp, "gen")
os.mkdir(gen)
subprocess.run(["protoc", "-I", proto_root, "--python_out", gen] + protos, check=True)
sys.path.insert(0, gen)

from google.protobuf import json_format  # noqa: E402
from haven.auth.v1 import auth_pb2  # noqa: E402
from haven.capacity.v1 import capacity_pb2 as cap  # noqa: E402
from haven.diag.v1 import diag_pb2  # noqa: E402
from haven.health.v1 import health_pb2  # noqa: E402

failures = []


def fail(what):
    failures.append(what)
    print("FAIL:", what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- a node with a PKI, one provider registered by the operator ----------------------------
pki = os.path.join(tmp, "pki")
data = os.path.join(tmp, "data")
os.mkdir(pki, 0o700)
os.mkdir(data, 0o700)
org = "xc-provider"
for args in (["ca"], ["server", "localhost"], ["client", org]):
    subprocess.run(["sh", pki_sh, pki] + args, check=True, capture_output=True)
http_port = free_port()
log = open(os.path.join(tmp, "node.log"), "w")
node = subprocess.Popen([node_bin, "--data-dir", data, "--tls-ca", pki + "/ca.pem",
                         "--tls-cert", pki + "/server.pem", "--tls-key", pki + "/server.key",
                         "--http-listen", "http://127.0.0.1:%d" % http_port],
                        stdout=log, stderr=subprocess.STDOUT)
procs.append(node)
base = "http://127.0.0.1:%d/" % http_port


def cli(*args):
    return subprocess.run([cli_bin, "--data", data] + list(args), check=True,
                          capture_output=True, text=True).stdout


for _ in range(100):
    try:
        cli("--timeout", "1000", "health")
        break
    except subprocess.CalledProcessError:
        time.sleep(0.1)
cli("org", "register", org, "--name", "Crosscheck Shelter", "--role", "provider",
    "--region", "Rotterdam", "--cert", pki + "/" + org + ".pem")


# ---- the client ------------------------------------------------------------------------------
def post(method, body, ctype, token=None):
    req = urllib.request.Request(base + method, data=body, method="POST")
    req.add_header("Content-Type", ctype)
    req.add_header("Connect-Protocol-Version", "1")
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def call(method, msg, out_type, token=None, expect_code=None):
    """Sends msg as JSON and as binary; returns the decoded reply (or the error)."""
    js = json_format.MessageToJson(msg, indent=None).encode()
    st_j, h_j, b_j = post(method, js, "application/json", token)
    st_p, h_p, b_p = post(method, msg.SerializeToString(), "application/proto", token)
    if st_j != st_p:
        fail("%s: HTTP %d as JSON, %d as binary" % (method, st_j, st_p))
        return None
    for h in (h_j, h_p):
        if h.get("X-Content-Type-Options") != "nosniff" or h.get("Cache-Control") != "no-store":
            fail("%s: security headers missing" % method)
    if st_j != 200:
        e_j, e_p = json.loads(b_j), json.loads(b_p)
        if e_j != e_p:
            fail("%s: errors differ: %s / %s" % (method, e_j, e_p))
        if expect_code is not None and e_j.get("code") != expect_code:
            fail("%s: code %s, expected %s" % (method, e_j.get("code"), expect_code))
        return e_j
    if expect_code is not None:
        fail("%s: OK, expected %s" % (method, expect_code))
    if h_j.get("Content-Type") != "application/json" or \
            h_p.get("Content-Type") != "application/proto":
        fail("%s: content types %s / %s" % (method, h_j.get("Content-Type"),
                                            h_p.get("Content-Type")))
    from_json = out_type()
    json_format.Parse(b_j, from_json)  # python3-protobuf reads haven's JSON
    from_bin = out_type()
    from_bin.ParseFromString(b_p)
    if from_json != from_bin:
        fail("%s: JSON and binary answers differ:\n%s\n%s" % (method, from_json, from_bin))
    # haven's JSON is python3-protobuf's JSON of the same message (field names, enums by name,
    # 64-bit integers as strings, bytes as base64, defaults left out).
    want = json.loads(json_format.MessageToJson(from_bin, indent=None))
    if json.loads(b_j) != want:
        fail("%s: haven's JSON %s, python3-protobuf's %s" % (method, b_j.decode(), want))
    # And the binary is byte-identical to python3-protobuf's encoding of that message (both
    # write fields in number order).
    if from_bin.SerializeToString() != b_p:
        fail("%s: binary differs from python3-protobuf's encoding" % method)
    return from_bin


def sign_in():
    """Challenge and Authenticate over the Connect API: JSON, then binary."""
    nonces = []  # random: each way gets its own, checked by signing in with it
    for ctype in ("application/json", "application/proto"):
        req = auth_pb2.ChallengeRequest(org_id=org)
        body = json_format.MessageToJson(req).encode() if ctype.endswith("json") \
            else req.SerializeToString()
        st, _, b = post("haven.auth.v1.Auth/Challenge", body, ctype)
        r = auth_pb2.ChallengeResponse()
        if ctype.endswith("json"):
            json_format.Parse(b, r)
        else:
            r.ParseFromString(b)
        nonces.append(r.nonce)
    tokens = []
    for nonce, ctype in zip(nonces, ("application/json", "application/proto")):
        msg = b"haven-auth-v1" + nonce + org.encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", pki + "/" + org + ".key"],
                             input=msg, check=True, capture_output=True).stdout
        req = auth_pb2.AuthenticateRequest(org_id=org, nonce=nonce, signature=sig)
        body = json_format.MessageToJson(req).encode() if ctype.endswith("json") \
            else req.SerializeToString()
        st, _, b = post("haven.auth.v1.Auth/Authenticate", body, ctype)
        if st != 200:
            fail("Authenticate as %s: HTTP %d %s" % (ctype, st, b))
            continue
        r = auth_pb2.AuthenticateResponse()
        if ctype.endswith("json"):
            json_format.Parse(b, r)
        else:
            r.ParseFromString(b)
        if r.role != "provider":
            fail("Authenticate: role %s" % r.role)
        tokens.append(r.token)
    return tokens[0] if tokens else None


call("haven.health.v1.Health/Check", health_pb2.HealthCheckRequest(),
     health_pb2.HealthCheckResponse)
# Anonymous callers: refused alike both ways.
call("haven.diag.v1.Diagnostics/Echo", diag_pb2.EchoRequest(payload=b"x"),
     diag_pb2.EchoResponse, expect_code="permission_denied")
token = sign_in()
if token is None:
    print("connect_crosscheck: no session token")
    sys.exit(1)

call("haven.diag.v1.Diagnostics/Echo",
     diag_pb2.EchoRequest(payload=bytes(range(256)) * 3), diag_pb2.EchoResponse, token)
call("haven.capacity.v1.Capacity/ListRegions", cap.ListRegionsRequest(),
     cap.ListRegionsResponse, token)
call("haven.capacity.v1.Capacity/GetOrganisation", cap.GetOrganisationRequest(id=org),
     cap.Organisation, token)
for i, suffix in enumerate(("a", "b")):
    svc = cap.Service(id="svc-xc-" + suffix, org_id=org, name="Crosscheck beds " + suffix,
                      type=cap.SHELTER, service_area="Rotterdam",
                      populations=[cap.WOMEN], languages=["nl", "ro"],
                      maximum=4 + i, front_door_contact="intake desk")
    # Registered once as JSON, once as binary (a second registration is ALREADY_EXISTS).
    body_type = ("application/json", "application/proto")[i]
    req = cap.RegisterServiceRequest(service=svc)
    body = json_format.MessageToJson(req).encode() if i == 0 else req.SerializeToString()
    st, _, b = post("haven.capacity.v1.Capacity/RegisterService", body, body_type, token)
    if st != 200:
        fail("RegisterService as %s: HTTP %d %s" % (body_type, st, b))
    call("haven.capacity.v1.Capacity/RegisterService", req, cap.Service, token,
         expect_code="already_exists")
    call("haven.capacity.v1.Capacity/GetService", cap.GetServiceRequest(id=svc.id),
         cap.ServiceView, token)
found = call("haven.capacity.v1.Capacity/FindServices",
             cap.FindServicesRequest(type=cap.SHELTER, regions=["Rotterdam"], languages=["ro"]),
             cap.FindServicesResponse, token)
if found is None or len(found.services) != 2:
    fail("FindServices: expected the two services, got %s" % found)
call("haven.capacity.v1.Capacity/GetService", cap.GetServiceRequest(id="svc-none"),
     cap.ServiceView, token, expect_code="not_found")

# Bad JSON, a forged token: a clear Connect error.
st, _, b = post("haven.capacity.v1.Capacity/GetService", b'{"id": ', "application/json", token)
if st != 400 or json.loads(b).get("code") != "invalid_argument":
    fail("bad JSON: HTTP %d %s" % (st, b))
st, _, b = post("haven.capacity.v1.Capacity/GetService", b'{"id": "x"}', "application/json",
                token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
if st != 401 or json.loads(b).get("code") != "unauthenticated":
    fail("forged token: HTTP %d %s" % (st, b))

if failures:
    print("connect_crosscheck: %d failures (node log: %s)" % (len(failures), log.name))
    atexit.unregister(cleanup)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    sys.exit(1)
print("connect_crosscheck: ok")
