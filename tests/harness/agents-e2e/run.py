#!/usr/bin/env python3
"""Real agent CLIs end to end under `switchyard run --headless`, against the scripted model server
(tests/harness/model-server/server.py) on 127.0.0.1. Not part of `cargo test`: it installs the CLIs from
npm at pinned versions. Python 3.11 stdlib only.

    python3 tests/harness/agents-e2e/run.py [--cli codex,claude,gemini,opencode]
        [--scenario normal,error500,rate429,deny] [--ask] [--pretrust] [--untrusted]
        [--record DIR] [--keep] [--json FILE]

For each scenario: starts the model server, writes a temp git repo, a fresh HOME with only the
settings that point each CLI at the server (base URL, API key, provider; claude's onboarding and
key approval, gemini's auth type: dialogs the profiles rightly never answer), a manifest with one
task per CLI and a `switchyard.toml` overlay whose `[agents.X]` tables add only `env` (and, with
--record, wrap the shipped command in tests/harness/agents-e2e/ptyrec.py). Then runs
`switchyard run --foreground --headless` and checks the journal, the branches and the server log:

  normal   every task `complete`, its branch holds the scripted commit, and done is detected
           within 2 s of the model's final message (server log `final` -> journal status).
  error500 every task ends `error` (after restarts), never a hang, with evidence.
  rate429  the task is `rate_limited` (paused) at least once, then resumes and ends `complete`.
  rate429mid  like rate429, but the 429 window starts after the scripted commit (at the first
           request carrying a tool result): a resumed agent carries that conversation and answers
           with its final message; a restarted one runs the task again.
  deny     with --ask: the deny-listed command's approval is escalated (`needs_attention`), no commit.
With --ask the CLIs run in their asking modes (ASK_COMMANDS) instead of the shipped commands, so
`normal` checks that switchyard's allow-list answers their approval dialogs.

gemini's local telemetry (the shipped profile's `{gemini_telemetry}`) is exported with --record as
`gemini-<scenario>-a<N>.telemetry.json` (trimmed by telemetry_fixture.py).

Prints a figures table (CLI, scenario, outcome, time to complete, final message -> done) and
exits 1 if a check failed. Work files stay in the printed temp dir with --keep.
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PINNED = {
    "codex": ("@openai/codex", "0.169.0"),
    "claude": ("@anthropic-ai/claude-code", "2.1.330"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
    "opencode": ("opencode-ai", "1.18.33"),
}
FAMILY = {"codex": "responses", "claude": "anthropic", "gemini": "gemini", "opencode": "chat"}
# --ask: the CLIs asking before a shell command, so switchyard's allow/deny policy decides (the
# shipped profiles run with --yolo / bypass and never ask). opencode asks through its config.
ASK_COMMANDS = {
    "codex": ["codex", "--no-daemon", "--ask-for-approval", "on-request",
              "-c", "notify=[\"{switchyard}\", \"hook\", \"--agent\", \"codex\"]", "{prompt}"],  # + --escalate
    "claude": ["claude", "--settings", "{claude_settings}", "--permission-mode", "manual", "{prompt}"],
    "gemini": ["gemini", "--prompt-interactive", "{prompt}"],
    "opencode": ["opencode", "--port", "{opencode_port}", "--prompt", "{prompt}"],
}
TIMEOUT = {"normal": 240, "error500": 420, "rate429": 600, "rate429mid": 600, "deny": 240}
MARKER = "This is a test of"  # in every task prompt (manifest below): the task's own user message
RESUMED = "Continue where you left off"  # the shipped profiles' resume prompt


def say(*a):
    print(*a, flush=True)


def install(prefix, clis):
    """npm install -g --prefix PREFIX of the pinned CLIs (of `clis`) missing or at another version."""
    missing = []
    for cli, (pkg, ver) in PINNED.items():
        if cli not in clis:
            continue
        exe = os.path.join(prefix, "bin", cli)
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        if ver not in out:
            missing.append("%s@%s" % (pkg, ver))
    if missing:
        say("installing into %s: %s" % (prefix, " ".join(missing)))
        subprocess.run(["npm", "install", "-g", "--prefix", prefix, *missing], check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def setup_home(home, port, prefix, trust_dir=None, ask=False, hook_log=None):
    """Each CLI's own config, pointing it at the server. Nothing switchyard's profiles answer
    (trust dialogs, claude's bypass warning) is pre-answered here."""
    base = "http://127.0.0.1:%d" % port
    write(os.path.join(home, ".codex/config.toml"),
          'model_provider = "harness"\n\n'
          '[model_providers.harness]\nname = "harness"\nbase_url = "%s/v1"\n'
          'env_key = "OPENAI_API_KEY"\nwire_api = "responses"\n' % base)
    # codex 0.169 shows its login menu whatever OPENAI_API_KEY says until a key is saved.
    os.makedirs(os.path.join(home, ".codex"), exist_ok=True)
    subprocess.run([os.path.join(prefix, "bin/codex"), "login", "--with-api-key"], input="sk-harness",
                   env=dict(os.environ, HOME=home), capture_output=True, text=True, check=True)
    # claude: onboarding done and the API key approved (its key dialog is never auto-answered).
    key = "sk-ant-harness-0123456789abcdefghij"
    write(os.path.join(home, ".claude.json"), json.dumps({
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [key[-20:]], "rejected": []}}))
    if hook_log:  # recording: claude's raw hook events, beside switchyard's own hooks
        cmd = "%s %s %s" % (sys.executable, os.path.join(ROOT, "tests/harness/agents-e2e/hooklog.py"), hook_log)
        entry = [{"hooks": [{"type": "command", "command": cmd, "timeout": 5}]}]
        events = ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Notification", "Stop", "StopFailure"]
        write(os.path.join(home, ".claude/settings.json"), json.dumps({"hooks": {
            e: [dict(entry[0], matcher="*")] if "ToolUse" in e else entry for e in events}}))
    write(os.path.join(home, ".gemini/settings.json"), json.dumps({
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "security": {"auth": {"selectedType": "gemini-api-key"}}}))
    if trust_dir:  # --pretrust: gemini's trust dialog answered ahead, for the worktrees' folder
        write(os.path.join(home, ".gemini/trustedFolders.json"), json.dumps({trust_dir: "TRUST_FOLDER"}))
    write(os.path.join(home, ".config/opencode/opencode.json"), json.dumps({
        "$schema": "https://opencode.ai/config.json", "autoupdate": False, "model": "harness/mock-model",
        "provider": {"harness": {"npm": "@ai-sdk/openai-compatible", "name": "Harness",
                                 "options": {"baseURL": base + "/v1", "apiKey": "dummy"},
                                 "models": {"mock-model": {"name": "Mock Model"}}}},
        **({"permission": {"bash": "ask"}} if ask else {})}))
    return {
        "codex": {"OPENAI_API_KEY": "sk-harness"},
        "claude": {"ANTHROPIC_BASE_URL": base, "ANTHROPIC_API_KEY": key, "IS_SANDBOX": "1"},
        "gemini": {"GEMINI_API_KEY": "harness", "GOOGLE_GEMINI_BASE_URL": base},
        "opencode": {},
    }


