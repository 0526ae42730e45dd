#!/usr/bin/env python3
"""Records opencode's server events, then becomes opencode. Used by the harness when recording:

    sselog.py FILE PORT -- opencode [ARGS...]

Forks a logger that connects to http://127.0.0.1:PORT/event (retrying for 60 s while opencode
starts) and appends each `data:` payload as {"t": epoch s, "channel": "opencode", "event": ...}
to FILE until the stream ends; the parent execs the command (same pid, so the PTY recorder and
switchyard see opencode itself).
"""
import http.client
import json
import os
import sys
import time


def follow(path, port):
    """Like switchyard's own reader: a connection silent for 2 s (opencode 1.18.33 accepts one a
    moment before it serves it) is made again."""
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/event", headers={"Accept": "text/event-stream"})
            resp = conn.getresponse()
            if resp.status // 100 == 2 and read(path, conn, resp):
                return
        except OSError:
            pass
        time.sleep(0.2)


def read(path, conn, resp):
    """Appends the stream's payloads to PATH; False if it was silent before its first event."""
    data, seen = [], False
    with open(path, "a") as out:
        try:
            while True:
                raw = resp.fp.readline()
                if not raw:
                    return seen
                if not seen:
                    conn.sock.settimeout(None)
                    seen = True
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif not line and data:
                    text = "\n".join(data)
                    data = []
                    try:
                        event = json.loads(text)
                    except ValueError:
                        event = {"unparsed": text[:4000]}
                    out.write(json.dumps({"t": round(time.time(), 3), "channel": "opencode", "event": event}) + "\n")
                    out.flush()
        except OSError:
            return seen


def main():
    sep = sys.argv.index("--")
    path, port, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[sep + 1:]
    if os.fork() == 0:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        try:
            follow(path, port)
        finally:
            os._exit(0)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
