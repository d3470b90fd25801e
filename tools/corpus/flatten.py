#!/usr/bin/env python3
"""Flatten the harvested tool schemas into argument paths.

Reads tests/corpus/harvest/*.json (written by tools/corpus/harvest.py) and prints one TSV row

    path<TAB>registry:package<TAB>tool

for every distinct argument path of every tool's inputSchema: object properties at any depth,
array `items` (and `prefixItems`), `anyOf`/`oneOf`/`allOf` branches (which add no segment),
`additionalProperties` and `patternProperties` schemas, and local `$ref`s to `$defs` /
`definitions`. Segments are joined with `.`; an array element is `[]`, an
`additionalProperties` value is `*`. A summary (servers, tools, distinct paths) goes to stderr.

Usage: python3 tools/corpus/flatten.py [HARVEST_DIR] > paths.tsv
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def resolve(ref, root):
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return None
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node if isinstance(node, dict) else None


def walk(schema, prefix, root, out, seen_refs, depth=0):
    if not isinstance(schema, dict) or depth > 40:
        return
    ref = schema.get("$ref")
    if ref is not None:
        if ref not in seen_refs:
            target = resolve(ref, root)
            if target is not None:
                walk(target, prefix, root, out, seen_refs | {ref}, depth + 1)
    props = schema.get("properties")
    if isinstance(props, dict):
        for name, sub in props.items():
            path = prefix + [name]
            out.add(".".join(path))
            walk(sub, path, root, out, seen_refs, depth + 1)
    pats = schema.get("patternProperties")
    if isinstance(pats, dict):
        for sub in pats.values():
            walk(sub, prefix + ["*"], root, out, seen_refs, depth + 1)
    add = schema.get("additionalProperties")
    if isinstance(add, dict):
        walk(add, prefix + ["*"], root, out, seen_refs, depth + 1)
    items = schema.get("items")
    if isinstance(items, dict):
        walk(items, prefix + ["[]"], root, out, seen_refs, depth + 1)
    elif isinstance(items, list):
        for sub in items:
            walk(sub, prefix + ["[]"], root, out, seen_refs, depth + 1)
    pitems = schema.get("prefixItems")
    if isinstance(pitems, list):
        for sub in pitems:
            walk(sub, prefix + ["[]"], root, out, seen_refs, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list):
            for sub in branches:
                walk(sub, prefix, root, out, seen_refs, depth + 1)
    for key in ("if", "then", "else", "not"):
        if isinstance(schema.get(key), dict):
            walk(schema[key], prefix, root, out, seen_refs, depth + 1)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "corpus", "harvest")
    rows = set()
    servers = tools = 0
    for fn in sorted(glob.glob(os.path.join(d, "*.json"))):
        with open(fn) as f:
            doc = json.load(f)
        servers += 1
        server = "%s:%s" % (doc.get("registry", "?"), doc.get("package", "?"))
        for tool in doc.get("tools") or []:
            if not isinstance(tool, dict):
                continue
            tools += 1
            schema = tool.get("inputSchema") or tool.get("input_schema") or {}
            paths = set()
            walk(schema, [], schema, paths, frozenset())
            name = str(tool.get("name", "")).replace("\t", " ").replace("\n", " ")
            for p in paths:
                rows.add((p.replace("\t", " ").replace("\n", " "), server, name))
    for row in sorted(rows):
        print("\t".join(row))
    distinct = len({r[0] for r in rows})
    print("servers: %d, tools: %d, distinct paths: %d, rows: %d"
          % (servers, tools, distinct, len(rows)), file=sys.stderr)


if __name__ == "__main__":
    main()
