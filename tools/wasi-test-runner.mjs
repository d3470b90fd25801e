// Runs a wasm32-wasip1 test or example binary in Node's V8 (the engine Envoy embeds) through WASI preview1.
// Cargo calls it as the target runner: `node tools/wasi-test-runner.mjs <test.wasm> [args...]`.
// proxy-wasm host functions are stubbed to throw: the pure logic under test must never call them.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [wasmPath, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [wasmPath, ...args], env: process.env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));

const env = {};
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === "env" && imp.kind === "function") {
    env[imp.name] = () => { throw new Error(`host call ${imp.name} reached from a unit test`); };
  }
}
const instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wasi.wasiImport, env });
// Binaries that link the filter also export the reactor entry `_initialize`, which WASI's
// start() refuses next to `_start`: hand it only what a command needs.
const { _start, memory } = instance.exports;
process.exitCode = wasi.start({ exports: { _start, memory } });
