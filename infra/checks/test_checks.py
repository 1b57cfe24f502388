"""Self-tests of the infra checks: each check passes on the repository and fails on a broken copy.

Run by run.sh with the .venv-bicep interpreter; CHECKOV names the checkov executable of .venv-infra.
"""

import json
import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import contextlib  # noqa: E402
import io  # noqa: E402

import check_bicep_syntax  # noqa: E402
import check_checkov  # noqa: E402
import check_function_schemas  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
SPECS = Path(os.environ.get("CMK_SPECS_DIR", REPO / "specs" / "schemastore"))
CHECKOV = os.environ.get("CHECKOV", str(REPO / ".venv-infra" / "bin" / "checkov"))


def quiet(check, *args):
    """Run a check's main() without its report: expected failures would read like real ones in the CI log."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return check(*args)


class Scratch:
    """A temporary folder holding copies of repository files, removed afterwards."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="infra-checks-"))
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def broken_copy(source: Path, folder: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, f"{old!r} not in {source}"
    target = folder / source.name
    target.write_text(text.replace(old, new, 1))
    return target


class BicepSyntax(unittest.TestCase):
    def test_repository_bicep_parses(self):
        self.assertEqual(quiet(check_bicep_syntax.main, [str(INFRA)]), 0)

    def test_misspelled_keyword_fails(self):
        with Scratch() as folder:
            path = broken_copy(INFRA / "modules" / "servicebus.bicep", folder, "resource namespace", "resourc namespace")
            self.assertTrue(check_bicep_syntax.syntax_errors(path.read_bytes()))
            self.assertEqual(quiet(check_bicep_syntax.main, [str(folder)]), 1)

    def test_missing_closing_brace_fails(self):
        with Scratch() as folder:
            source = INFRA / "modules" / "storage-access-resource-group.bicep"
            text = source.read_text().rstrip()
            self.assertTrue(text.endswith("}"))
            (folder / source.name).write_text(text[:-1])
            self.assertEqual(quiet(check_bicep_syntax.main, [str(folder)]), 1)


class Checkov(unittest.TestCase):
    def test_repository_passes(self):
        self.assertEqual(quiet(check_checkov.main, [CHECKOV, str(INFRA)]), 0)

    def test_parse_error_fails_although_checkov_exits_zero(self):
        with Scratch() as folder:
            broken_copy(INFRA / "modules" / "function-app.bicep", folder, "resource plan", "resource plan {{{")
            self.assertEqual(quiet(check_checkov.main, [CHECKOV, str(folder)]), 1)

    def test_failed_check_fails(self):
        with Scratch() as folder:
            source = INFRA / "modules" / "function-app.bicep"
            unjustified = "\n".join(line for line in source.read_text().splitlines() if "checkov:skip" not in line)
            (folder / source.name).write_text(unjustified)
            self.assertEqual(quiet(check_checkov.main, [CHECKOV, str(folder)]), 1)

    def test_skip_without_reason_is_a_problem(self):
        report = {
            "summary": {"passed": 1, "failed": 0, "skipped": 1, "parsing_errors": 0},
            "results": {
                "skipped_checks": [
                    {
                        "check_id": "CKV_AZURE_1",
                        "resource": "x",
                        "file_path": "/a.bicep",
                        "check_result": {"suppress_comment": "No comment provided"},
                    }
                ]
            },
        }
        self.assertEqual(len(check_checkov.problems_in(report)), 1)
        report["results"]["skipped_checks"][0]["check_result"]["suppress_comment"] = "a reason"
        self.assertEqual(check_checkov.problems_in(report), [])


class ExampleParameters(unittest.TestCase):
    """main.parameters.example.json must name only declared parameters and give every one without a default."""

    def test_example_matches_main_bicep(self):
        declared, required = set(), set()
        for line in (INFRA / "main.bicep").read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "param":
                declared.add(words[1])
                if "=" not in line:
                    required.add(words[1])
        example = json.loads((INFRA / "main.parameters.example.json").read_text())["parameters"]
        self.assertEqual(set(example) - declared, set(), "unknown parameters in the example")
        self.assertEqual(required - set(example), set(), "required parameters missing from the example")


class FunctionSchemas(unittest.TestCase):
    def test_repository_documents_validate(self):
        self.assertEqual(quiet(check_function_schemas.main, [str(REPO), str(SPECS)]), 0)

    def test_invalid_function_json_fails(self):
        with Scratch() as folder:
            shutil.copy(REPO / "host.json", folder / "host.json")
            (folder / "function-definitions" / "Broken").mkdir(parents=True)
            (folder / "function-definitions" / "Broken" / "function.json").write_text(json.dumps({"bindings": "x"}))
            self.assertEqual(quiet(check_function_schemas.main, [str(folder), str(SPECS)]), 1)

    def test_invalid_host_json_fails(self):
        with Scratch() as folder:
            host = json.loads((REPO / "host.json").read_text())
            host["functionTimeout"] = 600
            (folder / "host.json").write_text(json.dumps(host))
            shutil.copytree(REPO / "function-definitions", folder / "function-definitions")
            self.assertEqual(quiet(check_function_schemas.main, [str(folder), str(SPECS)]), 1)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"infra-checks self-test: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or not result.testsRun else 0)
