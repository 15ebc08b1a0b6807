#!/usr/bin/env python3
"""Prints the N slowest tests of a JUnit file (nextest's), then one line of totals.

Usage: slowest.py JUNIT_XML [N]. Called by scripts/test after `cargo nextest run --profile ci`;
the totals line ("N passed, N failed, N skipped") is the last thing CI shows of the test run.
"""
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    cases = []
    failed = skipped = 0
    for case in ET.parse(path).iter("testcase"):
        # A test nextest retried or that failed has a <failure>/<error>; a skipped one <skipped>.
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        cases.append((float(case.get("time", "0")), case.get("classname", ""), case.get("name", "")))
    cases.sort(key=lambda c: -c[0])
    for secs, binary, name in cases[:n]:
        print(f"{secs:9.3f} s  {binary} {name}")
    total = sum(c[0] for c in cases)
    passed = len(cases) - failed - skipped
    print(f"{total:.0f} s of test time in all")
    # Last, alone on its line: the totals CI reads.
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
