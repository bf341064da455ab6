#!/usr/bin/python3
"""Judge valgrind memcheck logs of Apache runs (tests/valgrind/run).

    check_logs.py LOGDIR

Fails (exit 1) on
  - any memcheck error or definite leak whose stack has a frame in the
    module (mod_secupload.so, libsecupload, an su_* function);
  - a log without a LEAK SUMMARY (the process did not exit cleanly, so the
    leak check never ran);
  - no logs at all.
Errors and leaks entirely inside Apache, APR, OpenSSL or other libraries are
listed as "other" and do not fail the run (add them to apache.supp once
understood). Exit 0 otherwise; the figures go to stdout.
"""

import collections
import glob
import os
import re
import sys

PREFIX_RE = re.compile(r"^==(\d+)== ?(.*)$")
ERROR_HEAD_RE = re.compile(
    r"^(Invalid (read|write|free)|Conditional jump|Use of uninitialised|"
    r"Syscall param|Mismatched free|Source and destination overlap|"
    r"Argument '.*' of function|Invalid alignment|"
    r"\S.* bytes in [\d,]+ blocks are (definitely|possibly|indirectly) lost|"
    r"Jump to the invalid address|Process terminating)")
LEAK_RE = re.compile(r"([\d,]+) bytes in ([\d,]+) blocks are (\w+) lost")
SUMMARY_RE = re.compile(r"ERROR SUMMARY: ([\d,]+) errors from ([\d,]+) "
                        r"contexts \(suppressed: ([\d,]+) from ([\d,]+)\)")
MODULE_RE = re.compile(r"(mod_secupload|libsecupload|[ :(]su_\w+ \()")


def _num(s):
    return int(s.replace(",", ""))


def parse(path):
    """Blocks (lists of lines) of one log, and its summary figures."""
    blocks, cur = [], None
    info = {"path": path, "summary": None, "definite": 0, "possible": 0,
            "leak_summary": False, "command": ""}
    with open(path, errors="replace") as f:
        for raw in f:
            m = PREFIX_RE.match(raw.rstrip("\n"))
            if not m:
                continue
            line = m.group(2)
            if line.startswith("Command: "):
                info["command"] = line[9:]
            if line.startswith("LEAK SUMMARY"):
                info["leak_summary"] = True
            mm = re.search(r"definitely lost: ([\d,]+) bytes", line)
            if mm:
                info["definite"] = _num(mm.group(1))
            mm = re.search(r"possibly lost: ([\d,]+) bytes", line)
            if mm:
                info["possible"] = _num(mm.group(1))
            mm = SUMMARY_RE.search(line)
            if mm:
                info["summary"] = tuple(_num(g) for g in mm.groups())
            if ERROR_HEAD_RE.match(line):
                cur = [line]
                blocks.append(cur)
            elif cur is not None and line.strip():
                cur.append(line)
            elif cur is not None:
                cur = None
    return blocks, info


def classify(block):
    head = block[0]
    m = LEAK_RE.search(head)
    if m:
        kind = "leak:" + m.group(3)
    else:
        kind = "error"
    return kind, bool(MODULE_RE.search("\n".join(block)))


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    logs = sorted(glob.glob(os.path.join(argv[1], "vg-*.log")))
    if not logs:
        print("valgrind: no logs in %s: did Apache run under valgrind?"
              % argv[1])
        return 1
    failures, others = [], []
    counts = collections.Counter()
    for path in logs:
        blocks, info = parse(path)
        name = os.path.basename(path)
        if not info["leak_summary"] or info["summary"] is None:
            failures.append("%s: no LEAK/ERROR SUMMARY (did not exit "
                            "cleanly?)" % name)
        counts["logs"] += 1
        counts["definitely lost bytes"] += info["definite"]
        counts["possibly lost bytes"] += info["possible"]
        if info["summary"]:
            counts["errors (ERROR SUMMARY)"] += info["summary"][0]
            counts["suppressed"] += info["summary"][2]
        for b in blocks:
            kind, ours = classify(b)
            if kind in ("leak:indirectly", "leak:possibly") and not ours:
                continue
            counts["%s%s" % (kind, " (module)" if ours else " (other)")] += 1
            text = "%s:\n    %s" % (name, "\n    ".join(b[:30]))
            if ours and kind in ("error", "leak:definitely"):
                failures.append(text)
            elif ours or kind in ("error", "leak:definitely"):
                others.append(text)
    print("valgrind: %s" % ", ".join("%s=%d" % kv
                                     for kv in sorted(counts.items())))
    if others:
        print("\nnot failing (outside the module, or possibly/indirectly "
              "lost):")
        for o in others[:20]:
            print("  " + o)
    if failures:
        print("\nFAILED:")
        for f in failures[:40]:
            print("  " + f)
        return 1
    print("valgrind: OK, no error and no definite leak in the module")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
