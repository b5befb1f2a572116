// Checks one StandardMerkleTree proof with the reference implementation.
//
// stdin:  {"root": "0x..", "types": ["address", "uint256"], "value": ["0x..", "1000"], "proof": ["0x..", ...]}
// stdout: {"valid": true|false}

import { readFileSync } from "node:fs";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

const { root, types, value, proof } = JSON.parse(readFileSync(0, "utf8"));
const valid = StandardMerkleTree.verify(root, types, value, proof);
process.stdout.write(JSON.stringify({ valid }) + "\n");
