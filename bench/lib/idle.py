#!/usr/bin/env python3
"""Hold N idle SMTP connections open.

    idle.py HOST PORT N READY_FILE

Opens N TCP connections, at most 100 connecting at a time (below a listen
backlog of 128, so no handshake is lost to a full accept queue), reads each
one's greeting, and writes "OPEN GREETED_220 REFUSED CLOSED FAILED" to
READY_FILE once every connection has its greeting, has been closed, or 60 s
have passed. Then it sends nothing and keeps the connections until it gets
SIGTERM (or its parent exits), and writes the final counts to
READY_FILE.final (connections the server closed in the meantime count as
closed). Needs `ulimit -n` above N.
"""
import os
import selectors
import signal
import socket
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sel = selectors.DefaultSelector()
state = {}  # sock -> "connecting" | "greeting" | "open" | "refused"
buf = {}
counts = {"failed": 0, "closed": 0}


def put(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def summary():
    open_ = sum(1 for s in state.values() if s == "open")
    refused = sum(1 for s in state.values() if s == "refused")
    return f"{open_ + refused} {open_} {refused} {counts['closed']} {counts['failed']}\n"


def drop(sock, why):
    counts[why] += 1
    try:
        sel.unregister(sock)
    except (KeyError, ValueError):
        pass
    state.pop(sock, None)
    buf.pop(sock, None)
    sock.close()


def handle(sock, mask):
    st = state.get(sock)
    if st == "connecting":
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            drop(sock, "failed")
            return
        state[sock] = "greeting"
        sel.modify(sock, selectors.EVENT_READ)
        return
    try:
        data = sock.recv(4096)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        drop(sock, "closed")
        return
    if st == "greeting":
        buf[sock] = buf.get(sock, b"") + data
        line = buf[sock]
        if b"\n" in line:
            code = line[:3]
            state[sock] = "open" if code == b"220" else "refused"
            buf.pop(sock, None)


def connecting():
    return sum(1 for s in state.values() if s in ("connecting", "greeting"))


started = 0
deadline = time.time() + 60
while time.time() < deadline:
    while started < n and connecting() < 100:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        started += 1
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            counts["failed"] += 1
            s.close()
            continue
        state[s] = "connecting"
        sel.register(s, selectors.EVENT_WRITE)
    if started >= n and connecting() == 0:
        break
    for key, mask in sel.select(timeout=0.5):
        handle(key.fileobj, mask)
put(ready, summary())

stop = False


def handler(_sig, _frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, handler)
signal.signal(signal.SIGINT, handler)
parent = os.getppid()
while not stop and os.getppid() == parent:
    for key, mask in sel.select(timeout=1.0):
        handle(key.fileobj, mask)
put(ready + ".final", summary())
