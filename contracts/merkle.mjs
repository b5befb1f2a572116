// Builds an OpenZeppelin StandardMerkleTree from JSON on stdin and prints its root and proofs, so
// ledgerlm's own Merkle code can be checked against the reference implementation.
//
// stdin:  {"types": ["address", "uint256"], "values": [["0x..", "1000"], ...],
//          "options": {"sortLeaves": true}}          (options optional; uint256 as decimal strings)
// stdout: {"root": "0x..", "proofs": [["0x..", ...], ...], "leaves": ["0x..", ...]}
//         proofs[i] and leaves[i] belong to values[i], in input order.

import { readFileSync } from "node:fs";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

const request = JSON.parse(readFileSync(0, "utf8"));
if (!Array.isArray(request.types) || !Array.isArray(request.values) || request.values.length === 0) {
  console.error('expected {"types": [...], "values": [[...], ...]} with at least one value');
  process.exit(2);
}
const tree = StandardMerkleTree.of(request.values, request.types, request.options ?? {});
const proofs = request.values.map((_, i) => tree.getProof(i));
const leaves = request.values.map((_, i) => tree.leafHash(request.values[i]));
process.stdout.write(JSON.stringify({ root: tree.root, proofs, leaves }) + "\n");
