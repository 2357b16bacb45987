#!/usr/bin/env python3
"""peers_test.py - hostile and broken peers against a real haven-node (issue 17).

    peers_test.py HAVEN_NODE HAVEN_CLI SOURCE_DIR [IDLE]

While IDLE (default 1000; the long form 10000, bounded by the file limit) idle TCP connections
sit on the node's tls+tcp:// listener and on its HTTP (Connect) listener, half-open TLS
handshakes (a partial ClientHello, then nothing), slow-loris HTTP clients (a header byte every
second), HTTP clients that send requests and never read the answers, and clients killed in the
middle of a call all at once, other partners keep being answered: health over ipc://, a signed-in
organisation's call over tls+tcp://, and Health/Check over HTTP, each within its deadline (the
CLI's --timeout 5000; HTTP 5 s). The one allowance: the clients killed mid-call can stop the
tls+tcp:// listener (libnng 1.5.2; rpc_nng.c's watchdog), and then it must answer again within
RECOVER_S (20 s). Afterwards the node still serves and stops cleanly on SIGTERM.
Prints one summary line "fault peers: ..." with the figures docs/reliability.md reports.
Exit 0 when every check passed.
"""
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tls_stall_test as stall  # noqa: E402  (Node, work_dir, fail, free_port)

DEADLINE_S = float(os.environ.get("FAULT_DEADLINE_S", "5"))
RECOVER_S = float(os.environ.get("FAULT_RECOVER_S", "20"))


fail, free_port = stall.fail, stall.free_port