def toml_str(s):
    return json.dumps(s)


def overlay(clis, envs, shipped, record_dir, scenario, ask=False, stall_ms=None, untrusted=False):
    """switchyard.toml beside the manifest: env per agent (tables merge with the shipped profile);
    with recording, the shipped command wrapped in ptyrec.py."""
    lines = ["max_parallel = %d" % len(clis), ""]
    if stall_ms:  # --stall-ms: a shorter stall threshold, to see the stall rules live
        lines += ["[heal]", "stall_ms = %d" % stall_ms, ""]
    for cli in clis:
        lines.append("[agents.%s]" % cli)
        env = dict(shipped[cli].get("env", {}))
        env.update(envs[cli])
        if cli == "gemini" and untrusted:  # --untrusted: gemini's trust dialog shows (see --untrusted)
            env["GEMINI_CLI_TRUST_WORKSPACE"] = ""
        lines.append("env = { %s }" % ", ".join("%s = %s" % (k, toml_str(v)) for k, v in env.items()))
        cmd = ASK_COMMANDS[cli] if ask else shipped[cli]["command"]
        resume = shipped[cli].get("resume")
        if record_dir:
            name = "%s-%s%s" % (cli, scenario, "-ask" if ask else "")
            cmd = record_wrap(cli, cmd, record_dir, name)
            if resume:  # a resumed attempt is recorded like any other
                resume = record_wrap(cli, resume, record_dir, name)
        if record_dir or ask:
            lines.append("command = [%s]" % ", ".join(toml_str(c) for c in cmd))
        if resume:  # the repository's profile, also when the binary was built before it changed
            lines.append("resume = [%s]" % ", ".join(toml_str(c) for c in resume))
        if shipped[cli].get("resume_prompt"):
            lines.append("resume_prompt = %s" % toml_str(shipped[cli]["resume_prompt"]))
        lines.append("")
    return "\n".join(lines)


