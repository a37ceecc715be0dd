#!/usr/bin/env python3
"""Write helm/vrypt-server/README.md from the chart's own files.

The README is what `helm show readme` prints and what a chart registry
shows. It is generated, never edited by hand:

- the prose comes from helm/chart-readme.tmpl.md, with @@NAME@@ fields
  filled from Chart.yaml (@@VERSION@@, @@APP_VERSION@@, @@KUBE_VERSION@@,
  @@DESCRIPTION@@) and @@VALUES@@ replaced by the values table;
- the values table comes from the comments in values.yaml. A comment that
  starts with `# -- ` documents the key right below it (later `#` lines
  continue the text; a blank line ends it). Such a key is one row: its
  default is the value in values.yaml, its type the one values.schema.json
  gives it. The keys inside a documented key are part of its default and
  get no row of their own. A mapping without a `# -- ` comment is a group:
  its keys are looked at in turn. Plain `#` comments elsewhere are prose
  for the reader of values.yaml and stay out of the table.

A value that is neither documented nor inside a documented key or group
is an error (exit 1, naming it), so every value is in the README.

Usage:
  scripts/chart_readme.py                 write helm/vrypt-server/README.md
  scripts/chart_readme.py --output FILE   write FILE instead (the helm check
                                          writes a temporary file and diffs)

Needs PyYAML (in the helm check's venv; `pip install pyyaml` otherwise).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "helm" / "vrypt-server"
TEMPLATE = ROOT / "helm" / "chart-readme.tmpl.md"
README = CHART_DIR / "README.md"

DOC_START = re.compile(r"^(?P<indent> *)# -- ?(?P<text>.*)$")
COMMENT = re.compile(r"^ *#(?: (?P<text>.*))?$")
KEY = re.compile(r"^(?P<indent> *)(?P<key>[^\s#:'\"-][^:]*|\"[^\"]+\"|'[^']+'):(?:\s+(?P<rest>.*))?$")
BLOCK_SCALAR = re.compile(r"^[|>][-+]?\s*(#.*)?$")
# Schema definitions shown by what they mean rather than by their JSON types.
DEFINITION_TYPES = {
    "duration": "duration",
    "optionalDuration": "duration",
    "intOrPercent": "integer, percent or null",
}


@dataclass
class Row:
    path: list[str]
    description: str
    default: Any
    type: str


class ValuesError(Exception):
    pass


def lookup(values: Any, path: list[str]) -> Any:
    for key in path:
        values = values[key]
    return values


def schema_type(schema: dict[str, Any], node: dict[str, Any] | None) -> str:
    """A short type name for a schema node ("" when unknown)."""
    if node is None:
        return ""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in DEFINITION_TYPES:
            return DEFINITION_TYPES[name]
        return schema_type(schema, schema["definitions"][name])
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        return " or ".join(types)
    if "enum" in node:
        kinds = sorted({type(v).__name__ for v in node["enum"]})
        return "string" if kinds == ["str"] else " or ".join(kinds)
    if "const" in node:
        return "string" if isinstance(node["const"], str) else type(node["const"]).__name__
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in node:
            parts = []
            for sub in node[combinator]:
                for part in schema_type(schema, sub).split(" or "):
                    if part and part not in parts:
                        parts.append(part)
            return " or ".join(parts)
    return ""


def schema_node(schema: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for key in path:
        while node is not None and "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        if node is None:
            return None
        if "allOf" in node:
            node = node["allOf"][0]
            while "$ref" in node:
                node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        node = (node.get("properties") or {}).get(key)
    return node


def value_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}[type(value)]


def parse(text: str, values: dict[str, Any], schema: dict[str, Any]) -> list[Row]:
    """The documented keys of values.yaml, in file order."""
    rows: list[Row] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    pending: list[str] | None = None
    pending_indent = 0
    skip_deeper_than: int | None = None  # inside a block scalar or a list
    list_indent: int | None = None  # items at this indent continue the list
    undocumented: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        indent = len(line) - len(line.lstrip(" "))
        if skip_deeper_than is not None:
            if not line.strip() or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if list_indent is not None:
            if not line.strip() or indent > list_indent or line.lstrip().startswith("- "):
                continue
            list_indent = None
        if not line.strip():
            pending = None
            continue
        doc = DOC_START.match(line)
        if doc:
            pending, pending_indent = [doc.group("text").strip()], len(doc.group("indent"))
            continue
        comment = COMMENT.match(line)
        if comment:
            if pending is not None:
                pending.append((comment.group("text") or "").strip())
            continue
        if line.lstrip().startswith("- "):
            # A list: part of the value of the key above it.
            list_indent = indent
            continue
        key = KEY.match(line)
        if not key:
            raise ValuesError(f"values.yaml:{number}: cannot read {line!r}")
        name = key.group("key").strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside_documented = any(documented for _, _, documented in stack)
        path = [k for _, k, _ in stack] + [name]
        rest = (key.group("rest") or "").strip()
        if pending is not None and pending_indent != indent:
            raise ValuesError(f"values.yaml:{number}: the `# --` comment above {'.'.join(path)} is not "
                              "indented like the key")
        documented = pending is not None
        if documented and not inside_documented:
            default = lookup(values, path)
            node = schema_node(schema, path)
            rows.append(Row(path, " ".join(p for p in pending if p), default,
                            schema_type(schema, node) or value_type(default)))
        elif not inside_documented:
            value = lookup(values, path)
            if not isinstance(value, dict) or not value:
                undocumented.append(f"values.yaml:{number}: {'.'.join(path)}")
        pending = None
        stack.append((indent, name, documented))
        if BLOCK_SCALAR.match(rest):
            skip_deeper_than = indent
    if undocumented:
        raise ValuesError("values without a `# --` comment (document them or their group):\n  "
                          + "\n  ".join(undocumented))
    return rows


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(rows: list[Row]) -> str:
    out = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for row in rows:
        default = json.dumps(row.default, ensure_ascii=False, separators=(", ", ": "))
        out.append(f"| `{cell('.'.join(row.path))}` | {cell(row.type)} | `{cell(default)}` | "
                   f"{cell(row.description)} |")
    return "\n".join(out)


def render() -> str:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    text = (CHART_DIR / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    fields = {
        "VERSION": str(chart["version"]),
        "APP_VERSION": str(chart["appVersion"]),
        # ">=1.25.0-0" (the -0 admits pre-releases) reads as ">=1.25.0".
        "KUBE_VERSION": re.sub(r"-0$", "", str(chart.get("kubeVersion", ""))),
        "DESCRIPTION": " ".join(str(chart["description"]).split()),
        "VALUES": table(parse(text, values, schema)),
    }
    out = TEMPLATE.read_text()
    for name, value in fields.items():
        out = out.replace(f"@@{name}@@", value)
    leftover = re.findall(r"@@[A-Z_]+@@", out)
    if leftover:
        raise ValuesError(f"{TEMPLATE.name}: unknown fields {sorted(set(leftover))}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=README, help=f"where to write (default {README})")
    args = parser.parse_args()
    try:
        text = render()
    except ValuesError as exc:
        print(f"chart_readme: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
