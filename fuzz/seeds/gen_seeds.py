#!/usr/bin/env python3
"""Regenerates the committed seed corpora from the project's test tables.

- seeds/inspector/: every case of `CASES` in src/mcp/tests.rs (parsed from the Rust source: the
  `case` / `bytes` / `hdr` constructors, `concat!`, `call!`, `tok!`, raw/byte/plain string
  literals), framed in the inspector target's input layout (see fuzz_targets/inspector.rs), plus
  a few `Mcp-Param-*` header cases from THREATS-style examples.
- seeds/token/: the Authorization values of src/auth/token.rs tests (transcribed: they are built
  with `format!`), the query strings of `finds_tokens_embedded_in_query_strings`, and the
  scanner cases of protocol/src/token.rs `finds_tokens_anywhere`.

Run from anywhere: python3 fuzz/seeds/gen_seeds.py  (deterministic; rewrites the seed files)
"""
import hashlib
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

TOK = b"amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8"
CALL_PRE = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"deploy","arguments":'
CALL_POST = b"}}"


class P:
    def __init__(self, src, i):
        self.s, self.i = src, i

    def ws(self):
        while True:
            while self.i < len(self.s) and self.s[self.i].isspace():
                self.i += 1
            if self.s.startswith("//", self.i):
                self.i = self.s.index("\n", self.i)
                continue
            return

    def expect(self, t):
        self.ws()
        assert self.s.startswith(t, self.i), (t, self.s[self.i:self.i + 40])
        self.i += len(t)

    def peek(self, t):
        self.ws()
        return self.s.startswith(t, self.i)

    def raw(self, prefix_len):
        m = re.compile(r'r(#*)"').match(self.s, self.i + prefix_len)
        hashes = m.group(1)
        start = m.end()
        end = self.s.index('"' + hashes, start)
        self.i = end + 1 + len(hashes)
        return self.s[start:end].encode()

    def quoted(self, is_bytes):
        self.i += 1  # opening quote
        out = bytearray()
        while True:
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                return bytes(out)
            if c != "\\":
                out += c.encode()
                self.i += 1
                continue
            e = self.s[self.i + 1]
            self.i += 2
            if e in "\"\\'":
                out += e.encode()
            elif e == "n":
                out += b"\n"
            elif e == "r":
                out += b"\r"
            elif e == "t":
                out += b"\t"
            elif e == "0":
                out += b"\0"
            elif e == "x":
                v = int(self.s[self.i:self.i + 2], 16)
                out += bytes([v]) if is_bytes else chr(v).encode()
                self.i += 2
            elif e == "u":
                j = self.s.index("}", self.i)
                out += chr(int(self.s[self.i + 1:j], 16)).encode()
                self.i = j + 1
            elif e == "\n":
                while self.s[self.i].isspace():
                    self.i += 1
            else:
                raise ValueError("escape " + e)

    def expr(self):
        self.ws()
        s = self.s
        if s.startswith("br", self.i) and s[self.i + 2] in '#"':
            return self.raw(1)
        if s.startswith("r#", self.i) or s.startswith('r"', self.i):
            return self.raw(0)
        if s.startswith('b"', self.i):
            self.i += 1
            return self.quoted(True)
        if s[self.i] == '"':
            return self.quoted(False)
        if s.startswith("&[", self.i):
            self.i += 2
            items = []
            while not self.peek("]"):
                items.append(self.expr())
                if self.peek(","):
                    self.expect(",")
            self.expect("]")
            return items
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*!?").match(s, self.i)
        if not m:
            raise ValueError(s[self.i:self.i + 40])
        name = m.group(0)
        self.i = m.end()
        if not self.peek("("):
            return ("ident", name)
        self.expect("(")
        args = []
        while not self.peek(")"):
            args.append(self.expr())
            if self.peek(","):
                self.expect(",")
        self.expect(")")
        if name == "concat!":
            return b"".join(args)
        if name == "call!":
            return CALL_PRE + args[0] + CALL_POST
        if name == "tok!":
            return TOK
        return (name, args)


def inspector_cases():
    src = open(os.path.join(ROOT, "src/mcp/tests.rs"), encoding="utf-8").read()
    start = src.index("static CASES: &[Case] = &[") + len("static CASES: &[Case] = ")
    p = P(src, start)
    p.expect("&[")
    cases = []
    while not p.peek("]"):
        kind, args = p.expr()
        if p.peek(","):
            p.expect(",")
        name = args[0].decode()
        body = args[1]
        method, mname = ([], []) if kind != "hdr" else (args[2], args[3])
        cases.append((name, body, method, mname))
    return cases


def frame(i, body, method=(), mname=(), param=None):
    flags = 0
    tail = b""
    if method:
        flags |= 1
        if len(method) > 1:
            flags |= 16
    if mname:
        flags |= 2
    if method or mname or param:
        tail = b"\xff" + (method[0] if method else b"") + b"\xff" + (mname[0] if mname else b"")
    if param:
        tail += b"\xff" + param[0] + b"\xff" + param[1]
    chunkings = [(1, 3, 7, 2, 4), (5, 0, 0, 0, 255), (2, 2, 2, 2, 1), (64, 1, 0, 9, 16)]
    c = chunkings[i % len(chunkings)]
    if i % 5 == 4:
        flags |= 32
    return bytes([flags, *c]) + body + tail


