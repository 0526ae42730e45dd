#!/usr/bin/env python3
"""Records one channel event, then hands it on unchanged. Used by the harness when recording:

    chanlog.py FILE CHANNEL -- CMD [ARGS...]

Appends {"t": epoch s, "channel": CHANNEL, "event": <payload>} to FILE, where the payload is the
JSON on stdin (claude and gemini hooks) or, when stdin is empty, the last argument (codex's
`notify` program gets its JSON as the last argv element); then runs CMD ARGS... with the same
stdin and argv and exits with its status, its stdout passed through (a hook's reply).

    chanlog.py wrap-gemini FILE -- gemini [ARGS...]

rewrites the settings file with switchyard's hooks (the user settings in $GEMINI_CLI_HOME/.gemini,
switchyard's per-run gemini home; older profiles: the file $GEMINI_CLI_SYSTEM_SETTINGS_PATH names)
so that each hook command runs through `chanlog.py FILE gemini -- sh -c COMMAND`, points the
variable at the copy (for GEMINI_CLI_HOME: a sibling home whose other entries link to the
original's) and execs gemini: the fixtures get gemini's raw hook payloads while switchyard's hooks
still answer.
"""
import json
import os
import shlex
import subprocess
import sys
import time


def recorded(settings, path):
    for groups in settings.get("hooks", {}).values():
        for group in groups:
            for hook in group.get("hooks", []):
                if "hook --agent gemini" in hook.get("command", ""):
                    hook["command"] = "%s %s %s gemini -- sh -c %s" % (
                        sys.executable, os.path.abspath(__file__), path, shlex.quote(hook["command"]))
    return settings


def wrap_gemini(path, cmd):
    home = os.environ.get("GEMINI_CLI_HOME")
    src = os.environ.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
    if home and os.path.exists(os.path.join(home, ".gemini/settings.json")):
        copy = home.rstrip("/") + ".recorded"
        os.makedirs(os.path.join(copy, ".gemini"), exist_ok=True)
        for name in os.listdir(os.path.join(home, ".gemini")):
            link = os.path.join(copy, ".gemini", name)
            if name != "settings.json" and not os.path.lexists(link):
                os.symlink(os.path.join(home, ".gemini", name), link)
        settings = recorded(json.load(open(os.path.join(home, ".gemini/settings.json"))), path)
        with open(os.path.join(copy, ".gemini/settings.json"), "w") as f:
            json.dump(settings, f)
        os.environ["GEMINI_CLI_HOME"] = copy
    elif src and os.path.exists(src):
        copy = src + ".recorded.json"
        with open(copy, "w") as f:
            json.dump(recorded(json.load(open(src)), path), f)
        os.environ["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = copy
    os.execvp(cmd[0], cmd)


def main():
    if sys.argv[1] == "wrap-gemini":
        return wrap_gemini(sys.argv[2], sys.argv[sys.argv.index("--") + 1:])
    sep = sys.argv.index("--")
    path, channel = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sep + 1:]
    raw = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    text = raw if raw.strip() else (cmd[-1] if cmd else "")
    try:
        event = json.loads(text)
    except ValueError:
        event = {"unparsed": text[:4000]}
    with open(path, "a") as f:
        f.write(json.dumps({"t": round(time.time(), 3), "channel": channel, "event": event}) + "\n")
    if not cmd:
        return 0
    return subprocess.run(cmd, input=raw.encode()).returncode


if __name__ == "__main__":
    sys.exit(main())
