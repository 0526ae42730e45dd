#!/usr/bin/env python3
"""Turns the channel events a harness recording captured (`<cli>-<scenario>.channel.jsonl` from
chanlog.py / sselog.py, `claude-<scenario>.hooks.jsonl` from hooklog.py) into replay fixtures in
tests/fixtures/channels/ (format: that directory's README). The expected verdict of each event is
written here from the CLIs' documented meaning of the event, independently of switchyard's
reader (src/core/channels.rs), so `cargo test` checks the reader against it. Events that say nothing
about the agent's state and repeat (opencode's message/part/plugin updates) are dropped; paths
under the harness's temp dir are shortened to /HARNESS.

    channel_fixtures.py SRC_DIR DEST_DIR
"""
import json
import os
import re
import sys

RATE = re.compile(r"(?i)rate limit|too many requests|\b429\b|quota")


def expect(channel, e):
    """(expected verdict kind, note) for one event, or None to leave it out."""
    if channel in ("claude", "gemini"):
        name = e.get("hook_event_name", "")
        if channel == "claude":
            table = {"SessionStart": "running", "UserPromptSubmit": "running", "PreToolUse": "running",
                     "PostToolUse": "running", "Stop": "idle"}
            if name == "StopFailure":
                m = e.get("message") or e.get("error") or ""
                return ("rate_limited" if RATE.search(m) else "error"), "the turn failed: " + m
            if name == "PermissionRequest":
                return "waiting_input", "permission dialog about to show"
        else:
            table = {"SessionStart": "running", "BeforeAgent": "running", "BeforeModel": "running",
                     "BeforeTool": "running", "AfterTool": "running", "AfterAgent": "idle"}
            if name == "Notification":
                perm = e.get("notification_type") == "ToolPermission" or "permission" in e.get("message", "").lower()
                return ("waiting_input" if perm else "none"), "notification: %s" % e.get("message", "")
        if name in table:
            return table[name], name
        return "none", name
    if channel == "codex":
        t = e.get("type", "")
        return ("idle" if t == "agent-turn-complete" else "none"), t
    t = e.get("type", "")
    p = e.get("properties", {})
    if t == "session.status":
        st = p.get("status", {})
        k = st.get("type")
        if k == "retry":
            m = st.get("message", "")
            return ("rate_limited" if RATE.search(m) else "running"), "retrying: " + m
        return {"busy": "running", "idle": "idle"}.get(k, "none"), "status " + str(k)
    if t == "session.idle":
        return "idle", t
    if t in ("permission.asked", "permission.updated"):
        return "waiting_input", "asks: %s %s" % (p.get("permission", ""), " ".join(p.get("patterns", [])))
    if t == "permission.replied":
        return "running", t
    if t == "session.error":
        m = (p.get("error", {}).get("data") or {}).get("message") or p.get("error", {}).get("name", "")
        return ("rate_limited" if RATE.search(m) else "error"), "error: " + m
    if t in ("server.connected", "session.created"):
        return "none", t
    return None


TMP = re.compile(r"/[^\s\"']*?sy-agents-e2e-[A-Za-z0-9_]+")


def shorten(v, root=None):
    if isinstance(v, str):
        return TMP.sub("/HARNESS", v)
    if isinstance(v, list):
        return [shorten(x) for x in v]
    if isinstance(v, dict):
        return {k: shorten(x) for k, x in v.items()}
    return v


def main():
    src, dest = sys.argv[1], sys.argv[2]
    root = None
    for f in sorted(os.listdir(src)):
        if f.endswith(".channel.jsonl"):
            name = f[: -len(".channel.jsonl")]
        elif f.endswith(".hooks.jsonl"):
            name = f[: -len(".hooks.jsonl")]
        else:
            continue
        out = []
        for line in open(os.path.join(src, f)):
            rec = json.loads(line)
            channel = rec.get("channel", "claude")
            event = rec.get("event", rec.get("hook"))
            got = expect(channel, event)
            if got is None:
                continue
            kind, note = got
            out.append({"channel": channel, "event": shorten(event, root), "expect": kind,
                        "note": "%s (recorded: %s)" % (note[:160], name)})
        if out:
            with open(os.path.join(dest, name + ".jsonl"), "w") as fh:
                fh.writelines(json.dumps(o, ensure_ascii=False) + "\n" for o in out)
            print("%s: %d events" % (name, len(out)))


if __name__ == "__main__":
    main()
