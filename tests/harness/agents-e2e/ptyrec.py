#!/usr/bin/env python3
"""A transparent PTY recorder: runs COMMAND in a pseudo-terminal of its own, passes every byte
through both ways unchanged, and records the output with its timing in switchyard's replay
format (src/host/replay.rs), so a worker's real session under `switchyard run` becomes a fixture.

    ptyrec.py OUTBASE -- COMMAND ARGS...

Writes OUTBASE.bytes (raw output), OUTBASE.timing.jsonl ({"t_ms", "dir": "out"|"in", "len",
"off"} per chunk, ms from the start; "in" lines are what reached the program and replay skips
them), OUTBASE.meta.json ({"size": {"cols", "rows"}, "argv", "exit"}) and OUTBASE.pid (the
program's pid, for the harness's clean-up). Python 3.11 stdlib only, Linux.

The window size follows the outer terminal (SIGWINCH). SIGTERM/SIGINT/SIGHUP are passed on to the
program; the program gets SIGKILL if this recorder dies (PR_SET_PDEATHSIG). Exits with the
program's status (128 + signal number when it was killed by a signal).
"""
import ctypes
import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
import tty


def winsize(fd):
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows or 40, cols or 120
    except OSError:
        return 40, 120


def set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


STARTED_MS = int(time.time() * 1000)


def write_meta(base, rows, cols, argv, code):
    """OUTBASE.meta.json; `exit` is null until the program has ended; `started_at_ms` (epoch ms
    of t_ms = 0) lines the recording up with the journal's `tsMs` and the model server's `t`."""
    with open(base + ".meta.json", "w") as f:
        json.dump({"size": {"cols": cols, "rows": rows}, "argv": argv, "exit": code,
                   "started_at_ms": STARTED_MS}, f)


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: ptyrec.py OUTBASE -- COMMAND ARGS...")
    base, argv = sys.argv[1], sys.argv[3:]
    rows, cols = winsize(0)
    pid, master = pty.fork()
    if pid == 0:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, ("ptyrec: cannot run %s: %s\n" % (argv[0], e)).encode())
            os._exit(127)
    set_winsize(master, rows, cols)
    with open(base + ".pid", "w") as f:
        f.write("%d\n" % pid)
    write_meta(base, rows, cols, argv, None)

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)
    signal.signal(signal.SIGWINCH, lambda *_: set_winsize(master, *winsize(0)))

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    start = time.monotonic()
    out = open(base + ".bytes", "wb")
    timing = open(base + ".timing.jsonl", "w")
    off = 0
    stdin_open = True
    try:
        while True:
            fds = [master] + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(fds, [], [], 1.0)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                t = round((time.monotonic() - start) * 1000, 1)
                out.write(data)
                timing.write(json.dumps({"t_ms": t, "dir": "out", "len": len(data), "off": off}) + "\n")
                off += len(data)
                out.flush()  # a SIGKILL of this recorder must not lose what was seen
                timing.flush()
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    stdin_open = False
                    continue
                t = round((time.monotonic() - start) * 1000, 1)
                timing.write(json.dumps({"t_ms": t, "dir": "in", "len": len(data)}) + "\n")
                os.write(master, data)
    finally:
        out.close()
        timing.close()
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    write_meta(base, rows, cols, argv, code)
    sys.exit(code)


if __name__ == "__main__":
    main()
