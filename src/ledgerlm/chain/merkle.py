"""Merkle trees in OpenZeppelin's StandardMerkleTree format, so standard tools verify our proofs.

Leaf: keccak256(bytes.concat(keccak256(abi.encode(values)))); inner node: keccak256 of the two
children sorted; leaves sorted by hash; the tree is laid out in one array as in
`@openzeppelin/merkle-tree` (root at index 0, leaf i at the end, children of n at 2n+1 and 2n+2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import keccak


def leaf_hash(types: Sequence[str], values: Sequence[Any]) -> bytes:
    return keccak(keccak(encode(list(types), [_abi_value(t, v) for t, v in zip(types, values)])))


def _abi_value(kind: str, value: Any) -> Any:
    if kind.startswith("bytes") and isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    return value


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b if a < b else b + a)


@dataclass
class StandardMerkleTree:
    types: list[str]
    values: list[list[Any]]  # in the caller's order
    tree: list[bytes]
    leaf_index: list[int]  # value i sits at tree[leaf_index[i]]

    @classmethod
    def of(cls, values: Sequence[Sequence[Any]], types: Sequence[str]) -> StandardMerkleTree:
        if not values:
            raise ValueError("a Merkle tree needs at least one leaf")
        hashed = sorted(
            ((leaf_hash(types, v), i) for i, v in enumerate(values)), key=lambda pair: pair[0]
        )
        size = 2 * len(hashed) - 1
        tree: list[bytes] = [b""] * size
        leaf_index = [0] * len(values)
        for position, (digest, original) in enumerate(hashed):
            tree[size - 1 - position] = digest
            leaf_index[original] = size - 1 - position
        for n in range(size - 1 - len(hashed), -1, -1):
            tree[n] = hash_pair(tree[2 * n + 1], tree[2 * n + 2])
        return cls(list(types), [list(v) for v in values], tree, leaf_index)

    @property
    def root(self) -> str:
        return "0x" + self.tree[0].hex()

    def proof(self, i: int) -> list[str]:
        n = self.leaf_index[i]
        proof = []
        while n > 0:
            sibling = n - 1 if n % 2 == 0 else n + 1
            proof.append("0x" + self.tree[sibling].hex())
            n = (n - 1) // 2
        return proof


def verify_proof(root: str, types: Sequence[str], value: Sequence[Any], proof: Sequence[str]) -> bool:
    node = leaf_hash(types, value)
    for sibling in proof:
        node = hash_pair(node, bytes.fromhex(sibling.removeprefix("0x")))
    return "0x" + node.hex() == root.lower()
