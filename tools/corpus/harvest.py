#!/usr/bin/env python3
"""Harvest the real `tools/list` answers of public MCP servers.

Reads a list file (default: tools/corpus/servers.txt beside this script), one server a line:

    npm  <package>[@version] [args...]
    pypi <package>[==version] [entrypoint] [args...]

PyPI installs are made under the constraint `mcp<2` (many servers use mcp 1.x APIs without
pinning it), and retried without it when that cannot resolve. For pypi lines the entrypoint is optional: a second word that is one of the package's console
scripts is taken as the entrypoint, otherwise it is guessed from the package's console scripts.
Any word of the form `env:NAME=VALUE` sets a (dummy) environment variable for the server's run
and is recorded in the output's "env". Blank lines and `#` comments are ignored.

Each server is installed into a private temporary prefix (npm: `npm install --prefix DIR`, PyPI:
a venv per package and `pip install`), started with stdin/stdout pipes, and asked over stdio
(JSON-RPC `initialize`, `notifications/initialized`, `tools/list` following `nextCursor`). The
answer goes to tests/corpus/harvest/<registry>-<package>.json (a `/` in the package name becomes
`__`), failures to tests/corpus/harvest/failures.txt.

Standard library only. Usage:

    python3 tools/corpus/harvest.py [--list FILE] [--out DIR] [--jobs 2]
        [--install-timeout 60] [--run-timeout 20] [--skip-done] [--only PKG ...] [--python EXE]
"""
import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROTOCOL = "2025-06-18"

LOCK = threading.Lock()


def log(msg):
    with LOCK:
        print(time.strftime("%H:%M:%S"), msg, flush=True)


def out_name(registry, package):
    return "%s-%s.json" % (registry, package.replace("/", "__"))


def parse_line(line):
    words = line.split()
    if len(words) < 2 or words[0] not in ("npm", "pypi"):
        raise ValueError("bad line: %r" % line)
    env = {}
    rest = []
    for w in words[2:]:
        if w.startswith("env:") and "=" in w:
            k, v = w[4:].split("=", 1)
            env[k] = v
        else:
            rest.append(w)
    spec = words[1]
    if words[0] == "npm":
        # @scope/name@ver or name@ver
        at = spec.rfind("@")
        name = spec[:at] if at > 0 else spec
    else:
        name = spec
        for sep in ("==", ">=", "<=", "~=", "[", "<", ">"):
            if sep in name:
                name = name.split(sep, 1)[0]
    return {"registry": words[0], "spec": spec, "package": name, "args": rest, "env": env}


def run(cmd, timeout, cwd=None, env=None):
    """Run cmd; return (rc, combined tail). rc None on timeout."""
    try:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    except OSError as e:
        return -1, str(e)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        kill_group(p)
        return None, "timeout"


def kill_group(p):
    try:
        os.killpg(p.pid, 9)
    except OSError:
        pass
    try:
        p.kill()
    except OSError:
        pass
    try:
        p.wait(timeout=5)
    except Exception:
        pass


def last_line(text, limit=200):
    noise = ("complete log of this run", "npm error code", "npm error path", "npm error errno",
             "npm error syscall", "npm error A ", "npm error command")
    lines = [l.strip() for l in text.splitlines()
             if l.strip() and not any(n in l for n in noise)]
    errs = [l for l in lines if "ERR" in l or "rror" in l]
    s = (errs[-1] if errs else (lines[-1] if lines else "")).replace("\t", " ")
    return s[:limit]


