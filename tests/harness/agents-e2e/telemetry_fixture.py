#!/usr/bin/env python3
"""Trims a gemini-cli local telemetry file (GEMINI_TELEMETRY_OUTFILE: OpenTelemetry records, one
pretty-printed JSON object after another) into a replay fixture:

    telemetry_fixture.py SRC DEST

Keeps the log records of the API (`gemini_cli.api_request`, `api_response`, `api_error`,
`network_retry_attempt`) with their `hrTime` and the attributes switchyard reads (`event.name`,
`status_code`, `error.message`, `model`, `attempt`, `max_attempts`), plus the first metrics
record (switchyard must skip it), written the way gemini writes them (indented, one after
another). Session and installation ids, host and process details are left out.
Checked against gemini-cli 0.61.0.
"""
import json
import sys

KEEP = ("gemini_cli.api_request", "gemini_cli.api_response", "gemini_cli.api_error",
        "gemini_cli.network_retry_attempt")
ATTRS = ("event.name", "event.timestamp", "status_code", "error.message", "model", "attempt", "max_attempts")


def records(text):
    dec, i = json.JSONDecoder(), 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError:
            break  # cut off at the end (the CLI was still writing)
        yield obj


def main():
    src, dest = sys.argv[1], sys.argv[2]
    out, metrics = [], False
    for r in records(open(src).read()):
        a = r.get("attributes") if isinstance(r, dict) else None
        if isinstance(a, dict) and a.get("event.name") in KEEP:
            out.append({"hrTime": r.get("hrTime"), "attributes": {k: a[k] for k in ATTRS if k in a}})
        elif isinstance(r, dict) and "scopeMetrics" in r and not metrics:
            metrics = True
            out.append({"resource": {}, "scopeMetrics": []})
    with open(dest, "w") as f:
        f.writelines(json.dumps(o, indent=2) + "\n" for o in out)
    print("%s: %d records" % (dest, len(out)))


if __name__ == "__main__":
    main()
