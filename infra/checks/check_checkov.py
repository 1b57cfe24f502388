"""Run checkov on the Bicep files and fail on failed checks, on parse errors, and on unjustified skips.

checkov exits 0 when a file does not parse (it only counts it in summary.parsing_errors), so the exit code alone
proves nothing; this script reads the JSON report instead.
Usage: check_checkov.py CHECKOV_EXECUTABLE DIRECTORY
"""

import json
import subprocess
import sys


def reports(raw: str) -> list[dict]:
    """checkov prints one object per framework, a list of them, or a bare summary when no check applies."""
    data = json.loads(raw)
    return data if isinstance(data, list) else [data]


def problems_in(report: dict) -> list[str]:
    summary = report.get("summary", report)
    problems = []
    if summary.get("parsing_errors", 0):
        problems.append(f"{summary['parsing_errors']} file(s) failed to parse (checkov's Bicep parser)")
    results = report.get("results", {})
    for check in results.get("failed_checks", []):
        problems.append(f"FAILED {check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}")
    for check in results.get("skipped_checks", []):
        reason = (check.get("check_result", {}).get("suppress_comment") or "").strip()
        if not reason or reason == "No comment provided":
            problems.append(f"SKIPPED WITHOUT REASON {check['check_id']} {check['resource']} ({check['file_path']})")
    return problems


def main(argv: list[str]) -> int:
    checkov, directory = argv
    run = subprocess.run(
        [checkov, "-d", directory, "--framework", "bicep", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        parsed = reports(run.stdout)
    except json.JSONDecodeError:
        print(f"checkov: no JSON report (exit {run.returncode})\n{run.stderr[-2000:]}", file=sys.stderr)
        return 1
    problems = [p for report in parsed for p in problems_in(report)]
    for problem in problems:
        print(f"checkov: {problem}", file=sys.stderr)
    for report in parsed:
        summary = report.get("summary", report)
        print(
            "checkov: passed {passed}, failed {failed}, skipped {skipped}, parsing errors {parsing_errors}".format(
                **{k: summary.get(k, 0) for k in ("passed", "failed", "skipped", "parsing_errors")}
            )
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
