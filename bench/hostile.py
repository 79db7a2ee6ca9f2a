#!/usr/bin/env python3
"""Hostile clients for bench/hostile.sh (loopback only, bounded in count and time).

  chunks PORT HEADER BYTES N        N clients at once, each POSTing BYTES as 1-byte chunks
  stall  PORT HEADER BYTES N SRC    N clients from source address SRC, each announcing
                                    BYTES and sending all but the last byte, then waiting
                                    (at most 40 s) for an answer
  slow-read PORT HEADER N SECONDS   N clients POSTing a small job and not reading the answer
                                    for SECONDS

Each prints one line per client: the HTTP status (or `none`) and the seconds it took.
"""

import socket
import sys
import threading
import time


def request_head(port, header, extra):
    return (
        f"POST /process/request/bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nLivepeer: {header}\r\n"
        f"Content-Type: application/octet-stream\r\n{extra}\r\n"
    ).encode()


def status_of(sock, limit):
    sock.settimeout(limit)
    try:
        first = sock.recv(64)
    except (socket.timeout, ConnectionError):
        return "none"
    parts = first.split(b" ")
    return parts[1].decode() if len(parts) > 1 else "none"


def run_all(n, fn):
    out = [None] * n
    def one(i):
        t0 = time.monotonic()
        status = fn(i)
        out[i] = f"{status} {time.monotonic() - t0:.1f}"
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\n".join(out), flush=True)


def chunks(port, header, size, n):
    body = b"1\r\nx\r\n" * size + b"0\r\n\r\n"
    def one(_):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request_head(port, header, "Transfer-Encoding: chunked\r\n") + body)
        status = status_of(s, 120)
        s.close()
        return status
    run_all(n, one)


def stall(port, header, size, n, src):
    body = b"\0" * (size - 1)
    def one(_):
        s = socket.socket()
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(request_head(port, header, f"Content-Length: {size}\r\n") + body)
        except ConnectionError:
            return "reset"
        status = status_of(s, 40)
        s.close()
        return status
    run_all(n, one)


def slow_read(port, header, n, seconds):
    def one(_):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(request_head(port, header, "Content-Length: 2\r\n") + b"{}")
        time.sleep(seconds)
        status = status_of(s, 5)
        s.close()
        return status
    run_all(n, one)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "chunks":
        chunks(int(args[0]), args[1], int(args[2]), int(args[3]))
    elif mode == "stall":
        stall(int(args[0]), args[1], int(args[2]), int(args[3]), args[4])
    elif mode == "slow-read":
        slow_read(int(args[0]), args[1], int(args[2]), float(args[3]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
