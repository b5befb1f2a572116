"""ledgerlm chain: the Chain port (embedded EVM or any JSON-RPC node) and typed contract clients."""

from ledgerlm.chain.abi import Artifact, ChainEvent, load_artifact
from ledgerlm.chain.contracts import (
    Contracts,
    DatanetRecord,
    DatanetVersionRecord,
    Debit,
    EpochFunding,
    FeePolicy,
    ModelRecord,
    PendingAmount,
    PermitSignature,
    StakeRole,
)
from ledgerlm.chain.deploy import Deployment, deploy_all, role_id
from ledgerlm.chain.embedded import open_embedded
from ledgerlm.chain.errors import ChainError
from ledgerlm.chain.port import Chain, ChainHead, TxResult
from ledgerlm.chain.rpc import open_rpc

__all__ = [
    "Artifact",
    "Chain",
    "ChainError",
    "ChainEvent",
    "ChainHead",
    "Contracts",
    "DatanetRecord",
    "DatanetVersionRecord",
    "Debit",
    "Deployment",
    "EpochFunding",
    "FeePolicy",
    "ModelRecord",
    "PendingAmount",
    "PermitSignature",
    "StakeRole",
    "TxResult",
    "deploy_all",
    "load_artifact",
    "open_embedded",
    "open_rpc",
    "role_id",
]
