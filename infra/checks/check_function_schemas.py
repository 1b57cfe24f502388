"""Validate host.json and every function-definitions/*/function.json against the SchemaStore schemas.

Usage: check_function_schemas.py REPO_ROOT SPECS_DIR (SPECS_DIR holds host.schema.json and function.schema.json)
"""

import json
import sys
from pathlib import Path

import jsonschema


def validator_class(schema: dict) -> type:
    """The validator the schema needs, not the one it declares.

    SchemaStore's function.json schema declares draft-04 but uses the draft-06 keyword `const` (sqlBinding). A draft-04
    validator ignores `const`, so sqlBinding then matches every binding and each `oneOf` fails; SchemaStore itself
    validates with ajv, which honours `const`. Draft-07 reads every keyword these schemas use the same way.
    """
    declared = jsonschema.validators.validator_for(schema)
    return jsonschema.Draft7Validator if declared is jsonschema.Draft4Validator else declared


def schema_errors(document_path: Path, schema: dict) -> list[str]:
    try:
        document = json.loads(document_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return [f"{document_path}: {error}"]
    validator = validator_class(schema)(schema)
    return [
        f"{document_path}: {'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]


def main(argv: list[str]) -> int:
    root, specs = Path(argv[0]), Path(argv[1])
    host_schema = json.loads((specs / "host.schema.json").read_text())
    function_schema = json.loads((specs / "function.schema.json").read_text())
    function_files = sorted((root / "function-definitions").glob("*/function.json"))
    errors = schema_errors(root / "host.json", host_schema)
    if not function_files:
        errors.append(f"{root / 'function-definitions'}: no */function.json")
    for path in function_files:
        errors.extend(schema_errors(path, function_schema))
    for error in errors:
        print(f"schema: {error}", file=sys.stderr)
    print(f"schema: host.json and {len(function_files)} function.json checked, {len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