def install_npm(srv, d, timeout):
    env = dict(os.environ, PUPPETEER_SKIP_DOWNLOAD="1", PUPPETEER_SKIP_CHROMIUM_DOWNLOAD="1",
               PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1", npm_config_loglevel="error")
    rc, out = run(["npm", "install", "--prefix", d, "--no-audit", "--no-fund",
                   "--no-save", srv["spec"]], timeout, cwd=d, env=env)
    if rc != 0:
        raise Failure("install: " + ("timeout" if rc is None else last_line(out)))
    pdir = os.path.join(d, "node_modules", srv["package"])
    with open(os.path.join(pdir, "package.json")) as f:
        meta = json.load(f)
    bins = meta.get("bin")
    base = srv["package"].split("/")[-1]
    if isinstance(bins, str):
        target = bins
    elif isinstance(bins, dict) and bins:
        pick = None
        for cand in (base, meta.get("name", "")):
            if cand in bins:
                pick = cand
        if pick is None:
            mcpish = [k for k in bins if "mcp" in k.lower()]
            pick = mcpish[0] if mcpish else sorted(bins)[0]
        target = bins[pick]
    else:
        target = meta.get("main") or "index.js"
    path = os.path.normpath(os.path.join(pdir, target))
    cmd = [path] if not path.endswith((".js", ".mjs", ".cjs")) else ["node", path]
    if cmd[0] == path:
        try:
            with open(path, "rb") as f:
                head = f.read(64)
            if b"node" in head.split(b"\n")[0] or not head.startswith(b"#!"):
                cmd = ["node", path]
        except OSError:
            pass
    return cmd, meta.get("version", "")


def install_pypi(srv, d, timeout):
    venv = os.path.join(d, "venv")
    t0 = time.time()
    rc, out = run([PYTHON[0], "-m", "venv", venv], timeout)
    if rc != 0:
        raise Failure("venv: " + last_line(out))
    py = os.path.join(venv, "bin", "python")
    # Many published servers import `mcp.server.fastmcp` or other mcp 1.x APIs but do not pin
    # `mcp<2`; install under that constraint first, and without it if that cannot resolve.
    cons = os.path.join(d, "constraints.txt")
    with open(cons, "w") as f:
        f.write("mcp<2\n")
    rc, out = None, ""
    for extra in (["-c", cons], []):
        left = max(10, timeout - (time.time() - t0))
        rc, out = run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                      + extra + [srv["spec"]], left)
        if rc is not None and rc != 0 and extra and "No matching distribution" not in out:
            continue
        break
    if rc != 0:
        raise Failure("install: " + ("timeout" if rc is None else last_line(out)))
    probe = ("import importlib.metadata as m, json, sys\n"
             "d = m.distribution(sys.argv[1])\n"
             "print(json.dumps({'version': d.version, 'scripts': "
             "[e.name for e in d.entry_points if e.group == 'console_scripts']}))\n")
    rc, out = run([py, "-c", probe, srv["package"]], 30)
    if rc != 0:
        raise Failure("metadata: " + last_line(out))
    info = json.loads(out.strip().splitlines()[-1])
    scripts = info["scripts"]
    args = list(srv["args"])
    if args and args[0] in scripts:
        script = args.pop(0)
    elif not scripts:
        raise Failure("no console script")
    else:
        norm = lambda s: s.lower().replace("_", "-").replace(".", "-")
        name = norm(srv["package"])
        exact = [s for s in scripts if norm(s) == name]
        mcpish = [s for s in scripts if "mcp" in s.lower()]
        script = (exact or mcpish or sorted(scripts))[0]
    srv["run_args"] = args
    return [os.path.join(venv, "bin", script)], info["version"]


# The Python used for the venvs: --python, else python3.12 where it exists (many servers require
# Python >= 3.12), else the one running this script.
PYTHON = [sys.executable]


def pick_python(choice):
    if choice:
        return choice
    import glob
    cands = [shutil.which("python3.12")] + sorted(glob.glob(
        os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    for found in cands:
        if found:
            rc, _ = run([found, "-c", "import venv, ensurepip"], 30)
            if rc == 0:
                return found
    return sys.executable


class Failure(Exception):
    pass


def talk(cmd, cwd, env, timeout):
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    q = queue.Queue()
    errbuf = []

    def rd():
        for line in p.stdout:
            q.put(line)
        q.put(None)

    def rderr():
        for line in p.stderr:
            if len(errbuf) < 400:
                errbuf.append(line.decode("utf-8", "replace"))

    threading.Thread(target=rd, daemon=True).start()
    threading.Thread(target=rderr, daemon=True).start()
    deadline = time.time() + timeout

    def send(obj):
        p.stdin.write((json.dumps(obj) + "\n").encode())
        p.stdin.flush()

    def wait_for(rid):
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise Failure("run: timeout waiting for id %d; stderr: %s"
                              % (rid, last_line("".join(errbuf))))
            try:
                line = q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                time.sleep(0.3)
                raise Failure("run: exited (rc=%s); stderr: %s"
                              % (p.poll(), last_line("".join(errbuf))))
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("id") == rid and ("result" in msg or "error" in msg):
                if "error" in msg:
                    raise Failure("run: error for id %d: %s"
                                  % (rid, json.dumps(msg["error"])[:200]))
                return msg["result"]
            if "method" in msg and "id" in msg:
                # a request from the server (roots/list, ping...): answer minimally
                if msg["method"] == "roots/list":
                    send({"jsonrpc": "2.0", "id": msg["id"], "result": {"roots": []}})
                elif msg["method"] == "ping":
                    send({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
                else:
                    send({"jsonrpc": "2.0", "id": msg["id"],
                          "error": {"code": -32601, "message": "not supported"}})

    try:
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "mcp-guard-corpus-harvester", "version": "0.1"}}})
        init = wait_for(1)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools, cursor, rid = [], None, 2
        while True:
            params = {"cursor": cursor} if cursor else {}
            res = wait_for_send(send, wait_for, rid, params)
            tools.extend(res.get("tools") or [])
            cursor = res.get("nextCursor")
            rid += 1
            if not cursor or rid > 100:
                break
        return init, tools
    except (BrokenPipeError, OSError) as e:
        raise Failure("run: pipe closed (%s); stderr: %s" % (e, last_line("".join(errbuf))))
    finally:
        kill_group(p)


