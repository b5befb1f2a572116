// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Registry} from "./Registry.sol";
import {RevenueShare} from "./RevenueShare.sol";

/// @notice The Registry views the factory needs: an asset must be registered before it has shares, and its
///         owner (a Datanet's owner, a model's developer) is who consents to them.
interface IAssetRegistry {
    function datanetExists(bytes32 datanetId) external view returns (bool);
    function modelExists(bytes32 modelId) external view returns (bool);
    function getDatanet(bytes32 datanetId) external view returns (Registry.Datanet memory);
    function getModel(bytes32 modelId) external view returns (Registry.Model memory);
}

/// @title RevenueShareFactory
/// @notice Creates one RevenueShare token per registered asset (a Datanet or a model), once, on terms its owner
///         signed: the Registry's owner of the Datanet or developer of the model signs an EIP-712 `ShareIssue`
///         over kind, asset id, supply and allocation root, and an issuer (the node) relays it. The supply is
///         then fixed forever and no account holds a mint right.
/// @dev The issuer key alone cannot create an asset's token: the owner's signature decides who gets the supply,
///      so a stolen issuer key can neither allocate an asset's shares to itself nor take the one issue an asset
///      has away from its owner. Contract wallets sign through ERC-1271.
contract RevenueShareFactory is AccessControl, EIP712 {
    /// @notice Role allowed to relay owners' signed issues.
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");

    /// @notice EIP-712 type the asset's owner signs: the terms that decide who gets what, and the token's name and
    ///         symbol, which its issuer could otherwise choose (another token's, or a private Datanet's own name).
    bytes32 public constant SHARE_ISSUE_TYPEHASH = keccak256(
        "ShareIssue(uint8 kind,bytes32 assetId,string name,string symbol,uint256 supply,bytes32 allocationRoot,"
        "uint256 deadline)"
    );

    uint8 public constant DATANET = 0;
    uint8 public constant MODEL = 1;

    /// @notice Where Datanets and models are registered.
    IAssetRegistry public immutable registry;

    /// @notice The share token of (kind, asset id), or zero before it is issued.
    mapping(uint8 kind => mapping(bytes32 assetId => address)) public shareOf;

    /// @notice Shares for an asset were created with their whole supply and allocation root, on the terms `owner`
    ///         signed.
    event SharesIssued(uint8 indexed kind, bytes32 indexed assetId, address indexed token, uint256 supply,
        bytes32 allocationRoot, address owner);

    error ZeroAddress();
    error UnknownKind(uint8 kind);
    error UnknownAsset(uint8 kind, bytes32 assetId);
    error AlreadyIssued(uint8 kind, bytes32 assetId, address token);
    error ShareIssueExpired(uint256 deadline);
    error InvalidShareIssueSignature(address owner);

    /// @param registry_ The Registry of Datanets and models.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants ISSUER_ROLE).
    constructor(IAssetRegistry registry_, address admin) EIP712("ledgerlm-shares", "1") {
        if (address(registry_) == address(0) || admin == address(0)) revert ZeroAddress();
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Creates the asset's share token, minting `supply` into it for the Merkle drop, on the terms the
    ///         asset's owner signed (`ShareIssue`, see `shareIssueDigest`).
    /// @param kind 0 a Datanet, 1 a model.
    /// @param assetId The asset's Registry id; it must exist and have no shares yet.
    /// @param name Token name.
    /// @param symbol Token symbol.
    /// @param supply Whole, fixed supply in base units.
    /// @param allocationRoot StandardMerkleTree root over (address, uint256) leaves summing to `supply`.
    /// @param deadline The last block timestamp at which the signature may be used (`ShareIssueExpired`).
    /// @param signature The Registry owner's (Datanet) or developer's (model) signature over the terms
    ///        (`InvalidShareIssueSignature`): 65 bytes from an account, or what a contract wallet's ERC-1271
    ///        `isValidSignature` accepts.
    /// @return token The new share token.
    function issue(uint8 kind, bytes32 assetId, string calldata name, string calldata symbol, uint256 supply,
        bytes32 allocationRoot, uint256 deadline, bytes calldata signature)
        external
        onlyRole(ISSUER_ROLE)
        returns (address token)
    {
        bytes32 digest = shareIssueDigest(kind, assetId, name, symbol, supply, allocationRoot, deadline);
        address owner = _consentingOwner(kind, assetId, deadline, digest, signature);
        token = _create(kind, assetId, name, symbol, supply, allocationRoot, owner);
    }

    /// @notice Who must sign an asset's issue: the Datanet's owner or the model's developer in the Registry.
    ///         Reverts with {UnknownKind} or {UnknownAsset}.
    /// @param kind 0 a Datanet, 1 a model.
    /// @param assetId The asset's Registry id.
    function assetOwner(uint8 kind, bytes32 assetId) public view returns (address) {
        if (kind > MODEL) revert UnknownKind(kind);
        if (kind == DATANET) {
            if (!registry.datanetExists(assetId)) revert UnknownAsset(kind, assetId);
            return registry.getDatanet(assetId).owner;
        }
        if (!registry.modelExists(assetId)) revert UnknownAsset(kind, assetId);
        return registry.getModel(assetId).developer;
    }

    /// @notice The EIP-712 digest of `ShareIssue(kind, assetId, name, symbol, supply, allocationRoot, deadline)` in
    ///         this factory's domain (name "ledgerlm-shares", version "1", this chain, this contract).
    function shareIssueDigest(uint8 kind, bytes32 assetId, string calldata name, string calldata symbol,
        uint256 supply, bytes32 allocationRoot, uint256 deadline) public view returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(SHARE_ISSUE_TYPEHASH, kind, assetId, keccak256(bytes(name)),
            keccak256(bytes(symbol)), supply, allocationRoot, deadline)));
    }

    /// @notice The EIP-712 domain separator (name "ledgerlm-shares", version "1").
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @dev The asset's owner, once the asset is known, has no shares yet and the owner signed these terms
    ///      (`digest`, see `shareIssueDigest`).
    function _consentingOwner(uint8 kind, bytes32 assetId, uint256 deadline, bytes32 digest,
        bytes calldata signature) private view returns (address owner)
    {
        owner = assetOwner(kind, assetId);
        address existing = shareOf[kind][assetId];
        if (existing != address(0)) revert AlreadyIssued(kind, assetId, existing);
        if (block.timestamp > deadline) revert ShareIssueExpired(deadline);
        if (!SignatureChecker.isValidSignatureNowCalldata(owner, digest, signature)) {
            revert InvalidShareIssueSignature(owner);
        }
    }

    function _create(uint8 kind, bytes32 assetId, string memory name, string memory symbol, uint256 supply,
        bytes32 allocationRoot, address owner) private returns (address token)
    {
        bytes32 salt = keccak256(abi.encode(kind, assetId));
        token = address(new RevenueShare{salt: salt}(name, symbol, kind, assetId, supply, allocationRoot));
        shareOf[kind][assetId] = token;
        emit SharesIssued(kind, assetId, token, supply, allocationRoot, owner);
    }
}
