"""ledgerlm chain: the Chain port (embedded EVM or any JSON-RPC node), typed contract clients and
Merkle trees in OpenZeppelin's format.

Names load on first use, so rooms that only need `ledgerlm.chain.merkle` do not import web3.
"""

from ledgerlm.lazy import lazy_names

_EXPORTS = {
    "Artifact": "abi", "ChainEvent": "abi", "load_artifact": "abi",
    "CAP_LIMIT": "contracts", "DEADLINE_LIMIT": "contracts", "Contracts": "contracts", "DatanetRecord": "contracts", "DatanetVersionRecord": "contracts",
    "Debit": "contracts", "SignedSpendingCap": "contracts", "SpendingAllowance": "contracts", "cap_nonce": "contracts",
    "epoch_id": "contracts",
    "EpochFunding": "contracts", "FeePolicy": "contracts", "ModelRecord": "contracts",
    "PendingAmount": "contracts", "PermitSignature": "contracts", "StakeRole": "contracts",
    "HeldSlash": "contracts", "SlashState": "contracts",
    "Deployment": "deploy", "deploy_all": "deploy", "role_id": "deploy",
    "open_embedded": "embedded",
    "ChainError": "errors",
    "Chain": "port", "ChainBlock": "port", "ChainHead": "port", "ChainTransaction": "port", "TxResult": "port",
    "open_rpc": "rpc",
    "ChainIndexer": "indexer", "IndexStatus": "indexer", "IndexStep": "indexer",
    "NonceBook": "nonces",
    "AnchoredVersion": "views", "ChainView": "views", "Claim": "views", "Deposit": "views", "PostedRoot": "views", "RegisteredDatanet": "views",
    "Settlement": "views",
    "StandardMerkleTree": "merkle", "verify_proof": "merkle", "leaf_hash": "merkle",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_names(__name__, _EXPORTS)
