"""Bicep grammar check: parse every .bicep file with tree-sitter-bicep and fail on any ERROR or missing node.

No Bicep compiler is installable here (reference local-components.md §2); this real grammar catches syntax errors,
which checkov only counts without failing.
Usage: check_bicep_syntax.py PATH... (files or folders, searched recursively)
"""

import sys
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def syntax_errors(source: bytes) -> list[str]:
    """Each ERROR or missing node as 'line:column: what', 1-based like an editor."""
    problems = []
    stack = [PARSER.parse(source).root_node]
    while stack:
        node = stack.pop()
        line, column = node.start_point[0] + 1, node.start_point[1] + 1
        if node.is_missing:
            problems.append(f"{line}:{column}: missing {node.type}")
        elif node.type == "ERROR":
            snippet = source[node.start_byte : node.end_byte].decode(errors="replace").splitlines()
            problems.append(f"{line}:{column}: syntax error near {snippet[0][:60] if snippet else ''!r}")
        stack.extend(reversed(node.children))
    return sorted(problems, key=lambda p: tuple(int(x) for x in p.split(":")[:2]))


def bicep_files(paths: list[str]) -> list[Path]:
    files = []
    for raw in paths:
        path = Path(raw)
        files.extend(sorted(path.rglob("*.bicep")) if path.is_dir() else [path])
    return files


def main(argv: list[str]) -> int:
    files = bicep_files(argv)
    if not files:
        print("bicep-syntax: no .bicep files found", file=sys.stderr)
        return 1
    failed = 0
    for path in files:
        problems = syntax_errors(path.read_bytes())
        if problems:
            failed += 1
            for problem in problems:
                print(f"{path}:{problem}", file=sys.stderr)
    print(f"bicep-syntax: {len(files) - failed} of {len(files)} files parse")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
