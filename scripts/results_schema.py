"""Write each command's results schema into the published report schema.

    python scripts/results_schema.py          # rewrite src/trojanscope/render/report.schema.json
    python scripts/results_schema.py --check  # exit 1 when the file is not what the classes say

The results classes (src/trojanscope/results.py) are the source; pydantic derives their JSON
schema (a field's docstring becomes its description). `to_dict()` leaves out fields that are
None and fields marked json=False, so those are optional and absent here. The report schema
then requires, for each command, that a non-empty `results` match that command's schema (an
error report's results are empty). tests/test_results_schema.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from importlib import resources
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[1] / "src/trojanscope/render/report.schema.json"


def results_schema(cls) -> dict:
    from pydantic import TypeAdapter

    raw = TypeAdapter(cls).json_schema()
    hidden = {f.name for f in fields(cls) if not f.metadata.get("json", True)}
    properties = {}
    for name, prop in raw["properties"].items():
        if name in hidden:
            continue
        prop = {k: v for k, v in prop.items() if k not in ("title", "default")}
        options = prop.pop("anyOf", None)
        if options:  # X | None: None is never written, so the field is X when present
            kept = [o for o in options if o != {"type": "null"}]
            prop = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **prop}
        properties[name] = prop
    schema = {"type": "object", "description": (cls.__doc__ or "").strip(),
              "required": [n for n in raw.get("required", []) if n not in hidden],
              "additionalProperties": False, "properties": properties}
    if not schema["description"] or schema["description"].startswith(cls.__name__ + "("):
        schema["description"] = f"The results of `trojanscope {cls.command}`."
    return schema


def build(current: dict) -> dict:
    from trojanscope.results import RESULTS

    schema = dict(current)
    defs = {k: v for k, v in current["$defs"].items() if not k.endswith("_results")}
    rules = []
    for command, cls in sorted(RESULTS.items()):
        defs[f"{command}_results"] = results_schema(cls)
        rules.append({
            "if": {"required": ["command", "results"],
                   "properties": {"command": {"const": command},
                                  "results": {"minProperties": 1}}},
            "then": {"properties": {"results": {"$ref": f"#/$defs/{command}_results"}}}})
    schema["$defs"] = defs
    schema["allOf"] = rules
    return schema


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    current = json.loads(SCHEMA.read_text())
    wanted = build(current)
    text = json.dumps(wanted, indent=2) + "\n"
    if args.check:
        if json.loads(resources.files("trojanscope.render").joinpath(
                "report.schema.json").read_text()) != wanted:
            print(f"{SCHEMA} is out of date: run python scripts/results_schema.py")
            return 1
        return 0
    SCHEMA.write_text(text)
    print(f"wrote {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
