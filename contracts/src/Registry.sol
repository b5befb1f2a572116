// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";

/// @title Registry
/// @notice On-chain record of Datanets, their published versions (Merkle roots over accepted
///         contributions), fine-tuned models with their lineage, and each model's fee policy.
/// @dev The node relays actions that users signed off-chain, so writes are gated by REGISTRAR_ROLE;
///      a model's developer may also set that model's fee policy directly.
contract Registry is AccessControl {
    using Checkpoints for Checkpoints.Trace160;

    /// @notice Role held by nodes that relay signed user actions.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    /// @notice Fee shares are basis points of one fee; the four shares always sum to this.
    uint16 public constant TOTAL_BPS = 10_000;

    struct Datanet {
        address owner;
        string name;
        bytes32 metadataHash;
        string licence;
        uint64 latestVersion;
        uint64 createdAt;
    }

    struct DatanetVersion {
        bytes32 root;
        uint64 count;
        bytes32 manifestHash;
        uint64 publishedAt;
    }

    struct Model {
        address developer;
        string baseModel;
        bytes32 baseModelHash;
        bytes32 adapterHash;
        bytes32[] datanetVersionRoots;
        bytes32 trainingConfigHash;
        bytes32 evalMetricsHash;
        uint64 registeredAt;
    }

    struct FeePolicy {
        uint16 nodeBps;
        uint16 developerBps;
        uint16 contributorsBps;
        uint16 validatorsBps;
    }

    /// @dev Where a version root was first published; version 0 means "never published".
    struct RootPublication {
        bytes32 datanetId;
        uint64 version;
    }

    mapping(bytes32 datanetId => Datanet) private _datanets;
    mapping(bytes32 datanetId => mapping(uint64 version => DatanetVersion)) private _versions;
    mapping(bytes32 modelId => Model) private _models;

    /// @notice Fee policy a model was published with (`setFeePolicy`); all four shares are zero until one is set.
    ///         It prices the epochs before the first change announced with `scheduleFeePolicy`: read
    ///         `feePolicyAt` for the split of a given settlement epoch.
    mapping(bytes32 modelId => FeePolicy) public feePolicy;

    /// @dev Every change announced with `scheduleFeePolicy`, keyed by the settlement epoch it prices from (in
    ///      ascending order), the four shares packed into the value (`_packFeePolicy`). Each change keeps its own
    ///      entry, so announcing one never moves another's epoch and each epoch keeps the split announced for it.
    mapping(bytes32 modelId => Checkpoints.Trace160) private _feePolicyChanges;

    /// @notice Price of calling a model, in base units of the payment token per 1,000 tokens (prompt and
    ///         completion together); zero until set, which serves the model for free.
    mapping(bytes32 modelId => uint256) public pricePer1k;

    /// @notice The first (datanet, version) that published a given Merkle root; version 0 if none did.
    mapping(bytes32 root => RootPublication) public rootPublication;

    event DatanetRegistered(
        bytes32 indexed datanetId, address indexed owner, string name, bytes32 metadataHash, string licence
    );
    event VersionPublished(
        bytes32 indexed datanetId, uint64 indexed version, bytes32 root, uint64 count, bytes32 manifestHash
    );
    event ModelRegistered(
        bytes32 indexed modelId,
        address indexed developer,
        string baseModel,
        bytes32 baseModelHash,
        bytes32 adapterHash,
        bytes32[] datanetVersionRoots,
        bytes32 trainingConfigHash,
        bytes32 evalMetricsHash
    );
    event FeePolicySet(
        bytes32 indexed modelId, uint16 nodeBps, uint16 developerBps, uint16 contributorsBps, uint16 validatorsBps
    );

    event FeePolicyScheduled(
        bytes32 indexed modelId,
        uint16 nodeBps,
        uint16 developerBps,
        uint16 contributorsBps,
        uint16 validatorsBps,
        uint64 fromEpoch
    );

    event PriceSet(bytes32 indexed modelId, uint256 pricePer1k);

    error ZeroAddress();
    error ZeroId();
    error ZeroRoot();
    error DatanetAlreadyRegistered(bytes32 datanetId);
    error UnknownDatanet(bytes32 datanetId);
    error NonSequentialVersion(bytes32 datanetId, uint64 expected, uint64 given);
    error UnknownVersion(bytes32 datanetId, uint64 version);
    error ModelAlreadyRegistered(bytes32 modelId);
    error UnknownModel(bytes32 modelId);
    error UnknownVersionRoot(bytes32 root);
    error NotRegistrarOrDeveloper(bytes32 modelId, address caller);
    error FeeSharesMustSumTo10000(uint256 sum);
    error FeePolicyEpochBeforeScheduled(bytes32 modelId, uint64 scheduled, uint64 given);
    error FeePolicyChangeScheduled(bytes32 modelId);
    error ZeroEpoch();
    error FeePolicyAlreadySet(bytes32 modelId);
    error FeePolicyEpochTooFar(bytes32 modelId, uint64 fromEpoch, uint64 notAfter);

    /// @notice How far past the last announced change (or epoch 1) a change may be scheduled, so nobody can push the
    ///         last announced epoch to 2**64-1 and freeze a model's policy.
    uint64 public constant MAX_SCHEDULE_AHEAD = 1_000_000;

    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants REGISTRAR_ROLE to nodes).
    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Records a new Datanet. Reverts with {DatanetAlreadyRegistered} if the id is taken.
    /// @param datanetId Content-derived id chosen off-chain (non-zero).
    /// @param owner The Datanet owner's account.
    /// @param name Human-readable name.
    /// @param metadataHash Hash of the off-chain metadata (domain, schema, access rules).
    /// @param licence Licence identifier of the data (e.g. an SPDX id).
    function registerDatanet(
        bytes32 datanetId,
        address owner,
        string calldata name,
        bytes32 metadataHash,
        string calldata licence
    ) external onlyRole(REGISTRAR_ROLE) {
        if (datanetId == bytes32(0)) revert ZeroId();
        if (owner == address(0)) revert ZeroAddress();
        Datanet storage d = _datanets[datanetId];
        if (d.owner != address(0)) revert DatanetAlreadyRegistered(datanetId);
        d.owner = owner;
        d.name = name;
        d.metadataHash = metadataHash;
        d.licence = licence;
        d.createdAt = uint64(block.timestamp);
        emit DatanetRegistered(datanetId, owner, name, metadataHash, licence);
    }

    /// @notice Publishes the next version of a Datanet. Versions start at 1 and increase by exactly one.
    /// @param datanetId A registered Datanet.
    /// @param version Must equal latestVersion(datanetId) + 1.
    /// @param root Merkle root over the accepted contribution hashes (non-zero).
    /// @param count Number of contributions under the root.
    /// @param manifestHash Hash of the off-chain version manifest.
    function publishVersion(bytes32 datanetId, uint64 version, bytes32 root, uint64 count, bytes32 manifestHash)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        Datanet storage d = _requireDatanet(datanetId);
        uint64 expected = d.latestVersion + 1;
        if (version != expected) revert NonSequentialVersion(datanetId, expected, version);
        if (root == bytes32(0)) revert ZeroRoot();
        d.latestVersion = version;
        _versions[datanetId][version] =
            DatanetVersion({root: root, count: count, manifestHash: manifestHash, publishedAt: uint64(block.timestamp)});
        if (rootPublication[root].version == 0) {
            rootPublication[root] = RootPublication({datanetId: datanetId, version: version});
        }
        emit VersionPublished(datanetId, version, root, count, manifestHash);
    }

    /// @notice Records a fine-tuned model and its lineage. Every root in `datanetVersionRoots` must be a
    ///         published Datanet version root, so lineage always points at data the registry knows.
    /// @param modelId Id chosen off-chain (non-zero, unused).
    /// @param developer The model developer's account.
    /// @param baseModel Name of the base model.
    /// @param baseModelHash Hash of the base model weights.
    /// @param adapterHash Hash of the trained adapter weights.
    /// @param datanetVersionRoots Version roots of the Datanets the model was trained on.
    /// @param trainingConfigHash Hash of the training configuration.
    /// @param evalMetricsHash Hash of the evaluation report.
    function registerModel(
        bytes32 modelId,
        address developer,
        string calldata baseModel,
        bytes32 baseModelHash,
        bytes32 adapterHash,
        bytes32[] calldata datanetVersionRoots,
        bytes32 trainingConfigHash,
        bytes32 evalMetricsHash
    ) external onlyRole(REGISTRAR_ROLE) {
        if (modelId == bytes32(0)) revert ZeroId();
        if (developer == address(0)) revert ZeroAddress();
        Model storage m = _models[modelId];
        if (m.developer != address(0)) revert ModelAlreadyRegistered(modelId);
        for (uint256 i = 0; i < datanetVersionRoots.length; ++i) {
            if (rootPublication[datanetVersionRoots[i]].version == 0) {
                revert UnknownVersionRoot(datanetVersionRoots[i]);
            }
        }
        m.developer = developer;
        m.baseModel = baseModel;
        m.baseModelHash = baseModelHash;
        m.adapterHash = adapterHash;
        m.datanetVersionRoots = datanetVersionRoots;
        m.trainingConfigHash = trainingConfigHash;
        m.evalMetricsHash = evalMetricsHash;
        m.registeredAt = uint64(block.timestamp);
        emit ModelRegistered(
            modelId,
            developer,
            baseModel,
            baseModelHash,
            adapterHash,
            datanetVersionRoots,
            trainingConfigHash,
            evalMetricsHash
        );
    }

    /// @notice Sets the split a model was published with, once (`FeePolicyAlreadySet`) and before any change is
    ///         scheduled (`FeePolicyChangeScheduled`): it prices every epoch before the first change and is never
    ///         rewritten. Callable by a registrar (the publishing node); changes go through `scheduleFeePolicy`,
    ///         which the developer may call too. The four shares are basis points and must sum to exactly 10_000.
    /// @param modelId A registered model.
    /// @param nodeBps Share of the serving node operator.
    /// @param developerBps Share of the model developer.
    /// @param contributorsBps Share of the data contributors (by attribution).
    /// @param validatorsBps Share of the validators.
    function setFeePolicy(
        bytes32 modelId,
        uint16 nodeBps,
        uint16 developerBps,
        uint16 contributorsBps,
        uint16 validatorsBps
    ) external {
        _checkFeePolicy(modelId, nodeBps, developerBps, contributorsBps, validatorsBps);
        // the split the model was published with, which the node's receipts charge: set once, by a registrar (the
        // node, at publish), so a developer cannot take the one setting first with a split of their own
        _checkRole(REGISTRAR_ROLE);
        if (_feePolicyChanges[modelId].length() != 0) revert FeePolicyChangeScheduled(modelId);
        // the published split prices every epoch before the first change: set once, never rewritten
        FeePolicy storage current = feePolicy[modelId];
        if (uint256(current.nodeBps) + current.developerBps + current.contributorsBps + current.validatorsBps != 0) {
            revert FeePolicyAlreadySet(modelId);
        }
        feePolicy[modelId] = FeePolicy(nodeBps, developerBps, contributorsBps, validatorsBps);
        emit FeePolicySet(modelId, nodeBps, developerBps, contributorsBps, validatorsBps);
    }

    /// @notice Announces a change of a model's fee split that prices calls from settlement epoch `fromEpoch`
    ///         on; calls of earlier epochs keep the split in force before it. Callable by a registrar or the
    ///         model's developer. Changes are kept in epoch order: one for a later epoch than the last announced
    ///         is added after it (and the last one keeps pricing the epochs before it), one for the same epoch
    ///         replaces it, one for an earlier epoch is refused.
    /// @param modelId A registered model.
    /// @param fromEpoch The first settlement epoch the new split prices; not before the last one announced.
    function scheduleFeePolicy(
        bytes32 modelId,
        uint16 nodeBps,
        uint16 developerBps,
        uint16 contributorsBps,
        uint16 validatorsBps,
        uint64 fromEpoch
    ) external {
        _checkFeePolicy(modelId, nodeBps, developerBps, contributorsBps, validatorsBps);
        if (fromEpoch == 0) revert ZeroEpoch();
        Checkpoints.Trace160 storage changes = _feePolicyChanges[modelId];
        (bool announced, uint96 latest,) = changes.latestCheckpoint();
        // fromEpoch < 2**64, so `latest`, an earlier fromEpoch, fits 64 bits
        if (announced && fromEpoch < latest) revert FeePolicyEpochBeforeScheduled(modelId, uint64(latest), fromEpoch);
        uint64 floor = announced ? uint64(latest) : 1;
        if (fromEpoch > floor + MAX_SCHEDULE_AHEAD) {
            revert FeePolicyEpochTooFar(modelId, fromEpoch, floor + MAX_SCHEDULE_AHEAD);
        }
        changes.push(fromEpoch, _packFeePolicy(nodeBps, developerBps, contributorsBps, validatorsBps));
        emit FeePolicyScheduled(modelId, nodeBps, developerBps, contributorsBps, validatorsBps, fromEpoch);
    }

    /// @notice The split that prices a model's calls in settlement `epoch`: the latest change announced from
    ///         that epoch or before, else `feePolicy`.
    function feePolicyAt(bytes32 modelId, uint64 epoch) external view returns (FeePolicy memory) {
        uint160 packed = _feePolicyChanges[modelId].upperLookupRecent(epoch);
        // a packed split is never zero: its shares sum to TOTAL_BPS
        return packed == 0 ? feePolicy[modelId] : _unpackFeePolicy(packed);
    }

    /// @notice The change announced last and the settlement epoch it prices calls from; `fromEpoch` is zero
    ///         when none was announced.
    function scheduledFeePolicy(bytes32 modelId) external view returns (FeePolicy memory policy, uint64 fromEpoch) {
        (bool announced, uint96 latest, uint160 packed) = _feePolicyChanges[modelId].latestCheckpoint();
        if (announced) (policy, fromEpoch) = (_unpackFeePolicy(packed), uint64(latest));
    }

    function _packFeePolicy(uint16 nodeBps, uint16 developerBps, uint16 contributorsBps, uint16 validatorsBps)
        private
        pure
        returns (uint160)
    {
        return uint160(nodeBps) << 48 | uint160(developerBps) << 32 | uint160(contributorsBps) << 16 | validatorsBps;
    }

    function _unpackFeePolicy(uint160 packed) private pure returns (FeePolicy memory) {
        return FeePolicy(uint16(packed >> 48), uint16(packed >> 32), uint16(packed >> 16), uint16(packed));
    }

    function _checkFeePolicy(
        bytes32 modelId,
        uint16 nodeBps,
        uint16 developerBps,
        uint16 contributorsBps,
        uint16 validatorsBps
    ) private view {
        Model storage m = _models[modelId];
        if (m.developer == address(0)) revert UnknownModel(modelId);
        if (msg.sender != m.developer && !hasRole(REGISTRAR_ROLE, msg.sender)) {
            revert NotRegistrarOrDeveloper(modelId, msg.sender);
        }
        uint256 sum = uint256(nodeBps) + developerBps + contributorsBps + validatorsBps;
        if (sum != TOTAL_BPS) revert FeeSharesMustSumTo10000(sum);
    }

    /// @notice Sets the price of calling a model. Callable by a registrar or the model's developer.
    /// @param modelId A registered model.
    /// @param price Base units of the payment token per 1,000 tokens.
    function setPrice(bytes32 modelId, uint256 price) external {
        Model storage m = _models[modelId];
        if (m.developer == address(0)) revert UnknownModel(modelId);
        if (msg.sender != m.developer && !hasRole(REGISTRAR_ROLE, msg.sender)) {
            revert NotRegistrarOrDeveloper(modelId, msg.sender);
        }
        pricePer1k[modelId] = price;
        emit PriceSet(modelId, price);
    }

    /// @notice Returns a registered Datanet; reverts with {UnknownDatanet} otherwise.
    /// @param datanetId The Datanet id.
    function getDatanet(bytes32 datanetId) external view returns (Datanet memory) {
        return _requireDatanet(datanetId);
    }

    /// @notice Whether a Datanet with this id is registered.
    /// @param datanetId The Datanet id.
    function datanetExists(bytes32 datanetId) external view returns (bool) {
        return _datanets[datanetId].owner != address(0);
    }

    /// @notice Latest published version of a Datanet (0 if none yet); reverts for unknown Datanets.
    /// @param datanetId The Datanet id.
    function latestVersion(bytes32 datanetId) external view returns (uint64) {
        return _requireDatanet(datanetId).latestVersion;
    }

    /// @notice Returns one published version; reverts with {UnknownVersion} if it was never published.
    /// @param datanetId The Datanet id.
    /// @param version The version number (1-based).
    /// @return root Merkle root over the accepted contribution hashes.
    /// @return count Number of contributions under the root.
    /// @return manifestHash Hash of the version manifest.
    /// @return publishedAt Block timestamp of publication.
    function getVersion(bytes32 datanetId, uint64 version)
        external
        view
        returns (bytes32 root, uint64 count, bytes32 manifestHash, uint64 publishedAt)
    {
        DatanetVersion storage v = _versions[datanetId][version];
        if (v.root == bytes32(0)) revert UnknownVersion(datanetId, version);
        return (v.root, v.count, v.manifestHash, v.publishedAt);
    }

    /// @notice Returns a registered model with its lineage; reverts with {UnknownModel} otherwise.
    /// @param modelId The model id.
    function getModel(bytes32 modelId) external view returns (Model memory) {
        Model storage m = _models[modelId];
        if (m.developer == address(0)) revert UnknownModel(modelId);
        return m;
    }

    /// @notice Whether a model with this id is registered.
    /// @param modelId The model id.
    function modelExists(bytes32 modelId) external view returns (bool) {
        return _models[modelId].developer != address(0);
    }

    function _requireDatanet(bytes32 datanetId) private view returns (Datanet storage d) {
        d = _datanets[datanetId];
        if (d.owner == address(0)) revert UnknownDatanet(datanetId);
    }
}
