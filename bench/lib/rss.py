#!/usr/bin/env python3
"""RSS of process trees, read from /proc.

    rss.py now PID...            print the RSS (KiB) of PID and all its descendants, summed
    rss.py pss PID...            the same for PSS (shared pages divided among their users;
                                 from smaps_rollup, slower: for one-off readings)
    rss.py sample OUT PID...     poll that sum every 200 ms until SIGTERM/SIGINT (or until
                                 every PID is gone), then write "PEAK_KIB SAMPLES" to OUT

The sum counts shared pages (libraries, Postfix's shared text) once per
process, as ps and top do: for a multi-process server it is an upper bound
on the memory it holds.
"""
import os
import signal
import sys
import time

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def parents():
    """pid -> ppid for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain anything.
        rest = stat[stat.rfind(b")") + 2:].split()
        out[int(name)] = int(rest[1])
    return out


def tree(roots):
    ppid = parents()
    children = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    seen, todo = set(), [r for r in roots if r in ppid]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return seen


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        except (OSError, IndexError, ValueError):
            pass
    return total


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1])
                        break
        except (OSError, IndexError, ValueError):
            pass
    return total


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "pss":
        print(pss_kib(tree([int(p) for p in sys.argv[2:]])))
        return
    if len(sys.argv) >= 3 and sys.argv[1] == "now":
        print(rss_kib(tree([int(p) for p in sys.argv[2:]])))
        return
    if len(sys.argv) < 4 or sys.argv[1] != "sample":
        sys.exit(__doc__)
    out, roots = sys.argv[2], [int(p) for p in sys.argv[3:]]
    stop = False

    def handler(_sig, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    peak, samples = 0, 0
    while not stop:
        pids = tree(roots)
        if not pids:
            break
        peak = max(peak, rss_kib(pids))
        samples += 1
        time.sleep(0.2)
    with open(out + ".tmp", "w") as f:
        f.write(f"{peak} {samples}\n")
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
