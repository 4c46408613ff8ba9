#!/usr/bin/env python3
"""Counts the lines a log follower delivers on stdin over a fixed window,
checks that none was lost or repeated, and measures over the same window
the CPU of the processes involved and the rate the container wrote; for
scripts/bench-log-stream.

usage: count-lines.py --field N --warm S --window S [--pids-file F]
                      [--netns-of PID --node NAME=REGEX ...] [--log PATH]

The lines carry a sequence number as their whitespace-separated field N
(1-based): 1 for `flotilla logs`, 4 for the raw CRI lines of `tail -F`
(`<time> stdout F <content>`). The first WARM seconds are read and dropped
(connecting, the first burst); then lines are counted for WINDOW seconds,
and the script exits, which ends the follower with EPIPE.

CPU: utime+stime from /proc at the window's two ends, as % of one core, for
the processes named in the pids file ("NAME PID" lines, read when the window
opens, so the caller can write it after starting the follower), and for the
processes in the network namespace of --netns-of whose command name matches
each --node REGEX (the node's agent, its sshd, `tail`), counting only those
alive at both ends. --log: the live CRI log, whose last line number at the
window's ends gives the rate written.

Only the numbers at the edges of each read chunk are parsed (a chunk's count
of lines must equal the advance of its numbers), so the check costs almost
nothing beside the follower being measured. Prints one JSON object.
"""
import argparse
import json
import os
import re
import select
import time

CHUNK = 1 << 20
HZ = os.sysconf("SC_CLK_TCK")


def number(line, field):
    parts = line.split(None, field)
    try:
        return int(parts[field - 1])
    except (IndexError, ValueError):
        return None


def ticks(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces: fields count from after its ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def netns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def snapshot(args):
    """{(group, pid): ticks} for every process measured."""
    out = {}
    if args.pids_file:
        try:
            for line in open(args.pids_file):
                name, pid = line.split()
                t = ticks(pid)
                if t is not None:
                    out[(name, pid)] = t
        except OSError:
            pass
    if args.netns_of:
        ns = netns(args.netns_of)
        nodes = [n.split("=", 1) for n in args.node]
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if netns(pid) != ns:
                continue
            try:
                comm = open(f"/proc/{pid}/comm").read().strip()
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            for name, regex in nodes:
                if re.search(regex, f"{comm} {cmdline}"):
                    t = ticks(pid)
                    if t is not None:
                        out[(name, pid)] = t
                    break
    return out


def written(log):
    """(last line number in the live log, time), or None."""
    for _ in range(5):
        try:
            with open(log, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 4096))
                lines = f.read().split(b"\n")
            now = time.monotonic()
            # The last element is after the last newline: torn or empty.
            for line in reversed(lines[:-1]):
                n = number(line, 4)
                if n is not None:
                    return n, now
        except OSError:
            pass
        time.sleep(0.02)  # just rotated: empty for a moment
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--field", type=int, required=True)
    p.add_argument("--warm", type=float, required=True)
    p.add_argument("--window", type=float, required=True)
    p.add_argument("--pids-file")
    p.add_argument("--netns-of")
    p.add_argument("--node", action="append", default=[])
    p.add_argument("--log")
    args = p.parse_args()

    fd = 0
    start = time.monotonic()
    counting_from = start + args.warm
    until = counting_from + args.window
    carry = b""
    counted = 0
    breaks = 0
    last = None
    first_counted = None
    cpu0 = cpu1 = None
    log0 = log1 = None
    while True:
        now = time.monotonic()
        if now >= until:
            break
        ready, _, _ = select.select([fd], [], [], min(0.05, until - now))
        if not ready:
            continue
        data = os.read(fd, CHUNK)
        if not data:
            break
        data = carry + data
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        lines, carry = data[: cut + 1], data[cut + 1 :]
        n = lines.count(b"\n")
        head = number(lines[: lines.find(b"\n")], args.field)
        tail = number(lines[lines.rfind(b"\n", 0, len(lines) - 1) + 1 : -1], args.field)
        now = time.monotonic()
        if first_counted is None and now >= counting_from:
            first_counted = now
            cpu0 = snapshot(args)
            log0 = written(args.log) if args.log else None
        if first_counted is not None:
            counted += n
            # Within the chunk the numbers must run head, head+1, … tail.
            if head is None or tail is None or tail - head != n - 1:
                breaks += 1
            if last is not None and head is not None and head != last + 1:
                breaks += 1
        last = tail
    end = min(time.monotonic(), until)
    if first_counted is not None:
        cpu1 = snapshot(args)
        log1 = written(args.log) if args.log else None
    elapsed = end - (first_counted or end)
    cpu = {}
    if cpu0 is not None and cpu1 is not None and elapsed > 0:
        for key, t0 in cpu0.items():
            if key in cpu1:
                cpu[key[0]] = cpu.get(key[0], 0) + cpu1[key] - t0
        cpu = {name: round(t * 100 / HZ / elapsed, 1) for name, t in cpu.items()}
    rate_written = None
    if log0 and log1 and log1[1] > log0[1]:
        rate_written = round((log1[0] - log0[0]) / (log1[1] - log0[1]))
    print(
        json.dumps(
            {
                "lines": counted,
                "seconds": round(elapsed, 3),
                "rate": round(counted / elapsed) if elapsed > 0 else 0,
                "breaks": breaks,
                "last": last,
                "written": rate_written,
                "cpu": cpu,
            }
        )
    )


if __name__ == "__main__":
    main()
