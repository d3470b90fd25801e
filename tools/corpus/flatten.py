#!/usr/bin/env python3
"""Flatten the harvested tool schemas into argument paths.

Reads tests/corpus/harvest/*.json (written by tools/corpus/harvest.py) and prints one TSV row

    path<TAB>registry:package<TAB>tool

for every distinct argument path of every tool's inputSchema: object properties at any depth,
array `items` (and `prefixItems`), `anyOf`/`oneOf`/`allOf` branches (which add no segment),
`additionalProperties` and `patternProperties` schemas, and local `$ref`s to `$defs` /
`definitions`. Segments are joined with `.`; an array element is `[]`, an
`additionalProperties` value is `*`. A summary (servers, tools, distinct paths) goes to stderr.

Usage: python3 tools/corpus/flatten.py [--detail] [HARVEST_DIR] > paths.tsv

--detail prints JSON lines instead, with the path's JSON types, description and package version.
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


def note(out, path, schema):
    """Records a path with what its schema says: JSON types and a description."""
    types, desc = out.setdefault(path, (set(), []))
    if not isinstance(schema, dict):
        return
    t = schema.get("type")
    for one in t if isinstance(t, list) else [t]:
        if isinstance(one, str):
            types.add(one)
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            if isinstance(sub, dict) and isinstance(sub.get("type"), str):
                types.add(sub["type"])
    if "properties" in schema:
        types.add("object")
    d = schema.get("description") or schema.get("title")
    if isinstance(d, str) and d.strip() and not desc:
        desc.append(" ".join(d.split()))


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
            note(out, ".".join(path), sub)
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
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    detail = "--detail" in sys.argv[1:]
    d = args[0] if args else os.path.join(REPO, "tests", "corpus", "harvest")
    rows = {}
    servers = tools = 0
    for fn in sorted(glob.glob(os.path.join(d, "*.json"))):
        with open(fn) as f:
            doc = json.load(f)
        servers += 1
        server = "%s:%s" % (doc.get("registry", "?"), doc.get("package", "?"))
        version = str(doc.get("version", "?"))
        for tool in doc.get("tools") or []:
            if not isinstance(tool, dict):
                continue
            tools += 1
            schema = tool.get("inputSchema") or tool.get("input_schema") or {}
            paths = {}
            walk(schema, [], schema, paths, frozenset())
            name = str(tool.get("name", "")).replace("\t", " ").replace("\n", " ")
            for p, (types, desc) in paths.items():
                p = p.replace("\t", " ").replace("\n", " ")
                rows[(p, server, name)] = (sorted(types), desc[0] if desc else "", version)
    for (p, server, name), (types, desc, version) in sorted(rows.items()):
        if detail:
            print(json.dumps({"path": p, "server": server, "version": version, "tool": name,
                              "types": types, "description": desc}, ensure_ascii=False))
        else:
            print("\t".join((p, server, name)))
    distinct = len({r[0] for r in rows})
    print("servers: %d, tools: %d, distinct paths: %d, rows: %d"
          % (servers, tools, distinct, len(rows)), file=sys.stderr)


if __name__ == "__main__":
    main()
