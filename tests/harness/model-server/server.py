#!/usr/bin/env python3
"""A scripted model server on 127.0.0.1 for driving real agent CLIs offline (Python 3.11 stdlib).

    python3 tests/harness/model-server/server.py --port 18400 --mode normal --log /tmp/model.jsonl

It speaks the four wire APIs the agent CLIs use, told apart by the request path:

  family     path                                    CLI (version checked)
  responses  POST .../responses (SSE)                codex-cli 0.169.0 (wire_api = "responses")
  anthropic  POST .../v1/messages (SSE or JSON)      Claude Code 2.1.330 (ANTHROPIC_BASE_URL)
  gemini     POST .../models/M:streamGenerateContent gemini-cli 0.61.0 (GOOGLE_GEMINI_BASE_URL)
             (SSE), :generateContent, :countTokens
  chat       POST .../chat/completions (SSE or JSON) opencode 1.18.33 (@ai-sdk/openai-compatible)

The script, for a main request (one that offers tools): when the conversation holds no tool result
yet, answer with ONE shell tool call (the CLI's own shell tool: codex `exec`/`exec_command`, claude
`Bash`, gemini `run_shell_command`, opencode `bash`) running COMMAND below, which writes a file and
commits it; once a tool result is there, answer with the final message FINAL and end the turn.
Side requests (no tools: titles, routing, next-speaker checks) get a short harmless answer.

Modes (--mode):
  normal   the script above.
  error500 every request (side ones and GET included) answers HTTP 500 with the API's error body.
  rate429  main requests answer HTTP 429 with `retry-after: N` (--retry-after, default 20) and a
           message "Rate limit reached. Please try again in Ns." until --rate-window seconds
           (default 30) after the first main request of that family; then the normal script.
           With --rate-after-tool the window starts at the first main request that carries a
           tool result (the limit hits mid-task, after the scripted commit).
  deny     like normal, but the command starts with `rm -rf build-cache &&` (matches the default
           deny-list) so an approval dialog, where the CLI shows one, must be escalated.
With --escalate (any mode) codex's shell call requests escalated permissions, so codex run with
`-a on-request` shows its approval dialog.

Every event is one JSON line on --log: {"t": epoch seconds, "family", "event", ...} with events
`request` (path, main, tool_result; `users`: the last 80 characters of each user message of a
main request, oldest first, for codex/claude/opencode), `tool_call`, `final` (written once the final message's last
byte is sent: the harness measures "final message -> done" from it), `side`, `error` (status).
"""
import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOCK = threading.Lock()
FIRST_MAIN = {}  # family -> epoch seconds of its first main request

FINAL = "Done: I wrote HARNESS.md and committed it."


def command(family):
    """The shell command the model asks for: write a file, commit it."""
    cmd = (
        "printf '%%s\\n' 'written by the scripted model for %s' > HARNESS.md"
        " && git add -A && git commit -q -m 'harness: %s wrote HARNESS.md'" % (family, family)
    )
    if ARGS.mode == "deny":
        cmd = "rm -rf build-cache && " + cmd
    return cmd


def log(family, event, **kw):
    entry = {"t": round(time.time(), 3), "family": family, "event": event}
    entry.update(kw)
    with LOCK, open(ARGS.log, "a") as f:
        f.write(json.dumps(entry) + "\n")


def rate_limited(family, tool_result=False):
    """True while a main request of `family` must get 429 (mode rate429). With --rate-after-tool
    the window starts at the first request that carries a tool result (the limit hits mid-task,
    after the commit: a resumed agent answers with its final message, a restarted one redoes the
    task)."""
    if ARGS.mode != "rate429" or (ARGS.rate_after_tool and not tool_result):
        return False
    now = time.time()
    with LOCK:
        first = FIRST_MAIN.setdefault(family, now)
    return now - first < ARGS.rate_window


def texts(content):
    """The text of a message's content: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content
                         if isinstance(b, dict) and b.get("type") in ("text", "input_text"))
    return ""


def user_texts(messages, role_key="role"):
    """The tail (last 80 characters) of every user message with text, oldest first: a resumed
    conversation carries the task's prompt and then the resume prompt, a restart only the prompt."""
    out = []
    for m in messages or []:
        if isinstance(m, dict) and m.get(role_key) == "user" and m.get("type", "message") == "message":
            t = texts(m.get("content")).strip()
            if t:
                out.append(t[-80:])
    return out


