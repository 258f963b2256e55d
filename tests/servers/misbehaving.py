"""A stdio MCP server that misbehaves on purpose, for the proxy's fault tests.

Modes:
  exit-on-init        reads the first line (initialize) and exits with status 3
  close-stdout        answers initialize, then closes its stdout and keeps running
  list-changed-storm  answers initialize and tools/list, then sends
                      notifications/tools/list_changed every millisecond
  garbage             answers initialize, then writes lines that are not JSON-RPC,
                      a thousand a second
"""

import json
import os
import sys
import threading
import time

mode = sys.argv[1]


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def initialize_answer(msg):
    return {
        "jsonrpc": "2.0",
        "id": msg["id"],
        "result": {
            "protocolVersion": msg["params"].get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {"listChanged": True}},
            "serverInfo": {"name": "misbehaving", "version": "1"},
        },
    }


def storm():
    while True:
        try:
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        except (BrokenPipeError, ValueError):
            os._exit(0)
        time.sleep(0.001)


def garbage():
    while True:
        try:
            sys.stdout.write("this is not JSON-RPC\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            os._exit(0)
        time.sleep(0.001)


started = False
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    method = msg.get("method")
    if mode == "exit-on-init":
        sys.exit(3)
    if method == "server/discover":
        send({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found"}})
    elif method == "initialize":
        send(initialize_answer(msg))
        if mode == "close-stdout":
            sys.stdout.flush()
            os.close(1)
            while True:
                time.sleep(1000)
    elif method == "notifications/initialized" and not started:
        started = True
        if mode == "list-changed-storm":
            threading.Thread(target=storm, daemon=True).start()
        elif mode == "garbage":
            threading.Thread(target=garbage, daemon=True).start()
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {"tools": [
            {"name": "noop", "description": "Does nothing", "inputSchema": {"type": "object"}}
        ]}})
    elif method == "tools/call":
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": [{"type": "text", "text": "ok"}]}})
    elif "id" in msg and method is not None:
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
