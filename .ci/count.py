#!/usr/bin/env python3
"""Sums real test counts from meson's JSON test logs and prints 'N passed, N failed'.

A Catch2 executable reports its own test cases ("test cases: 19 | 18 passed | 1 failed" or
"All tests passed (225 assertions in 19 test cases)"); any other meson test counts as one.
Exits non-zero when anything failed or nothing ran.
"""
import json
import re
import sys

ALL_PASSED = re.compile(r"All tests passed \(\d+ assertions? in (\d+) test cases?\)")
SUMMARY = re.compile(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")


def count(path):
    passed = failed = 0
    with open(path) as f:
        for line in f:
            test = json.loads(line)
            out = test.get("stdout", "") or ""
            ok = test.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
            m_all = ALL_PASSED.findall(out)
            m_sum = SUMMARY.findall(out)
            if m_all and ok:
                passed += int(m_all[-1])
            elif m_sum:
                total, p, fl = map(int, m_sum[-1])
                passed += p
                failed += max(fl, 0 if ok else 1)
            elif ok:
                passed += 1
            else:
                failed += 1
    return passed, failed


def main():
    passed = failed = 0
    for path in sys.argv[1:]:
        try:
            p, f = count(path)
        except FileNotFoundError:
            print(f"count: {path} is missing: that test run did not happen", file=sys.stderr)
            p, f = 0, 1
        passed += p
        failed += f
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