class Node(stall.Node):
    """tls_stall_test's node with the Connect API over HTTP too (http_port), the CLI's
    deadline at DEADLINE_S, and the stalls and restarts this test counts."""
    start_within_s = 30
    timeout_ms = int(DEADLINE_S * 1000)

    def __init__(self, node, cli, src, work):
        self.tls_stalls, self.tls_stalled_at, self.tls_recover = 0, None, []
        self.restarts = 0
        super().__init__(node, cli, src, work)
        self.tls_port = self.port

    def more_args(self):
        self.http_port = free_port()
        return ["--http-listen", "http://127.0.0.1:%d" % self.http_port]

    def supervise(self, wait_s=0):
        """What the service manager does (deploy/systemd: Restart=on-failure): a node that
        stopped with 75 after it logged libnng's stuck reaper (docs/operations.md) is started
        again. Waits up to wait_s for a node that is stopping. True when it started the node
        again; a node that stopped any other way fails the test."""
        deadline = time.monotonic() + wait_s
        while self.proc.poll() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        self.log.flush()
        with open(self.logpath, "rb") as f:
            stuck = b"its reaper is stuck" in f.read()
        if self.proc.returncode != 75 or not stuck:
            fail("the node stopped under the attack: exit %d" % self.proc.returncode)
        print("ok   libnng's reaper got stuck; the node stopped with 75 for its service manager "
              "and is started again", flush=True)
        self.restarts += 1
        self.tls_stalled_at = None
        self.start()
        return True

    def op(self, args, check=True):
        r = self.ipc(args, check)
        return r.returncode, r.stdout

    def http_health(self):
        s = socket.create_connection(("127.0.0.1", self.http_port), timeout=DEADLINE_S)
        try:
            body = b"{}"
            s.sendall(b"POST /haven.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                      b"Connection: close\r\n\r\n" + body)
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            return got.split(b"\r\n", 1)[0]
        finally:
            s.close()


class Attack:
    """The hostile peers; each thread holds its sockets until stop."""

    def __init__(self, node, idle):
        self.node, self.idle = node, idle
        self.socks, self.lock, self.stop = [], threading.Lock(), threading.Event()
        self.counts = {"idle_tls": 0, "idle_http": 0, "half_tls": 0, "slowloris": 0,
                       "no_read": 0, "killed_calls": 0}
        self.threads = []

    def keep(self, s, kind):
        with self.lock:
            self.socks.append(s)
            self.counts[kind] += 1

    def connect(self, port, kind):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            return None
        self.keep(s, kind)
        return s

    def idle_conns(self):
        for i in range(self.idle):
            if self.stop.is_set():
                return
            self.connect(self.node.tls_port if i % 2 == 0 else self.node.http_port,
                         "idle_tls" if i % 2 == 0 else "idle_http")

    def half_tls(self):
        # A TLS record header and the start of a ClientHello announcing more than follows.
        hello = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
        for _ in range(50):
            s = self.connect(self.node.tls_port, "half_tls")
            if s is not None:
                try:
                    s.sendall(hello)
                except OSError:
                    pass

    def slowloris(self):
        conns = [c for c in (self.connect(self.node.http_port, "slowloris") for _ in range(50))
                 if c is not None]
        for c in conns:
            try:
                c.sendall(b"POST /haven.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass
        while not self.stop.wait(1.0):
            for c in conns:
                try:
                    c.sendall(b"X")
                except OSError:
                    pass

    def no_read(self):
        # Requests the node answers, never read: its send side fills up.
        req = (b"POST /haven.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        for _ in range(10):
            s = self.connect(self.node.http_port, "no_read")
            if s is None:
                continue
            s.setblocking(False)
            for _ in range(2000):
                try:
                    s.send(req)
                except OSError:
                    break

    def killed_calls(self):
        # Clients killed in the middle of their calls (sign-in and a referral list over TLS).
        while not self.stop.is_set():
            p = subprocess.Popen(
                [self.node.cli, "--url", "tls+tcp://localhost:%d" % self.node.tls_port,
                 "--ca", self.node.pki + "/ca.pem", "--cert", self.node.pki + "/peer-ngo.pem",
                 "--key", self.node.pki + "/peer-ngo.key", "--org", "peer-ngo", "referral",
                 "list"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(random.uniform(0.005, 0.08))
            p.kill()
            p.wait()
            with self.lock:
                self.counts["killed_calls"] += 1

    def start(self):
        for fn in (self.idle_conns, self.half_tls, self.slowloris, self.no_read,
                   self.killed_calls):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass


def probe(node, lat):
    t = time.monotonic()
    rc, _ = node.op(["health"], check=False)
    lat["ipc"].append(time.monotonic() - t)
    if rc != 0:
        fail("health over ipc:// failed with exit %d under the attack" % rc)
    t = time.monotonic()
    r = node.as_org(["referral", "list"])
    if r.returncode == 4 and "no reply" in r.stderr:
        # The tls+tcp:// listener stopped answering (libnng 1.5.2: the clients killed while
        # negotiating can stop it for good; docs/reliability.md). The node's watchdog listens
        # again after 3 failed probes 2 s apart: it must answer again within RECOVER_S.
        if node.tls_stalled_at is None:
            node.tls_stalled_at = t
            node.tls_stalls += 1
            print("ok   the tls+tcp:// listener stopped answering (%s); waiting for the node "
                  "to listen again" % r.stderr.strip(), flush=True)
        elif time.monotonic() - node.tls_stalled_at > RECOVER_S:
            fail("the tls+tcp:// listener stopped answering and did not answer again within "
                 "%.0f s" % RECOVER_S)
    elif r.returncode != 0:
        fail("a signed-in call over tls+tcp:// failed with exit %d under the attack: %s"
             % (r.returncode, r.stderr.strip()))
    else:
        lat["tls"].append(time.monotonic() - t)
        if node.tls_stalled_at is not None:
            node.tls_recover.append(time.monotonic() - node.tls_stalled_at)
            node.tls_stalled_at = None
    t = time.monotonic()
    try:
        line = node.http_health()
    except OSError as e:
        fail("Health/Check over HTTP failed under the attack: %s" % e)
    lat["http"].append(time.monotonic() - t)
    if b" 200 " not in line + b" ":
        fail("Health/Check over HTTP answered %r under the attack" % line)
    for k in lat:
        if lat[k] and lat[k][-1] > DEADLINE_S:
            fail("%s answered after %.1f s, beyond its deadline" % (k, lat[k][-1]))


def main():
    if len(sys.argv) not in (4, 5):
        print("usage: peers_test.py HAVEN_NODE HAVEN_CLI SOURCE_DIR [IDLE]", file=sys.stderr)
        return 64
    node_bin, cli, src = sys.argv[1:4]
    idle = int(sys.argv[4]) if len(sys.argv) == 5 else int(os.environ.get("FAULT_IDLE", "1000"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, idle + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    # The node gets the same limit; the attack's sockets are the test's own, bounded by it.
    idle = min(idle, want - 512)
    work = stall.work_dir("peers")
    node = None
    attack = None
    try:
        node = Node(node_bin, cli, src, work)
        lat = {"ipc": [], "tls": [], "http": []}
        probe(node, lat)
        attack = Attack(node, idle)
        attack.start()
        t_end = time.monotonic() + float(os.environ.get("FAULT_PEERS_S", "20"))
        probes = 0
        while time.monotonic() < t_end:
            try:
                probe(node, lat)
            except SystemExit:
                # A probe that failed because the node is stopping for its stuck reaper.
                if not node.supervise(wait_s=20):
                    raise
                continue
            probes += 1
            node.supervise()
        fds = len(os.listdir("/proc/%d/fd" % node.proc.pid))
        attack.close()
        node.supervise()
        probe(node, lat)
        while node.tls_stalled_at is not None:  # fails after RECOVER_S
            time.sleep(0.5)
            probe(node, lat)
        if node.supervise(wait_s=12):  # a stop for the stuck reaper already under way
            probe(node, lat)
        node.proc.send_signal(signal.SIGTERM)
        # A plain build stops in well under a second; under ASan, with the attack's
        # connections still closing on a loaded CI machine, it was seen to take over 15 s.
        # A node that hangs on stop still fails here.
        try:
            rc = node.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stall.print_stacks(node.proc.pid)
            fail("the node did not stop within 60 s of SIGTERM after the attack")
        if rc == 75 and node.supervise():
            # Its reaper got stuck as the attack ended: started again, it must stop cleanly.
            node.proc.send_signal(signal.SIGTERM)
            try:
                rc = node.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stall.print_stacks(node.proc.pid)
                fail("the restarted node did not stop within 60 s of SIGTERM")
        if rc != 0:
            fail("the node exited with %d on SIGTERM after the attack" % rc)
        c = attack.counts
        print("fault peers: %d idle connections (%d tls+tcp, %d http), %d half-open TLS, "
              "%d slow-loris, %d never-reading, %d clients killed mid-call; node fds %d at the "
              "peak; %d probes each answered: max ipc %.0f ms, tls+tcp sign-in+call %.0f ms, "
              "http %.0f ms; tls+tcp:// listener stalls %d, each answered again within "
              "%.1f s; restarts for libnng's stuck reaper %d; stopped cleanly"
              % (c["idle_tls"] + c["idle_http"], c["idle_tls"], c["idle_http"], c["half_tls"],
                 c["slowloris"], c["no_read"], c["killed_calls"], fds, probes,
                 1000 * max(lat["ipc"]), 1000 * max(lat["tls"] or [0]), 1000 * max(lat["http"]),
                 node.tls_stalls, max(node.tls_recover or [0]), node.restarts),
              flush=True)
        return 0
    except SystemExit as e:
        if node is not None:
            node.log.flush()
            with open(node.logpath, "rb") as f:
                tail = f.read().decode(errors="replace").splitlines()[-20:]
            print("---- last lines of the node's log\n" + "\n".join(tail), file=sys.stderr)
        return e.code if isinstance(e.code, int) else 1
    finally:
        if attack is not None:
            attack.close()
        if node is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