def record_wrap(cli, cmd, record_dir, name):
    """An argv wrapped for recording: the PTY's bytes through ptyrec.py, the CLI's own channel
    (codex notify, gemini hooks, opencode's event stream) through chanlog.py / sselog.py."""
    chan = os.path.join(record_dir, name + ".channel.jsonl")
    chanlog = os.path.join(ROOT, "tests/harness/agents-e2e/chanlog.py")
    if cli == "codex":  # notify goes through chanlog.py
        cmd = [c.replace("notify=[", "notify=[%s, %s, %s, \"codex\", \"--\", " % (
            toml_str(sys.executable), toml_str(chanlog), toml_str(chan))) for c in cmd]
    elif cli == "gemini":
        cmd = [sys.executable, chanlog, "wrap-gemini", chan, "--"] + cmd
    elif cli == "opencode":
        cmd = [sys.executable, os.path.join(ROOT, "tests/harness/agents-e2e/sselog.py"), chan, "{opencode_port}",
               "--"] + cmd
    out = os.path.join(record_dir, name + "-a{attempt}")
    return ["python3", os.path.join(ROOT, "tests/harness/agents-e2e/ptyrec.py"), out, "--"] + cmd


def parse_ms(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def run_scenario(args, scenario, clis, shipped, tmp):
    port = free_port()
    sdir = os.path.join(tmp, scenario)
    repo, home = os.path.join(sdir, "repo"), os.path.join(sdir, "home")
    os.makedirs(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "harness")
    git(repo, "config", "user.email", "harness@example.invalid")
    write(os.path.join(repo, "README.md"), "# harness repo\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    workdir = os.path.join(sdir, "work")
    envs = setup_home(home, port, args.prefix, os.path.join(workdir, "worktrees") if args.pretrust else None, args.ask,
                      os.path.join(sdir, "claude-hooks.jsonl") if args.record else None)
    record_dir = None
    if args.record:
        record_dir = os.path.join(sdir, "rec")
        os.makedirs(record_dir)
    manifest = {"project": "agents-e2e", "workdir": workdir, "phases": [{"name": "e2e", "tasks": [
        {"id": cli, "title": "Write HARNESS.md and commit it", "agent": cli, "files": ["%s.txt" % cli],
         "dependsOn": [], "status": "pending",
         "prompt": "Create HARNESS.md with one line and commit it with git. This is a test of %s." % cli}
        for cli in clis]}]}
    mpath = os.path.join(repo, "run.json")
    write(mpath, json.dumps(manifest, indent=2))
    write(os.path.join(repo, "switchyard.toml"), overlay(clis, envs, shipped, record_dir, scenario, args.ask,
                                                                  args.stall_ms, args.untrusted))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "manifest")
    slog = os.path.join(sdir, "model-server.jsonl")
    mode = "rate429" if scenario == "rate429mid" else scenario
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/harness/model-server/server.py"),
                               "--port", str(port), "--mode", mode, "--log", slog,
                               "--retry-after", str(args.retry_after), "--rate-window", str(args.rate_window)]
                              + (["--escalate"] if args.ask else [])
                              + (["--rate-after-tool"] if scenario == "rate429mid" else []),
                              stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    env = dict(os.environ, HOME=home, PATH=os.path.join(args.prefix, "bin") + os.pathsep + os.environ["PATH"],
               SWITCHYARD_RUNTIME_DIR=os.path.join(sdir, "rt"), XDG_CONFIG_HOME=os.path.join(home, ".config"))
    env.pop("XDG_RUNTIME_DIR", None)
    say("== %s: %s (repo %s, model server :%d)" % (scenario, ", ".join(clis), repo, port))
    t0 = time.time()
    headless = open(os.path.join(sdir, "headless.log"), "w")
    proc = subprocess.Popen([args.switchyard, "run", "--foreground", "--headless", mpath], cwd=repo, env=env,
                            stdout=headless, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout=args.timeout or TIMEOUT[scenario])
    except subprocess.TimeoutExpired:
        say("   switchyard did not settle within %d s: stopping it" % (args.timeout or TIMEOUT[scenario]))
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    wall = time.time() - t0
    headless.close()
    server.terminate()
    server.wait()
    if record_dir:  # programs a recorder started that outlived it
        for f in os.listdir(record_dir):
            if f.endswith(".pid"):
                try:
                    os.kill(int(open(os.path.join(record_dir, f)).read()), signal.SIGKILL)
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
    return check(scenario, clis, sdir, repo, workdir, slog, code, wall, args.ask)


