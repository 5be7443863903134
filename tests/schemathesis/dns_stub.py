"""A name server on loopback that answers every query NXDOMAIN (UDP and TCP).

run.sh points `[delivery] nameservers` here, so the fuzzed domain check
(GET /v1/admin/accounts/{account}/domains/{domain}/check) answers at once
("missing") and no lookup for a generated name leaves the machine.

    python3 dns_stub.py PORTFILE    # binds 127.0.0.1:0, writes the port
"""

import socket
import sys
import threading


def answer(query: bytes) -> bytes | None:
    if len(query) < 12:
        return None
    qid, flags = query[0:2], query[2]
    opcode_rd = flags & 0x79  # keep opcode and RD
    header = qid + bytes([0x80 | opcode_rd, 0x83]) + query[4:6] + b"\0\0\0\0\0\0"
    return strip_additional(header + query[12:])


def serve_udp(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(4096)
        reply = answer(data)
        if reply:
            sock.sendto(reply, peer)


def strip_additional(reply: bytes) -> bytes:
    # Keep the header and the question section only (no EDNS record).
    pos = 12
    for _ in range(int.from_bytes(reply[4:6], "big")):
        while pos < len(reply) and reply[pos] != 0:
            pos += 1 + reply[pos]
        pos += 5
    return reply[:pos]


def serve_tcp_conn(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(5)
        try:
            while True:
                n = conn.recv(2)
                if len(n) < 2:
                    return
                size = int.from_bytes(n, "big")
                data = b""
                while len(data) < size:
                    chunk = conn.recv(size - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = answer(data)
                if reply:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            return


def bind_pair() -> tuple[socket.socket, socket.socket, int]:
    """A UDP and a TCP socket on the same free loopback port."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp, port
    raise SystemExit("dns_stub: no free port for UDP and TCP")


def main() -> None:
    udp, tcp, port = bind_pair()
    threading.Thread(target=serve_udp, args=(udp,), daemon=True).start()
    with open(sys.argv[1], "w") as f:
        f.write(f"{port}\n")
    while True:
        conn, _ = tcp.accept()
        threading.Thread(target=serve_tcp_conn, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