def wait_for_send(send, wait_for, rid, params):
    send({"jsonrpc": "2.0", "id": rid, "method": "tools/list", "params": params})
    return wait_for(rid)


def harvest(srv, args):
    d = tempfile.mkdtemp(prefix="mcpharvest-")
    try:
        if srv["registry"] == "npm":
            cmd, version = install_npm(srv, d, args.install_timeout)
            cmd = cmd + srv["args"]
        else:
            cmd, version = install_pypi(srv, d, args.install_timeout)
            cmd = cmd + srv.get("run_args", [])
        work = os.path.join(d, "work")
        os.makedirs(work, exist_ok=True)
        env = dict(os.environ)
        env.update(srv["env"])
        env.setdefault("HOME", work)
        init, tools = talk(cmd, work, env, args.run_timeout)
        if not tools:
            raise Failure("run: tools/list returned no tools")
        doc = {"registry": srv["registry"], "package": srv["package"], "version": version}
        if srv["env"]:
            doc["env"] = srv["env"]
        si = init.get("serverInfo") if isinstance(init, dict) else None
        if si:
            doc["serverInfo"] = si
        doc["tools"] = tools
        path = os.path.join(args.out, out_name(srv["registry"], srv["package"]))
        with open(path, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=False, ensure_ascii=False)
            f.write("\n")
        return len(tools)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", default=os.path.join(HERE, "servers.txt"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "corpus", "harvest"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--install-timeout", type=int, default=60)
    ap.add_argument("--run-timeout", type=int, default=20)
    ap.add_argument("--skip-done", action="store_true",
                    help="skip servers whose output file exists")
    ap.add_argument("--only", nargs="*", help="package names to run")
    ap.add_argument("--python", help="interpreter for the PyPI venvs (default: python3.12 if found)")
    args = ap.parse_args()
    PYTHON[0] = pick_python(args.python)
    os.makedirs(args.out, exist_ok=True)
    servers = []
    with open(args.list) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                servers.append(parse_line(line))
    if args.only:
        servers = [s for s in servers if s["package"] in args.only]
    if args.skip_done:
        servers = [s for s in servers if not os.path.exists(
            os.path.join(args.out, out_name(s["registry"], s["package"])))]
    fail_path = os.path.join(args.out, "failures.txt")
    # keep earlier failures of servers not run this time
    names = {(s["registry"], s["package"]) for s in servers}
    kept = []
    if os.path.exists(fail_path):
        with open(fail_path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 2 and tuple(parts[0].split(":", 1)) not in names:
                    kept.append(line.rstrip("\n"))
    failures = list(kept)
    ok = 0
    work = queue.Queue()
    for s in servers:
        work.put(s)

    def worker():
        nonlocal ok
        while True:
            try:
                s = work.get_nowait()
            except queue.Empty:
                return
            t0 = time.time()
            try:
                n = harvest(s, args)
                with LOCK:
                    ok += 1
                log("ok   %s:%s %d tools (%.0fs)" % (s["registry"], s["package"], n,
                                                    time.time() - t0))
            except Exception as e:  # noqa: BLE001 - one server's failure must not stop the run
                reason = str(e).replace("\n", " ").replace("\t", " ")[:300]
                if not isinstance(e, Failure):
                    reason = "%s: %s" % (type(e).__name__, reason)
                with LOCK:
                    failures.append("%s:%s\t%s" % (s["registry"], s["package"], reason))
                    with open(fail_path, "w") as f:
                        f.write("\n".join(sorted(failures)) + ("\n" if failures else ""))
                log("FAIL %s:%s %s (%.0fs)" % (s["registry"], s["package"], reason,
                                              time.time() - t0))

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(fail_path, "w") as f:
        f.write("\n".join(sorted(failures)) + ("\n" if failures else ""))
    log("done: %d ok, %d failed this run" % (ok, len(failures) - len(kept)))


if __name__ == "__main__":
    main()
