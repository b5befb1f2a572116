// Compiles contracts/src/*.sol with solc-js and writes one artifact per contract to
// src/ledgerlm/chain/artifacts/<Name>.json, so the Python runtime never needs Node.
//
// Each artifact carries `sourceHash`, which lets a Python test detect sources edited without
// recompiling. It is computed as:
//
//   sha256(
//     for each file F in contracts/src/*.sol, sorted by file name (byte order):
//       utf8(basename(F)) + "\n" + raw bytes of F + "\n"
//     followed by utf8("@openzeppelin/contracts@" + version)
//   )  as lowercase hex
//
// where `version` is the "version" field of node_modules/@openzeppelin/contracts/package.json.
// Keep this comment, contracts/README.md and tests/chain/test_artifacts.py in agreement.

import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const here = dirname(fileURLToPath(import.meta.url));
const srcDir = join(here, "src");
const nodeModules = join(here, "node_modules");
const artifactsDir = join(here, "..", "src", "ledgerlm", "chain", "artifacts");

// EIP-170 runtime limit and EIP-3860 initcode limit.
const MAX_RUNTIME_BYTES = 24576;
const MAX_INITCODE_BYTES = 49152;

const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
};

function ozVersion() {
  const pkg = JSON.parse(readFileSync(join(nodeModules, "@openzeppelin", "contracts", "package.json"), "utf8"));
  return pkg.version;
}

function sourceHash(files, version) {
  const h = createHash("sha256");
  for (const name of files) {
    h.update(Buffer.from(name + "\n", "utf8"));
    h.update(readFileSync(join(srcDir, name)));
    h.update(Buffer.from("\n", "utf8"));
  }
  h.update(Buffer.from("@openzeppelin/contracts@" + version, "utf8"));
  return h.digest("hex");
}

function findImports(path) {
  // Only library imports reach the callback's filesystem lookup; our own files are passed inline.
  if (!path.startsWith("@openzeppelin/")) return { error: `import not allowed: ${path}` };
  try {
    return { contents: readFileSync(join(nodeModules, path), "utf8") };
  } catch (err) {
    return { error: `cannot read ${path}: ${err.message}` };
  }
}

const files = readdirSync(srcDir)
  .filter((f) => f.endsWith(".sol"))
  .sort((a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
if (files.length === 0) {
  console.error(`no .sol files in ${srcDir}`);
  process.exit(1);
}

const sources = {};
for (const f of files) sources[`src/${f}`] = { content: readFileSync(join(srcDir, f), "utf8") };

const input = {
  language: "Solidity",
  sources,
  settings: {
    ...settings,
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const diagnostics = output.errors ?? [];
for (const d of diagnostics) console.error(d.formattedMessage ?? d.message);
if (diagnostics.some((d) => d.severity === "error")) process.exit(1);

const hash = sourceHash(files, ozVersion());
const compiler = { version: solc.version(), settings };

mkdirSync(artifactsDir, { recursive: true });
const written = new Set();
let tooLarge = false;
const rows = [];
for (const f of files) {
  const contracts = output.contracts[`src/${f}`] ?? {};
  for (const [name, c] of Object.entries(contracts)) {
    const bytecode = c.evm.bytecode.object;
    const deployed = c.evm.deployedBytecode.object;
    // Interfaces and abstract contracts have no bytecode and need no artifact.
    if (!bytecode) continue;
    const artifact = {
      contractName: name,
      abi: c.abi,
      bytecode: "0x" + bytecode,
      deployedBytecode: "0x" + deployed,
      compiler,
      sourceHash: hash,
    };
    writeFileSync(join(artifactsDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
    written.add(`${name}.json`);
    const runtime = deployed.length / 2;
    const init = bytecode.length / 2;
    if (runtime > MAX_RUNTIME_BYTES || init > MAX_INITCODE_BYTES) tooLarge = true;
    rows.push(`${name.padEnd(18)} runtime ${String(runtime).padStart(6)} B   initcode ${String(init).padStart(6)} B`);
  }
}

// A contract removed from src/ must not leave a stale artifact behind.
for (const f of readdirSync(artifactsDir)) {
  if (f.endsWith(".json") && !written.has(f)) unlinkSync(join(artifactsDir, f));
}

console.log(`solc ${compiler.version}, evm ${settings.evmVersion}, sourceHash ${hash}`);
for (const r of rows) console.log(r);
if (tooLarge) {
  console.error(`a contract exceeds ${MAX_RUNTIME_BYTES} B runtime or ${MAX_INITCODE_BYTES} B initcode`);
  process.exit(1);
}
