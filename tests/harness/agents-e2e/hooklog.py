#!/usr/bin/env python3
"""A Claude Code hook command that only records: appends {"t": epoch s, "hook": the payload claude
sent on stdin} as one line to FILE, prints nothing and exits 0 (no decision, so claude goes on).
The harness installs it in the fake HOME's ~/.claude/settings.json when recording, next to the
hooks switchyard's own --settings file adds, so fixtures hold claude's raw hook events.

    hooklog.py FILE
"""
import json
import sys
import time


def main():
    raw = sys.stdin.read()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = {"unparsed": raw[:4000]}
    with open(sys.argv[1], "a") as f:
        f.write(json.dumps({"t": round(time.time(), 3), "hook": payload}) + "\n")


if __name__ == "__main__":
    main()
