#!/usr/bin/env python3
"""reaper_test.py - a partner's system that hangs up in the middle of the node's replies, again
and again, and the node's answer to the libnng 1.5.2 fault that can follow (issue 17;
docs/reliability.md, "libnng's stuck reaper").

    reaper_test.py HAVEN_NODE HAVEN_CLI SOURCE_DIR [SECONDS]

libnng 1.5.2 sends a reply over tls+tcp:// in steps; when the connection's transport closes
between two steps, the next step begins on a stopped aio, which nng drops without a
callback, and the one reaper thread of the process waits for that send for ever (fixed in nng
1.9, "fix deadlock on socket close"). From then on no connection of the process is freed and no
socket can close. A certified client causes it by sending a request and resetting the
connection as soon as the reply begins. The node cannot repair libnng; it finds the stuck reaper (a close that
does not finish, rpc_close.c) and stops with exit 75 so that its service manager starts it
again (deploy/systemd: Restart=on-failure).

For SECONDS (default 120) this test runs four such clients. Then:
  - if the node is still serving, it must answer over ipc:// and tls+tcp:// and stop cleanly
    on SIGTERM (exit 0): no fault was made, or the node recovered;
  - if it stopped by itself, it must have logged the stuck reaper and exited with 75 within
    30 s of the first close that did not finish, and a new node on the same data directory
    must start, answer a partner over tls+tcp:// and stop cleanly.
Either way: never a signal, never a hang. Prints one summary line "fault reaper: ...".
"""
import os
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tls_stall_test as stall  # noqa: E402  (Node, answered, fail)


def hang_up_mid_reply(port, pki, stop):
    """Connects with the partner's certificate, sends a request and resets the connection as
    soon as the reply has begun; until stop is set. Returns the number of connections made."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(pki + "/peer-ngo.pem", pki + "/peer-ngo.key")
    body = struct.pack(">I", 0x80000001)
    req = struct.pack(">Q", len(body)) + body
    n = 0
    while not stop.is_set():
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            time.sleep(0.05)
            continue
        try:
            s = ctx.wrap_socket(raw)
            s.sendall(b"\0SP\0\x00\x30\0\0")
            if stall.read_exact(s, 8) is None:
                continue
            # The first step of the reply (its length) has come when these 8 bytes have:
            # the rest is on its way as the connection is reset.
            s.sendall(req)
            if stall.read_exact(s, 8) is None:
                continue
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            n += 1
        except (OSError, ssl.SSLError):
            pass
        finally:
            raw.close()
            try:
                s.close()
            except Exception:
                pass
    return n


def attack(node, seconds):
    """Four clients hang up mid-reply for seconds, or until the node stops. Returns (connections
    made, seconds into the attack when the node stopped or None)."""
    stop = threading.Event()
    counts = [0] * 4

    def run(i):
        counts[i] = hang_up_mid_reply(node.port, node.pki, stop)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    started = time.monotonic()
    exited_after = None
    while time.monotonic() - started < seconds:
        if node.proc.poll() is not None:
            exited_after = time.monotonic() - started
            break
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts), exited_after


def check_restart(node, made):
    """The node stopped by itself: it must have said why, with 75, and start again."""
    rc = node.proc.returncode
    node.log.flush()
    with open(node.logpath, "rb") as f:
        log = f.read().decode(errors="replace")
    if rc != 75:
        stall.fail("the node stopped with %d after %d hang-ups; 75 expected" % (rc, made))
    if "its reaper is stuck" not in log:
        stall.fail("the node exited with 75 without logging the stuck reaper")
    if "did not finish within" not in log:
        stall.fail("the node exited with 75 but logged no close that did not finish")
    node.start(within_s=30)
    r = node.as_org(["referral", "list"])
    if r.returncode != 0:
        stall.fail("a partner's call after the restart: exit %d: %s"
                   % (r.returncode, r.stderr.strip()))
    node.stop("the restarted node")


def main():
    if len(sys.argv) not in (4, 5):
        print("usage: reaper_test.py HAVEN_NODE HAVEN_CLI SOURCE_DIR [SECONDS]",
              file=sys.stderr)
        return 64
    node_bin, cli, src = sys.argv[1:4]
    seconds = float(sys.argv[4]) if len(sys.argv) == 5 else 120.0

    def body(node):
        made, exited_after = attack(node, seconds)
        if exited_after is None:
            if not stall.answered(node.port, node.pki, timeout=5.0):
                stall.fail("after %d hang-ups the node serves on but does not answer over "
                           "tls+tcp://" % made)
            if node.op(["health"], check=False) != 0:
                stall.fail("after %d hang-ups ipc:// does not answer" % made)
            node.stop()
            print("fault reaper: %d connections hung up mid-reply in %.0f s; the node served "
                  "on (libnng's reaper not stuck) and stopped cleanly" % (made, seconds),
                  flush=True)
            return 0
        check_restart(node, made)
        print("fault reaper: libnng's reaper stuck after %d connections hung up mid-reply; the "
              "node logged it and exited with 75 after %.1f s of the attack; started again on "
              "its data, a partner signed in and called, stopped cleanly"
              % (made, exited_after), flush=True)
        return 0

    return stall.with_node("reaper", node_bin, cli, src, body)


if __name__ == "__main__":
    sys.exit(main())
