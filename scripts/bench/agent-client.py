#!/usr/bin/env python3
"""A minimal client of the agent protocol (flotilla/1, JSON lines on
RUN/agent.sock, specified in src/agent/protocol/mod.rs), for the
benchmarks: say hello, create pods, wait until they run, delete them.

usage: agent-client.py SOCKET create PREFIX COUNT IMAGE [-- CMD ARGS...]
       agent-client.py SOCKET wait-running PREFIX COUNT [TIMEOUT_S]
       agent-client.py SOCKET delete PREFIX
"""
import json
import socket
import sys
import time


class Agent:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self.next_id = 1
        self.call("hello", {"versions": ["flotilla/1"], "client": "bench agent-client.py"})

    def call(self, method, params):
        rid = self.next_id
        self.next_id += 1
        line = json.dumps({"id": rid, "method": method, "params": params}) + "\n"
        self.file.write(line.encode())
        self.file.flush()
        while True:
            raw = self.file.readline()
            if not raw:
                raise SystemExit(f"{method}: the agent closed the connection")
            reply = json.loads(raw)
            if reply.get("id") != rid:
                continue  # an event or another request's line
            if "error" in reply:
                raise SystemExit(f"{method}: {reply['error']}")
            if "result" in reply:
                return reply["result"]


def pod(name, image, command):
    container = {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent"}
    if command:
        container["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [container], "restartPolicy": "Never",
                 "terminationGracePeriodSeconds": 0},
    }


def ours(agent, prefix):
    return [p for p in agent.call("pods.list", {"namespace": "default"})["pods"]
            if p["pod"]["metadata"]["name"].startswith(prefix)]


def running(record):
    statuses = record["status"].get("containerStatuses") or []
    return bool(statuses) and all("running" in (s.get("state") or {}) for s in statuses)


def main():
    path, verb = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    agent = Agent(path)
    if verb == "create":
        prefix, count, image = args[0], int(args[1]), args[2]
        command = args[4:] if len(args) > 3 and args[3] == "--" else []
        start = time.monotonic()
        for i in range(count):
            agent.call("pods.create", {"pod": pod(f"{prefix}{i:03d}", image, command)})
        print(f"created {count} pods in {time.monotonic() - start:.2f} s", file=sys.stderr)
    elif verb == "wait-running":
        prefix, count = args[0], int(args[1])
        timeout = float(args[2]) if len(args) > 2 else 60
        deadline = time.monotonic() + timeout
        while True:
            pods = ours(agent, prefix)
            up = sum(1 for p in pods if running(p))
            if up >= count:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"only {up} of {count} pods running after {timeout} s")
            time.sleep(0.5)
    elif verb == "delete":
        prefix = args[0]
        for p in ours(agent, prefix):
            meta = p["pod"]["metadata"]
            agent.call("pods.delete", {"namespace": meta["namespace"], "name": meta["name"],
                                       "graceSeconds": 0})
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
