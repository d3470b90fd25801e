#!/usr/bin/env python3
"""Build tests/corpus/harvested-paths.tsv from the harvest and the hand labels.

Every argument path of every harvested server becomes one row (path, server), weighted by the
number of the server's tools that take it. A path that a candidate word touches (see
`is_candidate`, and tests/corpus/README.md) must have a hand label in
tests/corpus/harvest-labels.tsv; every other path is benign by rule, class `other`.

The split is by server: the servers in harvest/SEEN-WHILE-TUNING.txt are in the tuning part;
any other server is held out when the first byte of SHA-256 of `registry:package` is below 128.
src/mcp/corpus_tests.rs recomputes it.

Usage: python3 tools/corpus/build.py [--candidates]   (--candidates: print unlabelled candidates
as JSON lines, for a labeller, and write nothing)
"""
import collections
import contextlib
import io
import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(REPO, "tests", "corpus")
sys.path.insert(0, HERE)
import flatten  # noqa: E402

LEAF_WORDS = (
    "pass pwd pw secret token tok cred cookie session sess bearer jwt priv cert auth oauth apikey "
    "mnemonic crypt cipher hmac saml kerberos ntlm vault otp totp mfa csrf xsrf nonce salt login "
    "signin signon webhook dsn conn key licen ssh pgp gpg seed wallet refresh sso hash sig verif "
    "pin pat sid code keystore keychain account identity api access"
).split()
RUN_TOGETHER = (
    "password passwd passphrase secret token apikey credential cookie bearer privatekey auth jwt "
    "session"
).split()
ANCESTOR_WORDS = (
    "auth cred secret token cookie session pass key apikey bearer jwt priv oauth conn login vault "
    "header env"
).split()


def words(segment):
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", segment)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", s)
    return [w for w in re.split(r"[^A-Za-z0-9]+", s.lower()) if w]


def starts_with_any(segment, prefixes):
    return any(w.startswith(p) and not w.startswith("keyword") for w in words(segment) for p in prefixes)


def is_candidate(path):
    """Wide on purpose: every candidate gets a hand label."""
    segments = path.split(".")
    leaf = segments[-1]
    run_together = re.sub(r"[^a-z0-9]", "", leaf.lower())
    return (
        starts_with_any(leaf, LEAF_WORDS)
        or any(w in run_together for w in RUN_TOGETHER)
        or any(starts_with_any(s, ANCESTOR_WORDS) for s in segments[:-1])
    )


def held_out(server, seen):
    return server_stem(server) not in seen and hashlib.sha256(server.encode()).digest()[0] < 128


def server_stem(server):
    registry, package = server.split(":", 1)
    return registry + "-" + package.replace("/", "__")


def harvested():
    """(path, server) -> {tools, types, description, version}"""
    out = collections.OrderedDict()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        sys.argv = ["flatten.py", "--detail", os.path.join(CORPUS, "harvest")]
        flatten.main()
    for line in buf.getvalue().splitlines():
        d = json.loads(line)
        row = out.setdefault((d["path"], d["server"]), {
            "tools": set(), "types": set(), "descriptions": [], "version": d["version"]})
        row["tools"].add(d["tool"])
        row["types"].update(d["types"])
        if d["description"] and d["description"] not in row["descriptions"]:
            row["descriptions"].append(d["description"])
    return out


def read_labels():
    labels = {}
    path = os.path.join(CORPUS, "harvest-labels.tsv")
    if not os.path.exists(path):
        return labels
    with open(path) as f:
        header = f.readline().rstrip("\n")
        assert header == "path\tserver\tlabel\tclass\tnote", header
        for n, line in enumerate(f, 2):
            cols = line.rstrip("\n").split("\t")
            assert len(cols) == 5, "harvest-labels.tsv:%d: %r" % (n, line)
            assert cols[2] in ("secret", "benign"), "harvest-labels.tsv:%d: label" % n
            labels[(cols[0], cols[1])] = (cols[2], cols[3])
    return labels


def main():
    candidates_only = "--candidates" in sys.argv[1:]
    rows = harvested()
    labels = read_labels()
    if candidates_only:
        for (path, server), row in rows.items():
            if is_candidate(path) and (path, server) not in labels:
                print(json.dumps({"path": path, "server": server, "types": sorted(row["types"]),
                                  "tools": sorted(row["tools"])[:4],
                                  "descriptions": [d[:240] for d in row["descriptions"][:2]]},
                                 ensure_ascii=False))
        return
    with open(os.path.join(CORPUS, "harvest", "SEEN-WHILE-TUNING.txt")) as f:
        seen = {line.strip() for line in f if line.strip()}
    missing = [k for k in rows if is_candidate(k[0]) and k not in labels]
    if missing:
        sys.exit("%d candidate paths have no label, first %r (run with --candidates)"
                 % (len(missing), missing[0]))
    stale = [k for k in labels if k not in rows]
    if stale:
        sys.exit("%d labels name no harvested path, first %r" % (len(stale), stale[0]))
    out = ["path\tlabel\tclass\tsplit\tserver\ttools\ttypes\tsource"]
    for (path, server), row in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        label, klass = labels.get((path, server), ("benign", "other"))
        split = "held-out" if held_out(server, seen) else "tuning"
        types = ",".join(sorted(row["types"])) or "-"
        source = "%s@%s" % (server, row["version"])
        out.append("\t".join((path, label, klass, split, server, str(len(row["tools"])), types, source)))
    with open(os.path.join(CORPUS, "harvested-paths.tsv"), "w") as f:
        f.write("\n".join(out) + "\n")
    counts = collections.Counter((line.split("\t")[3], line.split("\t")[1]) for line in out[1:])
    print(" ".join("%s/%s=%d" % (k[0], k[1], v) for k, v in sorted(counts.items())), file=sys.stderr)


if __name__ == "__main__":
    main()