def slug(name):
    s = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    return s[:60] or "empty"


def write(dirname, name, data):
    path = os.path.join(HERE, dirname, name)
    with open(path, "wb") as f:
        f.write(data)


def main():
    for d in ("inspector", "token", "headers", "sync_page"):
        os.makedirs(os.path.join(HERE, d), exist_ok=True)
        for f in os.listdir(os.path.join(HERE, d)):
            if f.startswith("t-"):  # generated; regression seeds (other names) are kept
                os.remove(os.path.join(HERE, d, f))

    cases = inspector_cases()
    for i, (name, body, method, mname) in enumerate(cases):
        write("inspector", f"t-{i:03d}-{slug(name)}", frame(i, body, method, mname))
    # Headers derived from the body (flags bit2), plain and base64.
    extra = [
        ("derived-headers", bytes([0x07, 1, 3, 7, 2, 4]) + CALL_PRE + b'{"q":1}' + CALL_POST),
        ("derived-headers-b64", bytes([0x0F, 3, 1, 0, 0, 2]) + CALL_PRE + b'{"q":1}' + CALL_POST),
        ("derived-resources-read", bytes([0x07, 9, 9, 9, 9, 9]) + b'{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}'),
        ("param-header-name", frame(1, CALL_PRE + b"{}" + CALL_POST, param=(b"api_key", b"x"))),
        ("param-header-token", frame(2, CALL_PRE + b"{}" + CALL_POST, param=(b"target", TOK))),
        ("param-header-b64-token", frame(3, CALL_PRE + b"{}" + CALL_POST, param=(b"x", b"=?base64?" + __import__("base64").b64encode(TOK) + b"?="))),
    ]
    for name, data in extra:
        write("inspector", f"t-x-{name}", data)

    key_id = b"k3x9a0b1c2d3"
    secret = b"Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8"
    t = b"amt_" + key_id + b"_" + secret
    long_secret = b"a" * 65
    token_cases = [
        b"Bearer " + t, b"bearer " + t, b"BEARER " + t, b"bEaReR " + t, b"",
        b"Bearer", b"Bearer ", b"Bearer  " + t, b"Bearer\t" + t, b"Bearer " + t + b" ",
        b" Bearer " + t, b"Bearer " + t + b",Bearer " + t, b"Basic " + t, b"Bearerx" + t,
        b"Token " + t, t, b"Bearer AMT_" + key_id + b"_" + secret,
        b"Bearer amt_" + key_id.upper() + b"_" + secret, b"Bearer amt_short_" + secret,
        b"Bearer amt_" + b"a" * 33 + b"_" + secret, b"Bearer amt_" + key_id + b"_" + secret[:31],
        b"Bearer amt_" + key_id + b"_" + long_secret, b"Bearer amt_" + key_id + b"_" + secret + b"_extra",
        b"Bearer amt_" + key_id + b"_" + secret[:40] + "é".encode(), b"Bearer amt_" + key_id + b"-" + secret,
        b"Bearer amt__" + secret, b"Bearer amt_" + key_id + b"_", b"Bearer amt_" + key_id + b"_" + secret[:40] + b"=",
        b"Bearer " + b"a" * 10_000, "Bearer é".encode(),
        b"amt_" + b"a" * 8 + b"_" + b"B" * 32, b"amt_" + b"a" * 32 + b"_" + b"B" * 64,
        b"Bearer amt_" + b"a" * 32 + b"_" + b"B" * 64,
        b"Bearer " + t + b"\nBearer " + t,
        b"/api/mcp?api_key=" + t, b"/api/mcp?x=1&t=" + t + b"&y=2", b"/api/mcp?amt_=1&name=amt_short", b"/api/mcp",
        b"amt_k3x9a0b1_" + b"Ab1" * 11, b"Bearer amt_k3x9a0b1_" + b"Ab1" * 11, b"xamt_k3x9a0b1_" + b"Ab1" * 11,
        b"amt_k3x9a0b1_" + b"Ab1" * 11 + b"Z" * 36, b"amamt_amt_k3x9a0b1_" + b"Ab1" * 11,
        b"amt_k3x9a0b_" + b"A" * 40, b"amt_K3X9A0B1_" + b"A" * 40, b"amt_k3x9a0b1_" + b"A" * 31,
        b"AMT_k3x9a0b1_" + b"A" * 40, b"amt_" + b"a" * 33 + b"_" + b"A" * 40, b"amt_",
    ]
    for i, data in enumerate(token_cases):
        h = hashlib.sha1(data).hexdigest()[:8]
        write("token", f"t-{i:03d}-{h}", data)

    # headers: lines `name:value` (a first line starting with `/` is the path), see
    # fuzz_targets/headers.rs; the credential classes of request.rs's table, encoded every way
    # src/auth/smuggled.rs decodes.
    b64 = __import__("base64")
    pct = lambda data: b"".join(b"%%%02X" % c for c in data)
    header_cases = [
        b"x-api-key:" + t,
        b"proxy-authorization:Basic " + b64.b64encode(b"agent:" + t),
        b"x-token:" + b64.urlsafe_b64encode(t).rstrip(b"="),
        b"x-token:xy" + b64.b64encode(t),
        b"cookie:theme=dark; k=" + t.replace(b"_", b"%5F"),
        b"cookie:k=" + t.replace(b"_", b"%255F"),
        b"x-forwarded-credential:" + pct(t),
        b"x-request-id:" + t,
        b"/api/mcp/" + t + b"?x=1",
        b"/api/mcp?access_token=abc",
        b"/api/mcp?cursor=amt_page\ncookie:amt_session=short",
        b"user-agent:amt_client/1.0\naccept:application/json",
        t + b":1",
        b"x-b64-pct:" + pct(b64.b64encode(t)),
        b"proxy-authorization:Basic " + b" ".join(
            b64.b64encode(b"agent:" + t)[i:i + 4] for i in range(0, 80, 4)),
        b"proxy-authorization:Basic " + b64.b64encode(b"client:" + t.replace(b"_", b"%5F")),
        b'cookie:k="' + t.replace(b"_", b"\\137") + b'"',
        b'x-json:{"key":"' + t.replace(b"_", b"\\u005f") + b'"}',
        b"/api/mcp?access%5Ftoken=abc",
        b"/api/mcp?a=1;access_token[]=abc",
        b"user-agent:caf\xe9 \xff\xfe " + t,
    ]
    for i, data in enumerate(header_cases):
        h = hashlib.sha1(data).hexdigest()[:8]
        write("headers", f"t-{i:03d}-{h}", data.replace(b"\\n", b"\n"))
    # sync_page: 8 bytes of `since`, then a page (the shapes of protocol/src/sync.rs's tests).
    h64 = b"8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
    up = lambda kid, v, org=b"demo": (b'{"key_id":"' + kid + b'","sha256":"' + h64 + b'","org":"' + org
                                     + b'","role":"admin","expires_at":null,"version":' + v + b"}")
    rev = lambda kid, v: b'{"key_id":"' + kid + b'","version":' + v + b"}"
    pg = lambda epoch, v, ups=b"", revs=b"", more=b"false": (b'{"epoch":"' + epoch + b'","version":' + v
                                                           + b',"more":' + more + b',"upserts":[' + ups
                                                           + b'],"revocations":[' + revs + b"]}")
    le = lambda n: n.to_bytes(8, "little")
    sync_cases = [
        le(0) + pg(b"e1", b"0"),
        le(0) + b'{"epoch":"e1","version":3}',
        le(5) + pg(b"e1", b"12", up(b"aaaaaaaa", b"11") + b"," + up(b"b" * 32, b"6"), rev(b"cccccccc", b"12"), b"true"),
        le(20) + pg(b"e1", b"12", up(b"aaaaaaaa", b"11")),
        le(6) + pg(b"e1", b"12", up(b"aaaaaaaa", b"6")),
        le(0) + pg(b"e1", b"1", up(b"aaaaaaaa", b"1").replace(b'"org":"demo"', b'"org":"Demo"')),
        le(0) + pg(b"e1", b"1", up(b"aaaaaaaa", b"1").replace(h64, h64.upper())),
        le(0) + pg(b"e1", b"1", up(b"AAAAAAAA", b"1")),
        le(0) + pg(b"e-1", b"1"),
        le(0) + pg(b"e" * 65, b"1"),
        le(0) + pg(b"e1", b"1").replace(b'"more"', b'"extra":1,"more"'),
        le(0) + pg(b"e1", b"18446744073709551615", rev(b"cccccccc", b"18446744073709551615")),
        le(0) + pg(b"e1", b"1") + b"trailing",
        le(0) + b"[]",
        b"",
        le(0) + pg(b"e1", b"1", up(b"aaaaaaaa", b"1").replace(b'"version"', b'"user":"alice@example.com","version"')),
        le(0) + pg(b"e1", b"1", up(b"aaaaaaaa", b"1").replace(b'"version"', b'"user":"Alice","version"')),
        le(0) + pg(b"e1", b"2")[:-1] + b',"policies":[{"org":"demo","version":2,"policy":{"mode":"audit","roles":['
        + b'{"role":"viewer","tools":["search_*","echo"],"deny_tools":["?x*y"],"methods":["resources/*"],'
        + b'"deny_methods":[]}]}},{"org":"acme","version":1,"policy":null}]}',
        le(0) + pg(b"e1", b"2")[:-1] + b',"policies":[{"org":"demo","version":2,"policy":{"mode":"audit","roles":[]}},'
        + b'{"org":"demo","version":3,"policy":null}]}',
    ]
    for i, data in enumerate(sync_cases):
        h = hashlib.sha1(data).hexdigest()[:8]
        write("sync_page", f"t-{i:03d}-{h}", data)
    print(f"inspector: {len(cases) + len(extra)} seeds, token: {len(token_cases)} seeds, "
          f"headers: {len(header_cases)} seeds, sync_page: {len(sync_cases)} seeds")


if __name__ == "__main__":
    main()
