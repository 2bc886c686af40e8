"""The programs of tests/tree.rs: small servers and clients that run as
separate processes of one process tree, natively or under lkl-run.

Usage: tree.py MODE ARGS...  Readiness goes through a file on the host
(READY): "ok" once the server is set up, "ERR ..." if it could not be.
"""

import functools
import http.server
import os
import socket
import socketserver
import sys
import time

# The stream the server sends and the client checks: 1 MiB, not periodic
# at any small length.
PATTERN = bytes((i * 7 + i // 251) & 0xFF for i in range(1 << 20))


def ready(path, what):
    with open(path + ".tmp", "w") as f:
        f.write(what)
    os.rename(path + ".tmp", path)


def wait_ready(path, seconds=20):
    end = time.time() + seconds
    while time.time() < end:
        try:
            with open(path) as f:
                state = f.read()
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        if state != "ok":
            sys.exit(f"the server could not start: {state}")
        return
    sys.exit(f"no server: {path} did not appear within {seconds} s")


def server(addr, port, path):
    """One TCP connection: send PATTERN, then close."""
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        s.listen()
    except OSError as e:
        ready(path, f"ERR bind/listen {addr}:{port}: {e}")
        raise
    ready(path, "ok")
    s.settimeout(30)
    c, peer = s.accept()
    c.sendall(PATTERN)
    c.close()
    print("server sent", len(PATTERN), "to", peer[0])


def client(addr, port, path):
    wait_ready(path)
    s = socket.create_connection((addr, int(port)), timeout=30)
    got = bytearray()
    while True:
        d = s.recv(1 << 16)
        if not d:
            break
        got += d
    print("client got", len(got), "bytes, same", bytes(got) == PATTERN)


def echo(addr, port, path):
    """A UDP echo server, until killed."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, int(port)))
    except OSError as e:
        ready(path, f"ERR bind {addr}:{port}: {e}")
        raise
    ready(path, "ok")
    while True:
        d, peer = s.recvfrom(2048)
        s.sendto(d, peer)


def ping(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    msg = b"ping %d" % os.getpid()
    s.sendto(msg, (addr, int(port)))
    d, _ = s.recvfrom(2048)
    print("echo ok" if d == msg else f"echo wrong: {d!r}")


def block(addr, port, path):
    """Binds UDP and TCP (listening) PORT, then blocks in recv until killed."""
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((addr, int(port)))
        t = socket.socket()
        t.bind((addr, int(port)))
        t.listen()
    except OSError as e:
        ready(path, f"ERR bind {addr}:{port}: {e}")
        raise
    ready(path, "ok")
    u.recv(10)
    print("recv returned: nothing should have been sent")


def rebind(addr, port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((addr, int(port)))
    t = socket.socket()
    t.bind((addr, int(port)))
    t.listen()
    print("rebound", addr, port)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class ForkingHTTPServer(socketserver.ForkingMixIn, http.server.HTTPServer):
    allow_reuse_address = True


def httpd(addr, port, root):
    """A forking HTTP server of ROOT's files: each request in a child."""
    handler = functools.partial(Quiet, directory=root)
    ForkingHTTPServer((addr, int(port)), handler).serve_forever()


MODES = {
    "server": server,
    "client": client,
    "echo": echo,
    "ping": ping,
    "block": block,
    "rebind": rebind,
    "httpd": httpd,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
