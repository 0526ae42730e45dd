#!/usr/bin/env python3
"""Cuts a recording (NAME.bytes + NAME.timing.jsonl, the replay format of src/host/replay.rs) down to
its first SECONDS, for fixtures of sessions that ran for minutes (a CLI spinning on a dead API
writes megabytes). Rewrites both files in place; NAME.meta.json gets `"trimmed_at_ms"`.

    python3 tests/harness/agents-e2e/trim.py tests/fixtures/e2e/gemini-error500-a1 90
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: trim.py NAME SECONDS")
    base, until = sys.argv[1], float(sys.argv[2]) * 1000
    data = open(base + ".bytes", "rb").read()
    out, lines, off = bytearray(), [], 0
    for line in open(base + ".timing.jsonl"):
        if not line.strip():
            continue
        e = json.loads(line)
        if e["t_ms"] > until:
            break
        if e.get("dir") == "out":
            chunk = data[e["off"]:e["off"] + e["len"]]
            e["off"] = off
            out += chunk
            off += len(chunk)
        lines.append(json.dumps(e) + "\n")
    open(base + ".bytes", "wb").write(out)
    open(base + ".timing.jsonl", "w").writelines(lines)
    try:
        meta = json.load(open(base + ".meta.json"))
    except (OSError, ValueError):
        meta = {}
    meta["trimmed_at_ms"] = until
    json.dump(meta, open(base + ".meta.json", "w"))
    print("%s: kept %d bytes, %d timing lines (up to %.0f ms)" % (base, len(out), len(lines), until))


if __name__ == "__main__":
    main()
