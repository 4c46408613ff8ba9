#!/usr/bin/env python3
"""Keystroke echo through an interactive shell: runs COMMAND on a pseudo-
terminal of its own (as a person's terminal would), waits for the shell's
prompt, then types one character at a time and times how long each takes to
come back on the screen (the shell's line editor echoes it). Prints
`runs N mean M median D min A max B` in milliseconds.

usage: echo-latency.py RUNS COMMAND [ARG...]
"""
import os
import pty
import select
import statistics
import sys
import time


def read_until(fd, needle, timeout):
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"timed out waiting for {needle!r}; saw {seen[-200:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise SystemExit(f"EOF waiting for {needle!r}; saw {seen[-200:]!r}")
            seen += chunk
    return seen


def main():
    runs = int(sys.argv[1])
    command = sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)
    read_until(fd, b"# ", 60)
    times = []
    for i in range(runs):
        # A new letter each time, so its echo is told from the last one's.
        key = bytes([ord("a") + i % 26])
        start = time.monotonic()
        os.write(fd, key)
        read_until(fd, key, 10)
        times.append((time.monotonic() - start) * 1000)
        if i % 20 == 19:
            os.write(fd, b"\x15")  # ^U: keep the line short
            time.sleep(0.05)
            while select.select([fd], [], [], 0.05)[0]:
                os.read(fd, 4096)
    os.write(fd, b"\x15exit\r")
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    os.waitpid(pid, 0)
    print(
        f"runs {runs} mean {statistics.mean(times):.1f} median {statistics.median(times):.1f} "
        f"min {min(times):.1f} max {max(times):.1f}"
    )


main()