def names_in(x, out):
    """Every {"name": ...} found anywhere in a tools list (nested tools included)."""
    if isinstance(x, dict):
        if isinstance(x.get("name"), str):
            out.add(x["name"])
        for v in x.values():
            names_in(v, out)
    elif isinstance(x, list):
        for v in x:
            names_in(v, out)
    return out


def family_of(path):
    p = path.split("?")[0]
    if p.endswith("/responses"):
        return "responses"
    if "/messages" in p:
        return "anthropic"
    if ":streamGenerateContent" in p or ":generateContent" in p or ":countTokens" in p:
        return "gemini"
    if p.endswith("/chat/completions"):
        return "chat"
    return "other"


ERROR_BODIES = {
    "responses": lambda code, msg: {"error": {"message": msg, "type": "server_error" if code >= 500 else "rate_limit_exceeded", "code": None}},
    "chat": lambda code, msg: {"error": {"message": msg, "type": "server_error" if code >= 500 else "rate_limit_exceeded", "code": None, "param": None}},
    "anthropic": lambda code, msg: {"type": "error", "error": {"type": "api_error" if code >= 500 else "rate_limit_error", "message": msg}},
    "gemini": lambda code, msg: {"error": {"code": code, "message": msg, "status": "INTERNAL" if code >= 500 else "RESOURCE_EXHAUSTED"}},
    "other": lambda code, msg: {"error": {"message": msg}},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    # ------------------------------------------------------------------ plumbing
    def _json(self, code, obj, headers=()):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(b)

    def _sse_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def _fail(self, family, code):
        if code == 429:
            n = ARGS.retry_after
            msg = "Rate limit reached. Please try again in %ds." % n
            headers = [("retry-after", str(n))]
        else:
            msg, headers = "scripted model server: internal error (mode %s)" % ARGS.mode, []
        log(family, "error", status=code, path=self.path)
        self._json(code, ERROR_BODIES[family](code, msg), headers)

    # ------------------------------------------------------------------ GET
    def do_GET(self):
        family = family_of(self.path)
        log(family, "request", method="GET", path=self.path)
        if ARGS.mode == "error500":
            return self._fail(family, 500)
        if self.path.split("?")[0].rstrip("/").endswith("/models"):
            return self._json(200, {"object": "list", "models": [], "has_more": False, "data": [
                {"id": "mock-model", "object": "model", "created": 0, "owned_by": "harness",
                 "type": "model", "display_name": "Mock"}]})
        self._json(404, {"error": {"message": "not found"}})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # ------------------------------------------------------------------ POST
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        family = family_of(self.path)
        try:
            getattr(self, "post_" + family)(body, family)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def post_other(self, body, family):
        log(family, "request", method="POST", path=self.path)
        self._json(404, {"error": {"message": "scripted model server: unknown path %s" % self.path}})

    def _begin(self, family, main, tool_result, users=None):
        """Logs the request (with `users`, the tails of its user messages, when given); answers
        it with an error when the mode says so. True = handled."""
        extra = {} if users is None else {"users": users}
        log(family, "request", method="POST", path=self.path.split("?")[0], main=main, tool_result=tool_result,
            **extra)
        if ARGS.mode == "error500":
            self._fail(family, 500)
            return True
        if main and rate_limited(family, tool_result):
            self._fail(family, 429)
            return True
        return False

    # --- OpenAI Responses (codex) ---------------------------------------------------------------
    def post_responses(self, body, family):
        types = [i.get("type") for i in body.get("input") or [] if isinstance(i, dict)]
        tool_result = "function_call_output" in types or "custom_tool_call_output" in types
        if self._begin(family, True, tool_result, user_texts(body.get("input"))):
            return

        def ev(obj):
            return ("event: %s\ndata: %s\n\n" % (obj["type"], json.dumps(obj))).encode()

        rid = "resp_%d" % int(time.time() * 1000)
        self._sse_start()
        self._send(ev({"type": "response.created", "response": {"id": rid}}))
        time.sleep(ARGS.delay)
        if not tool_result:
            item = self._codex_call(body)
            self._send(ev({"type": "response.output_item.done", "item": item}))
            log(family, "tool_call", tool=item.get("name"))
        else:
            self._send(ev({"type": "response.output_item.done", "item": {
                "type": "message", "role": "assistant", "id": "msg_1",
                "content": [{"type": "output_text", "text": FINAL}]}}))
        self._send(ev({"type": "response.completed", "response": {"id": rid, "usage": {
            "input_tokens": 10, "input_tokens_details": None, "output_tokens": 5,
            "output_tokens_details": None, "total_tokens": 15}}}))
        if tool_result:
            log(family, "final")

    def _codex_call(self, body):
        """codex 0.169 offers shell access as nested tools of its freeform `exec` (JavaScript)
        tool, listed in an `additional_tools` input item; older ones had function tools."""
        names = names_in(body.get("tools") or [], set())
        names_in([i for i in body.get("input") or [] if isinstance(i, dict) and i.get("type") == "additional_tools"], names)
        cmd = command("responses")
        extra = {}
        if ARGS.escalate:  # codex asks its approval only for calls that request it
            extra = {"sandbox_permissions": "require_escalated", "justification": "git commit writes the repository's index"}
        if "exec" in names and "exec_command" not in {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}:
            js = "const r = await tools.exec_command(%s);\ntext(r.output);\n" % json.dumps(dict({"cmd": cmd}, **extra))
            return {"type": "custom_tool_call", "call_id": "call_1", "name": "exec", "input": js}
        if "shell_command" in names:
            name, args = "shell_command", dict({"command": cmd}, **extra)
        elif "exec_command" in names:
            name, args = "exec_command", dict({"cmd": cmd}, **extra)
        else:
            name, args = "shell", dict({"command": ["bash", "-lc", cmd]}, **extra)
        return {"type": "function_call", "call_id": "call_1", "name": name, "arguments": json.dumps(args)}

    # --- Anthropic Messages (claude) ------------------------------------------------------------
    def post_anthropic(self, body, family):
        if "count_tokens" in self.path:
            log(family, "side", path=self.path)
            return self._json(200, {"input_tokens": 100})
        main = bool(body.get("tools"))
        tool_result = any(
            isinstance(b, dict) and b.get("type") == "tool_result"
            for m in body.get("messages") or [] if isinstance(m.get("content"), list)
            for b in m["content"])
        if self._begin(family, main, tool_result, user_texts(body.get("messages")) if main else None):
            return
        model = body.get("model", "claude-mock")
        if not main:
            blocks, stop = [("text", '{"isNewTopic": true, "title": "Harness task"}')], "end_turn"
        elif not tool_result:
            blocks = [("text", "I'll write the file and commit it."),
                      ("tool_use", {"command": command(family), "description": "Write HARNESS.md and commit it"})]
            stop = "tool_use"
        else:
            blocks, stop = [("text", FINAL)], "end_turn"
        if not body.get("stream"):
            content = [{"type": "text", "text": v} if k == "text" else
                       {"type": "tool_use", "id": "toolu_h1", "name": "Bash", "input": v} for k, v in blocks]
            return self._json(200, {"id": "msg_h", "type": "message", "role": "assistant", "model": model,
                                    "content": content, "stop_reason": stop, "stop_sequence": None,
                                    "usage": {"input_tokens": 10, "output_tokens": 20}})

        def ev(obj):
            return ("event: %s\ndata: %s\n\n" % (obj["type"], json.dumps(obj))).encode()

        self._sse_start()
        self._send(ev({"type": "message_start", "message": {
            "id": "msg_h%d" % int(time.time() * 1000), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}}))
        if main:
            time.sleep(ARGS.delay)
        for i, (kind, v) in enumerate(blocks):
            if kind == "text":
                self._send(ev({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}))
                self._send(ev({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": v}}))
            else:
                self._send(ev({"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": "toolu_h1", "name": "Bash", "input": {}}}))
                self._send(ev({"type": "content_block_delta", "index": i, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(v)}}))
                log(family, "tool_call", tool="Bash")
            self._send(ev({"type": "content_block_stop", "index": i}))
        self._send(ev({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                       "usage": {"output_tokens": 20}}))
        self._send(ev({"type": "message_stop"}))
        if main and tool_result:
            log(family, "final")

    # --- Gemini (gemini-cli) --------------------------------------------------------------------
    def post_gemini(self, body, family):
        if ":countTokens" in self.path:
            log(family, "side", path=self.path.split("?")[0])
            return self._json(200, {"totalTokens": 100})
        stream = ":streamGenerateContent" in self.path
        tools = body.get("tools") or []
        main = stream and bool(tools)
        tool_result = any("functionResponse" in p for c in body.get("contents") or [] for p in c.get("parts") or [])
        if self._begin(family, main, tool_result):
            return
        usage = {"promptTokenCount": 10, "candidatesTokenCount": 20, "totalTokenCount": 30}

        def cand(parts, finish=None):
            c = {"content": {"role": "model", "parts": parts}, "index": 0}
            d = {"candidates": [c], "modelVersion": "gemini-mock"}
            if finish:
                c["finishReason"] = finish
                d["usageMetadata"] = usage
            return d

        if not main:
            side = json.dumps({"reasoning": "harness", "model_choice": "flash", "next_speaker": "user",
                               "complexity_reasoning": "simple", "complexity_score": 1})
            if not stream:
                return self._json(200, cand([{"text": side}], "STOP"))
            parts = [[{"text": side}]]
        elif not tool_result:
            names = names_in(tools, set())
            tool = "run_shell_command" if "run_shell_command" in names else sorted(n for n in names if "shell" in n)[:1] or ["run_shell_command"]
            tool = tool if isinstance(tool, str) else tool[0]
            parts = [[{"text": "I'll write the file and commit it."}],
                     [{"functionCall": {"name": tool, "args": {
                         "command": command(family), "description": "Write HARNESS.md and commit it"}}}]]
        else:
            parts = [[{"text": FINAL}]]
        self._sse_start()
        if main:
            time.sleep(ARGS.delay)
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            self._send(("data: %s\r\n\r\n" % json.dumps(cand(p, "STOP" if last else None))).encode())
            if "functionCall" in p[0]:
                log(family, "tool_call", tool=p[0]["functionCall"]["name"])
        if main and tool_result:
            log(family, "final")

    # --- OpenAI Chat Completions (opencode) -----------------------------------------------------
    def post_chat(self, body, family):
        msgs = body.get("messages") or []
        main = bool(body.get("tools"))
        tool_result = any(isinstance(m, dict) and m.get("role") == "tool" for m in msgs)
        if self._begin(family, main, tool_result, user_texts(msgs) if main else None):
            return
        model = body.get("model", "mock-model")
        call = None
        if not main:
            text = "Harness task"
        elif not tool_result:
            names = names_in(body.get("tools"), set())
            tool = "bash" if "bash" in names else next((n for n in sorted(names) if "shell" in n or "bash" in n), "bash")
            text = "I'll write the file and commit it."
            call = {"name": tool, "arguments": json.dumps({
                "command": command(family), "description": "Write HARNESS.md and commit it"})}
        else:
            text = FINAL
        if not body.get("stream"):
            msg = {"role": "assistant", "content": text}
            if call:
                msg["tool_calls"] = [{"id": "call_h1", "type": "function", "function": call}]
            return self._json(200, {"id": "chatcmpl-h", "object": "chat.completion", "created": int(time.time()),
                                    "model": model, "choices": [{"index": 0, "message": msg,
                                                                 "finish_reason": "tool_calls" if call else "stop"}],
                                    "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}})

        def chunk(delta, finish=None):
            return ("data: %s\n\n" % json.dumps({
                "id": "chatcmpl-h", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})).encode()

        self._sse_start()
        self._send(chunk({"role": "assistant", "content": ""}))
        if main:
            time.sleep(ARGS.delay)
        self._send(chunk({"content": text}))
        if call:
            self._send(chunk({"tool_calls": [{"index": 0, "id": "call_h1", "type": "function", "function": call}]}))
            log(family, "tool_call", tool=call["name"])
        self._send(chunk({}, "tool_calls" if call else "stop"))
        self._send(b"data: [DONE]\n\n")
        if main and tool_result:
            log(family, "final")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["normal", "error500", "rate429", "deny"], default="normal")
    p.add_argument("--log", required=True, help="JSONL event log")
    p.add_argument("--delay", type=float, default=0.5, help="seconds before a main answer's content")
    p.add_argument("--retry-after", type=int, default=20, help="seconds named by 429 answers")
    p.add_argument("--escalate", action="store_true",
                   help="codex: the shell call requests escalated permissions (so `-a on-request` asks)")
    p.add_argument("--rate-window", type=float, default=30.0, help="seconds of 429 per family (rate429)")
    p.add_argument("--rate-after-tool", action="store_true",
                   help="rate429: the 429 window starts at the first request carrying a tool result")
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    print("scripted model server on 127.0.0.1:%d, mode %s" % (ARGS.port, ARGS.mode), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
