#!/usr/bin/env python3
"""Turns oha's JSON report (stdin) into the WRKRESULT line wrk_report.lua prints for wrk, so that
run.sh records both the same way (latencies in microseconds).

    oha ... --output-format json | oha_report.py

requests: the responses counted (any status); status: those outside 2xx; other: oha's errors
(connect, TLS, timeouts), except the requests still in flight when the duration ended, which oha
reports as "aborted due to deadline" and which are not failures.
"""
import json
import sys


def main():
    text = sys.stdin.read()
    # Some oha versions print a line or two before the JSON object.
    report = json.loads(text[text.index("{"):])
    codes = {str(k): int(v) for k, v in (report.get("statusCodeDistribution") or {}).items()}
    requests = sum(codes.values())
    non2xx = sum(v for k, v in codes.items() if not k.startswith("2"))
    errors = {k: int(v) for k, v in (report.get("errorDistribution") or {}).items()}
    other = sum(v for k, v in errors.items() if "deadline" not in k.lower())
    for k, v in errors.items():
        print(f"oha error: {v} x {k}", file=sys.stderr)
    lat = report.get("latencyPercentiles") or {}
    summary = report["summary"]

    def us(seconds):
        return 0 if seconds is None else seconds * 1e6

    print(
        "WRKRESULT requests=%d duration_us=%d bytes=%d connect=0 read=0 write=0 status=%d timeout=0 other=%d "
        "p50_us=%.0f p99_us=%.0f max_us=%.0f"
        % (
            requests,
            us(summary["total"]),
            int(summary.get("totalData") or 0),
            non2xx,
            other,
            us(lat.get("p50")),
            us(lat.get("p99")),
            us(summary.get("slowest")),
        )
    )


if __name__ == "__main__":
    main()