def check(scenario, clis, sdir, repo, workdir, slog, code, wall, ask=False):
    journal = []
    jpath = os.path.join(workdir, "logs/events.jsonl")
    if os.path.exists(jpath):
        for line in open(jpath):
            try:
                journal.append(json.loads(line))
            except ValueError:
                pass
    events = [json.loads(line) for line in open(slog)] if os.path.exists(slog) else []
    final_manifest = json.load(open(os.path.join(repo, "run.json")))
    tasks = {t["id"]: t for p in final_manifest["phases"] for t in p["tasks"]}
    start_ms = min((e["tsMs"] for e in journal if "tsMs" in e), default=0)
    rows = []
    for cli in clis:
        t = tasks.get(cli, {})
        status = t.get("status")
        mine = [e for e in journal if e.get("task") == cli]
        # when the task settled: its last move to complete, error or needs_attention
        settled = [e["tsMs"] for e in mine if e.get("kind") == "status"
                   and (e.get("data") or {}).get("to") in ("complete", "error", "needs_attention")]
        done_at = settled[-1] if settled else None
        finals = [e["t"] * 1000 for e in events if e.get("family") == FAMILY[cli] and e.get("event") == "final"]
        verdicts = [str(e.get("message")) for e in mine if e.get("kind") in ("verdict", "heal", "status")]
        branch = t.get("branch") or "task/%s" % cli
        try:
            log = git(repo, "log", "--format=%s", "main.." + branch)
        except subprocess.CalledProcessError:
            log = ""
        committed = "HARNESS.md" in log
        ok, why = True, []
        if scenario == "deny" and ask:
            if status != "needs_attention":
                ok, why = False, why + ["status %s, expected needs_attention (deny-listed command)" % status]
            if committed:
                ok, why = False, why + ["the deny-listed command ran"]
        elif scenario in ("normal", "deny"):
            if status != "complete":
                ok, why = False, why + ["status %s" % status]
            if not committed:
                ok, why = False, why + ["no scripted commit on %s" % branch]
        lag = None
        if done_at and finals and status == "complete":
            lag = (done_at - finals[-1]) / 1000
            if scenario == "normal" and lag > 2.0:
                ok, why = False, why + ["done %.1f s after the final message" % lag]
        if scenario == "error500":
            if status != "error":
                ok, why = False, why + ["status %s, expected error" % status]
            if not any(e.get("kind") in ("restart", "heal") or "restart" in str(e.get("message")) for e in mine):
                why.append("(no restart journaled)")
        rate = None
        if scenario.startswith("rate429"):
            rate = rate_figures(cli, mine, events, start_ms)
            if rate["first_rate_limited_s"] is None:
                ok, why = False, why + ["never rate_limited"]
            if status != "complete":
                ok, why = False, why + ["status %s after the pause" % status]
            if scenario == "rate429mid" and rate["tool_calls"] != 1:
                why.append("(the task ran %d times: %d tool calls)" % (rate["tool_calls"], rate["tool_calls"]))
        evidence = (t.get("lastVerdict") or {}).get("evidence") if isinstance(t.get("lastVerdict"), dict) else t.get("lastVerdict")
        rows.append({"cli": cli, "scenario": scenario, "ok": ok, "status": status, "attempts": t.get("attempts"),
                     "to_done_s": round((done_at - start_ms) / 1000, 1) if done_at else None,
                     "final_to_done_s": round(lag, 2) if lag is not None else None,
                     "why": "; ".join(why), "evidence": evidence, "exit": code, "wall_s": round(wall, 1),
                     "dir": sdir, "verdicts": verdicts[-12:], "rate": rate})
    return rows


