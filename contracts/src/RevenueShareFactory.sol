// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {RevenueShare} from "./RevenueShare.sol";

/// @notice The Registry views the factory needs: an asset must be registered before it has shares.
interface IAssetRegistry {
    function datanetExists(bytes32 datanetId) external view returns (bool);
    function modelExists(bytes32 modelId) external view returns (bool);
}

/// @title RevenueShareFactory
/// @notice Creates one RevenueShare token per registered asset (a Datanet or a model), once. The
///         issuer (the node, relaying the asset owner's signed request) chooses name, symbol, supply
///         and allocation root; the supply is then fixed forever and no account holds a mint right.
contract RevenueShareFactory is AccessControl {
    /// @notice Role allowed to issue shares for registered assets.
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");

    uint8 public constant DATANET = 0;
    uint8 public constant MODEL = 1;

    /// @notice Where Datanets and models are registered.
    IAssetRegistry public immutable registry;

    /// @notice The share token of (kind, asset id), or zero before it is issued.
    mapping(uint8 kind => mapping(bytes32 assetId => address)) public shareOf;

    /// @notice Shares for an asset were created with their whole supply and allocation root.
    event SharesIssued(uint8 indexed kind, bytes32 indexed assetId, address indexed token, uint256 supply,
        bytes32 allocationRoot);

    error ZeroAddress();
    error UnknownKind(uint8 kind);
    error UnknownAsset(uint8 kind, bytes32 assetId);
    error AlreadyIssued(uint8 kind, bytes32 assetId, address token);

    /// @param registry_ The Registry of Datanets and models.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants ISSUER_ROLE).
    constructor(IAssetRegistry registry_, address admin) {
        if (address(registry_) == address(0) || admin == address(0)) revert ZeroAddress();
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Creates the asset's share token, minting `supply` into it for the Merkle drop.
    /// @param kind 0 a Datanet, 1 a model.
    /// @param assetId The asset's Registry id; it must exist and have no shares yet.
    /// @param name Token name.
    /// @param symbol Token symbol.
    /// @param supply Whole, fixed supply in base units.
    /// @param allocationRoot StandardMerkleTree root over (address, uint256) leaves summing to `supply`.
    /// @return token The new share token.
    function issue(uint8 kind, bytes32 assetId, string calldata name, string calldata symbol, uint256 supply,
        bytes32 allocationRoot) external onlyRole(ISSUER_ROLE) returns (address token)
    {
        if (kind > MODEL) revert UnknownKind(kind);
        bool exists = kind == DATANET ? registry.datanetExists(assetId) : registry.modelExists(assetId);
        if (!exists) revert UnknownAsset(kind, assetId);
        address existing = shareOf[kind][assetId];
        if (existing != address(0)) revert AlreadyIssued(kind, assetId, existing);
        token = _create(kind, assetId, name, symbol, supply, allocationRoot);
        shareOf[kind][assetId] = token;
        emit SharesIssued(kind, assetId, token, supply, allocationRoot);
    }

    function _create(uint8 kind, bytes32 assetId, string memory name, string memory symbol, uint256 supply,
        bytes32 allocationRoot) private returns (address)
    {
        bytes32 salt = keccak256(abi.encode(kind, assetId));
        return address(new RevenueShare{salt: salt}(name, symbol, kind, assetId, supply, allocationRoot));
    }
}
