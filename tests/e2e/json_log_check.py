#!/usr/bin/env python3
"""Check a ferryd log written with --log-format json (tests/e2e/89_log_format.c).

Every line must be valid UTF-8 and one JSON object with "time" (RFC 3339,
UTC, milliseconds), "level", "pid", "thread" and "msg"; a connection's event
has both "client" (a number) and "peer" ("HOST:PORT"). Options ask for more:
threads that must have logged, messages that must appear (substrings), and
at least one connection event. Exits 0, or 1 naming the first problem.
"""
import argparse
import json
import re
import sys

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PEER = re.compile(r"^(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):\d+$")
LEVELS = {"error", "warn", "info", "debug"}
TYPES = {"time": str, "level": str, "pid": int, "thread": str, "msg": str}


def reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def check_line(raw):
    """The parsed object of a line, or raise ValueError saying why not."""
    text = raw.decode("utf-8")  # strict: invalid UTF-8 raises
    obj = json.loads(text, parse_constant=reject_constant)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    for key, typ in TYPES.items():
        if not isinstance(obj.get(key), typ) or isinstance(obj.get(key), bool):
            raise ValueError(f'"{key}" missing or not a {typ.__name__}')
    if not TIME.match(obj["time"]):
        raise ValueError(f'"time" {obj["time"]!r} is not RFC 3339 UTC with ms')
    if obj["level"] not in LEVELS:
        raise ValueError(f'"level" {obj["level"]!r}')
    if not obj["thread"]:
        raise ValueError('empty "thread"')
    if ("client" in obj) != ("peer" in obj):
        raise ValueError('"client" without "peer" or the other way round')
    if "client" in obj:
        if not isinstance(obj["client"], int) or obj["client"] <= 0:
            raise ValueError(f'"client" {obj["client"]!r}')
        if not isinstance(obj["peer"], str) or not PEER.match(obj["peer"]):
            raise ValueError(f'"peer" {obj["peer"]!r}')
    return obj


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--thread", action="append", default=[], help="a thread that must appear")
    ap.add_argument("--msg", action="append", default=[], help="a substring some msg must have")
    ap.add_argument("--client", action="store_true", help="at least one connection event")
    args = ap.parse_args()

    with open(args.log, "rb") as f:
        data = f.read()
    if not data or not data.endswith(b"\n"):
        print(f"{args.log}: empty, or the last line has no newline")
        return 1
    lines = data.split(b"\n")[:-1]
    objs = []
    for n, raw in enumerate(lines, 1):
        try:
            objs.append(check_line(raw))
        except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError too
            print(f"{args.log}:{n}: {e}: {raw!r}")
            return 1
    threads = {o["thread"] for o in objs}
    for t in args.thread:
        if t not in threads:
            print(f"no line from thread {t!r}; threads seen: {sorted(threads)}")
            return 1
    for m in args.msg:
        if not any(m in o["msg"] for o in objs):
            print(f"no msg contains {m!r}")
            return 1
    n_client = sum(1 for o in objs if "client" in o)
    if args.client and n_client == 0:
        print("no connection event (client and peer)")
        return 1
    print(f"{len(objs)} lines, {n_client} connection events, threads {sorted(threads)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