def rate_figures(cli, mine, events, start_ms):
    """A rate429 run's figures for one task: seconds from the run's start to its first
    `rate_limited` verdict; each pause (seconds, from the journal's heal line) and each wait while
    the agent retried by itself (left alone; its other tasks waited that long); each start after
    the first as `resume` (the profile's resume argv) or `restart`; how many main requests carried
    the earlier conversation (the task's prompt, then the resume prompt); how many tool calls the model made (1 = the task was not run again)."""
    first = next((e["tsMs"] for e in mine if e.get("kind") == "verdict"
                  and (e.get("data") or {}).get("verdict") == "rate_limited"), None)
    pauses, left_alone = [], []
    for e in mine:
        m = str(e.get("message"))
        if e.get("kind") == "heal" and m.startswith("rate limited"):
            until = (e.get("data") or {}).get("untilMs")
            secs = round((until - e["tsMs"]) / 1000, 1) if until else m
            (left_alone if (e.get("data") or {}).get("retrying") else pauses).append(secs)
    starts = ["resume" if (e.get("data") or {}).get("resume") else "restart"
              for e in mine if e.get("kind") == "start"][1:]
    mains = [e for e in events if e.get("family") == FAMILY[cli] and e.get("event") == "request" and e.get("main")]
    carried = 0
    for e in mains:  # claude merges the two user turns into one message: look at the joined text
        text = "\n".join(e.get("users") or [])
        if MARKER in text and text.find(MARKER) < text.rfind(RESUMED):
            carried += 1
    return {"first_rate_limited_s": round((first - start_ms) / 1000, 1) if first else None,
            "pauses_s": pauses, "left_alone_waits_s": left_alone, "starts": starts, "requests_carrying_conversation": carried,
            "main_requests": len(mains),
            "tool_calls": sum(1 for e in events if e.get("family") == FAMILY[cli] and e.get("event") == "tool_call")}


def export(sdir, scenario, clis, dest, ask=False):
    """Copies the recordings of one scenario into DEST as replay fixtures: per worker attempt
    `<cli>-<scenario>-a<N>.{bytes,timing.jsonl,meta.json}`, and per task its journal lines
    (`<cli>-<scenario>.journal.jsonl`: verdicts with the channel that gave them, hook events
    included), the model server's events for its API (`<cli>-<scenario>.model.jsonl`) and claude's
    raw hook events (`claude-<scenario>.hooks.jsonl`, see hooklog.py)."""
    os.makedirs(dest, exist_ok=True)
    rec = os.path.join(sdir, "rec")
    for f in sorted(os.listdir(rec)) if os.path.isdir(rec) else []:
        if not f.endswith(".pid"):
            shutil.copy(os.path.join(rec, f), dest)
    journal = os.path.join(sdir, "work/logs/events.jsonl")
    lines = open(journal).read().splitlines() if os.path.exists(journal) else []
    scenario = scenario + ("-ask" if ask else "")
    hooks = os.path.join(sdir, "claude-hooks.jsonl")
    if "claude" in clis and os.path.exists(hooks):
        shutil.copy(hooks, os.path.join(dest, "claude-%s.hooks.jsonl" % scenario))
    # gemini's local telemetry (GEMINI_TELEMETRY_OUTFILE), trimmed to the API records, per attempt
    rundir = os.path.join(sdir, "work/run")
    for f in sorted(os.listdir(rundir)) if os.path.isdir(rundir) else []:
        if f.startswith("gemini-telemetry-") and f.endswith(".json") and "gemini" in clis:
            attempt = f[len("gemini-telemetry-"):-len(".json")].rsplit("-", 1)[-1]
            subprocess.run([sys.executable, os.path.join(ROOT, "tests/harness/agents-e2e/telemetry_fixture.py"),
                            os.path.join(rundir, f),
                            os.path.join(dest, "gemini-%s-%s.telemetry.json" % (scenario, attempt))], check=False)
    model = os.path.join(sdir, "model-server.jsonl")
    events = open(model).read().splitlines() if os.path.exists(model) else []
    for cli in clis:
        with open(os.path.join(dest, "%s-%s.journal.jsonl" % (cli, scenario)), "w") as f:
            f.writelines(l + "\n" for l in lines if json.loads(l).get("task") == cli)
        with open(os.path.join(dest, "%s-%s.model.jsonl" % (cli, scenario)), "w") as f:
            f.writelines(l + "\n" for l in events if json.loads(l).get("family") == FAMILY[cli])


def main():
    p = argparse.ArgumentParser(description="real agent CLIs end to end under switchyard")
    p.add_argument("--cli", default="codex,claude,gemini,opencode")
    p.add_argument("--scenario", default="normal,error500,rate429")
    p.add_argument("--prefix", default=os.path.join(ROOT, "target/agents-e2e/npm"), help="npm prefix for the CLIs")
    p.add_argument("--switchyard", default=os.path.join(ROOT, "target/release/switchyard"))
    p.add_argument("--record", help="copy each worker's recording (bytes, timing, meta) and the model server log here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--no-install", action="store_true")
    p.add_argument("--pretrust", action="store_true",
                   help="mark the worktrees' folder trusted in gemini's settings (works around its trust-dialog race)")
    p.add_argument("--untrusted", action="store_true",
                   help="gemini: GEMINI_CLI_TRUST_WORKSPACE emptied, so its trust dialog shows and the profile's "
                        "answer rule meets it (the shipped profile trusts the worktree by that variable)")
    p.add_argument("--retry-after", type=int, default=20)
    p.add_argument("--rate-window", type=float, default=300,
                   help="seconds of 429 per CLI (long enough that each CLI gives up its own retries)")
    p.add_argument("--json", help="write the rows as JSON here")
    p.add_argument("--stall-ms", type=int, help="[heal] stall_ms in the overlay (default: the shipped 300000)")
    p.add_argument("--timeout", type=float, help="seconds before switchyard is stopped (default per scenario: %s)"
                   % ", ".join("%s %d" % kv for kv in TIMEOUT.items()))
    p.add_argument("--ask", action="store_true",
                   help="run the CLIs in their asking modes (ASK_COMMANDS): normal = approvals answered by the "
                        "policy, deny = the deny-listed command escalated")
    args = p.parse_args()
    clis = [c for c in args.cli.split(",") if c]
    for c in clis:
        if c not in PINNED:
            sys.exit("unknown CLI %r: one of %s" % (c, ", ".join(PINNED)))
    if not os.access(args.switchyard, os.X_OK):
        sys.exit("%s: not built; run `cargo build --release` first" % args.switchyard)
    if not args.no_install:
        install(args.prefix, clis)
    shipped = tomllib.load(open(os.path.join(ROOT, "assets/switchyard.toml"), "rb"))["agents"]
    # Not under /tmp: profiles that give gemini its hooks as a system settings file
    # ({gemini_settings}) need a root-owned path (the shipped one uses {gemini_home}).
    base = os.path.join(ROOT, "target/agents-e2e/runs")
    os.makedirs(base, mode=0o755, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="sy-agents-e2e-", dir=base)
    rows = []
    try:
        for scenario in args.scenario.split(","):
            rows += run_scenario(args, scenario, clis, shipped, tmp)
            if args.record:
                export(os.path.join(tmp, scenario), scenario, clis, args.record, args.ask)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    say("")
    say("%-9s %-9s %-5s %-14s %-8s %-14s %-16s %s" % ("cli", "scenario", "ok", "status", "attempts", "settled (s)", "final->done (s)", "notes"))
    for r in rows:
        say("%-9s %-9s %-5s %-14s %-8s %-14s %-16s %s" % (
            r["cli"], r["scenario"], "yes" if r["ok"] else "NO", r["status"], r["attempts"],
            r["to_done_s"], r["final_to_done_s"], r["why"] or (r["evidence"] or "")))
    for r in rows:
        if r.get("rate"):
            say("%-9s %-9s %s" % (r["cli"], r["scenario"], json.dumps(r["rate"])))
    if args.json:
        write(args.json, json.dumps(rows, indent=2))
    if args.keep:
        say("work files kept in %s" % tmp)
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
