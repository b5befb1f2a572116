"""Validator rounds as pure functions: sampling, commit–reveal, stake-weighted consensus, rewards and slashing.

Every amount is an integer in base units; every split conserves its total exactly. Shares and
agreement are integers in basis points (bps, 10_000 = 100%).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from eth_abi import encode as abi_encode
from eth_utils import is_address, keccak, to_checksum_address

from ledgerlm.money import SplitError, split_by_weight
from ledgerlm.times import format_time
from ledgerlm.validation.errors import ConsensusError, PhaseError, RevealMismatchError

BPS = 10_000
SCORE_MAX = 100
DECISIONS = ("accept", "reject", "undecided")


# --------------------------------------------------------------------------- sampling


def _seed_bytes(seed: bytes | str | int) -> bytes:
    if isinstance(seed, int):
        return seed.to_bytes(32, "big")
    if isinstance(seed, str):
        hexpart = seed[2:] if seed.startswith("0x") else None
        if hexpart is not None and len(hexpart) == 64:
            return bytes.fromhex(hexpart)
        seed = seed.encode("utf-8")
    return seed if len(seed) == 32 else keccak(seed)


def sample_validators(validators_with_stake: Mapping[str, int] | Sequence[tuple[str, int]], k: int,
                      seed: bytes | str | int) -> list[str]:
    """Pick up to k distinct validators, each draw proportional to stake among those not yet picked.

    Deterministic for a seed (e.g. a block hash) and integer-only, so a contract or another client
    reproduces it: validators are ordered by lower-case address; draw j takes
    r = uint256(keccak256(abi.encode(bytes32 seed, uint256 j))) mod (stake still in the pool) and
    picks the validator whose cumulative-stake interval contains r. Zero-stake validators are
    never picked. The seed is used as is when it is 32 bytes (or 0x + 64 hex), else keccak-hashed.
    """
    items = list(validators_with_stake.items() if isinstance(validators_with_stake, Mapping)
                 else validators_with_stake)
    if k < 0:
        raise ConsensusError("k must not be negative", field="k")
    for addr, stake in items:
        if not isinstance(stake, int) or isinstance(stake, bool) or stake < 0:
            raise ConsensusError(f"stake of {addr} must be a non-negative integer", field="stake")
    pool = sorted(((a, s) for a, s in items if s > 0), key=lambda kv: kv[0].lower())
    seed32 = _seed_bytes(seed)
    picked: list[str] = []
    draw = 0
    while pool and len(picked) < k:
        total = sum(s for _, s in pool)
        r = int.from_bytes(keccak(abi_encode(["bytes32", "uint256"], [seed32, draw])), "big") % total
        draw += 1
        acc = 0
        for i, (addr, stake) in enumerate(pool):
            acc += stake
            if r < acc:
                picked.append(addr)
                del pool[i]
                break
    return picked


def assign_validators(contribution_ids: Sequence[int], stakes: Mapping[str, int], k: int,
                      seed: bytes | str | int,
                      contributors: Mapping[int, str] | None = None) -> dict[int, tuple[str, ...]]:
    """Per contribution, k validators (or as many as there are) sampled by stake with seed
    keccak256(abi.encode(seed, id)), never its own contributor (`contributors`: id -> address): nobody scores
    their own data, nor earns agreement for it."""
    seed32 = _seed_bytes(seed)
    contributors = contributors or {}
    out = {}
    for cid in contribution_ids:
        own = str(contributors.get(cid, "")).lower()
        eligible = {a: s for a, s in stakes.items() if a.lower() != own} if own else stakes
        out[cid] = tuple(sample_validators(eligible, k, keccak(abi_encode(["bytes32", "uint256"], [seed32, cid]))))
    return out


# --------------------------------------------------------------------------- commit–reveal


def _check_votes(votes: Mapping[int, int]) -> list[tuple[int, int]]:
    pairs = []
    for cid, score in votes.items():
        if not isinstance(cid, int) or isinstance(cid, bool) or cid < 0:
            raise ConsensusError(f"contribution id {cid!r} must be a non-negative integer", field="votes")
        if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= SCORE_MAX:
            raise ConsensusError(f"score for contribution {cid} must be an integer 0..{SCORE_MAX}, "
                                 f"got {score!r}", field=f"votes.{cid}")
        pairs.append((cid, score))
    return sorted(pairs)


def commit_hash(round_id: int, validator: str, votes: Mapping[int, int], salt: bytes) -> str:
    """The hash a validator posts in the commit phase, as 0x + 64 lower-case hex digits.

    Exact encoding (Solidity: `keccak256(abi.encode(roundId, validator, ids, scores, salt))`):

        keccak256(abi.encode(
            uint256   round_id,
            address   validator,
            uint256[] contribution ids, ascending,
            uint8[]   scores 0..100, in the same order as the ids,
            bytes32   salt))

    The salt is 32 random bytes the validator keeps secret until the reveal; without it a
    copycat could hash every possible vote vector and read the commit.
    """
    if not isinstance(round_id, int) or round_id < 0:
        raise ConsensusError("round_id must be a non-negative integer", field="round_id")
    if not is_address(validator):
        raise ConsensusError(f"validator {validator!r} is not an address", field="validator")
    if not isinstance(salt, (bytes, bytearray)) or len(salt) != 32:
        raise ConsensusError("salt must be exactly 32 bytes", field="salt")
    pairs = _check_votes(votes)
    encoded = abi_encode(
        ["uint256", "address", "uint256[]", "uint8[]", "bytes32"],
        [round_id, to_checksum_address(validator), [c for c, _ in pairs], [s for _, s in pairs], bytes(salt)],
    )
    return "0x" + keccak(encoded).hex()


def verify_reveal(commit: str, round_id: int, validator: str, votes: Mapping[int, int], salt: bytes) -> bool:
    """True when the revealed votes and salt hash to the posted commit."""
    try:
        return commit_hash(round_id, validator, votes, salt) == commit.lower()
    except ConsensusError:
        return False


@dataclass(frozen=True)
class RoundRules:
    """Acceptance, clipping and quorum settings of a round (scores are 0..100)."""

    accept_threshold: int = 60
    clip_distance: int = 25
    quorum_bps: int = 5_000  # share of the assigned stake that must reveal for a decision


@dataclass(frozen=True)
class Reveal:
    validator: str
    votes: Mapping[int, int]
    salt: bytes


@dataclass(frozen=True)
class Round:
    """Everything a round's tally needs, as the round service stored it.

    `now`, `commit_deadline` and `reveal_deadline` share one clock (block number or unix time):
    commits are accepted while now <= commit_deadline, reveals while
    commit_deadline < now <= reveal_deadline. `stakes` is the snapshot taken when the round opened.
    """

    round_id: int
    assignments: Mapping[int, tuple[str, ...]]
    stakes: Mapping[str, int]
    commit_deadline: int
    reveal_deadline: int
    rules: RoundRules = RoundRules()
    commits: Mapping[str, str] = field(default_factory=dict)
    reveals: Mapping[str, Reveal] = field(default_factory=dict)

    def assigned_to(self, validator: str) -> set[int]:
        return {cid for cid, vs in self.assignments.items() if validator in vs}


def check_commit(rnd: Round, validator: str, commit: str, now: int) -> str:
    """Validate a commit for the round and return it normalised; raises on a late or foreign commit.

    A validator may replace their commit until the deadline: nobody can read it, so there is
    nothing to gain from forbidding that.
    """
    if now > rnd.commit_deadline:
        raise PhaseError(f"the commit phase of round {rnd.round_id} closed at "
                         f"{format_time(rnd.commit_deadline, now)}", field="commit")
    if not rnd.assigned_to(validator):
        raise ConsensusError(f"{validator} has no contributions assigned in round {rnd.round_id}",
                             field="validator")
    c = commit.lower() if isinstance(commit, str) else ""
    if len(c) != 66 or not c.startswith("0x") or any(ch not in "0123456789abcdef" for ch in c[2:]):
        raise ConsensusError("commit must be 0x followed by 64 hex digits", field="commit")
    return c


def check_reveal(rnd: Round, reveal: Reveal, now: int) -> Reveal:
    """Validate a reveal: inside the reveal window, a vote for exactly the assigned contributions,
    and hashing to the validator's commit. Raises PhaseError or RevealMismatchError otherwise."""
    v = reveal.validator
    if now <= rnd.commit_deadline:
        raise PhaseError(f"the reveal phase of round {rnd.round_id} opens after "
                         f"{format_time(rnd.commit_deadline, now)}", field="reveal")
    if now > rnd.reveal_deadline:
        raise PhaseError(f"the reveal phase of round {rnd.round_id} closed at "
                         f"{format_time(rnd.reveal_deadline, now)}", field="reveal")
    if v not in rnd.commits:
        raise ConsensusError(f"{v} did not commit in round {rnd.round_id}", field="validator")
    assigned = rnd.assigned_to(v)
    voted = set(reveal.votes)
    if voted != assigned:
        missing, extra = sorted(assigned - voted), sorted(voted - assigned)
        raise ConsensusError(
            f"the reveal must score exactly the assigned contributions; missing {missing}, not assigned {extra}",
            field="votes")
    _check_votes(reveal.votes)
    if not verify_reveal(rnd.commits[v], rnd.round_id, v, reveal.votes, reveal.salt):
        raise RevealMismatchError(
            f"the revealed votes and salt do not hash to {v}'s commit for round {rnd.round_id}; "
            "reveal the exact votes and salt you committed", field="reveal")
    return reveal


# --------------------------------------------------------------------------- consensus


def stake_weighted_median(votes: Sequence[tuple[int, int]]) -> int | None:
    """The lower weighted median: the smallest score s with stake(score <= s) * 2 >= total stake.

    Integer-only and deterministic. Up to half of the stake can lie without moving it past
    the honest range, which is why consensus uses it rather than a mean.
    """
    pairs = sorted((s, w) for s, w in votes if w > 0)
    total = sum(w for _, w in pairs)
    if total == 0:
        return None
    acc = 0
    for score, weight in pairs:
        acc += weight
        if 2 * acc >= total:
            return score
    return pairs[-1][0]  # pragma: no cover


def agreement_bps(vote: int, consensus: int, clip_distance: int) -> int:
    """Full credit at the consensus, falling linearly; more than clip_distance away earns nothing."""
    d = abs(vote - consensus)
    if d > clip_distance:
        return 0
    return BPS * (clip_distance + 1 - d) // (clip_distance + 1)


@dataclass(frozen=True)
class ContributionOutcome:
    contribution_id: int
    decision: str
    consensus: int | None
    revealed_stake: int
    assigned_stake: int
    votes: Mapping[str, int]


@dataclass(frozen=True)
class ValidatorOutcome:
    """How one validator did in a round; `agreement_points` sums per-contribution agreement bps."""

    validator: str
    stake: int
    assigned: int
    revealed: bool
    clipped: int
    agreement_points: int

    @property
    def agreement_bps(self) -> int:
        return self.agreement_points // self.assigned if self.assigned else 0

    @property
    def clipped_bps(self) -> int:
        return BPS * self.clipped // self.assigned if self.assigned else 0


@dataclass(frozen=True)
class RoundTally:
    round_id: int
    contributions: Mapping[int, ContributionOutcome]
    validators: Mapping[str, ValidatorOutcome]

    def decisions(self) -> dict[int, str]:
        return {cid: o.decision for cid, o in self.contributions.items()}


def tally(rnd: Round) -> RoundTally:
    """Consensus per contribution and agreement per validator.

    Reveals are re-checked against commits; one that does not match counts as no reveal. A
    contribution is decided only when the revealed stake reaches the quorum; otherwise it stays
    `undecided` (for the next round) and nobody is scored on it. A decided contribution is
    accepted when its stake-weighted median score is >= accept_threshold. A vote further than
    clip_distance from the consensus is clipped: it earns nothing for that contribution.
    Validators who were assigned but did not reveal are scored on every contribution they were
    assigned, with zero agreement: on an undecided one too, since their missing reveal is what left
    it undecided (those who revealed are not scored on it).
    """
    rules = rnd.rules
    valid: dict[str, Mapping[int, int]] = {}
    for v, rev in rnd.reveals.items():
        commit = rnd.commits.get(v)
        if commit and set(rev.votes) == rnd.assigned_to(v) and verify_reveal(
                commit, rnd.round_id, v, rev.votes, rev.salt):
            valid[v] = rev.votes
    outcomes: dict[int, ContributionOutcome] = {}
    points: dict[str, int] = {}
    assigned: dict[str, int] = {}
    clipped: dict[str, int] = {}
    for cid in sorted(rnd.assignments):
        validators = rnd.assignments[cid]
        assigned_stake = sum(rnd.stakes.get(v, 0) for v in validators)
        votes = {v: valid[v][cid] for v in validators if v in valid}
        revealed_stake = sum(rnd.stakes.get(v, 0) for v in votes)
        if assigned_stake == 0 or revealed_stake * BPS < rules.quorum_bps * assigned_stake:
            outcomes[cid] = ContributionOutcome(cid, "undecided", None, revealed_stake, assigned_stake, votes)
            for v in validators:
                if v not in valid:
                    # absent where it decides: a reveal withheld to keep a contribution below quorum (and the
                    # junk pending for another try) counts against its validator as any missing reveal does
                    assigned[v] = assigned.get(v, 0) + 1
            continue
        consensus = stake_weighted_median([(s, rnd.stakes.get(v, 0)) for v, s in votes.items()])
        decision = "accept" if consensus >= rules.accept_threshold else "reject"
        outcomes[cid] = ContributionOutcome(cid, decision, consensus, revealed_stake, assigned_stake, votes)
        for v in validators:
            assigned[v] = assigned.get(v, 0) + 1
            a = agreement_bps(votes[v], consensus, rules.clip_distance) if v in votes else 0
            points[v] = points.get(v, 0) + a
            if v in votes and a == 0:
                clipped[v] = clipped.get(v, 0) + 1
    everyone = {v for vs in rnd.assignments.values() for v in vs}
    validators_out = {
        v: ValidatorOutcome(v, rnd.stakes.get(v, 0), assigned.get(v, 0), v in valid,
                            clipped.get(v, 0), points.get(v, 0))
        for v in sorted(everyone)
    }
    return RoundTally(rnd.round_id, outcomes, validators_out)


# --------------------------------------------------------------------------- money


def validator_rewards(pool: int, round_tally: RoundTally, *, multipliers_bps: Mapping[str, int] | None = None,
                      remainder_to: str | None = None) -> dict[str, int]:
    """Split the round's validator pool by stake × agreement (× reputation multiplier, if given).

    weight(v) = stake(v) * agreement_points(v) * multiplier_bps(v) (multiplier defaults to 10_000).
    Clipped votes and missing reveals add no agreement points, so they earn nothing. The result
    sums exactly to `pool`; when nobody earned any weight the whole pool goes to `remainder_to`
    (e.g. the Datanet treasury), or ConsensusError is raised if none is given.
    """
    weights = {}
    for v, o in round_tally.validators.items():
        m = BPS if multipliers_bps is None else multipliers_bps.get(v, BPS)
        weights[v] = o.stake * o.agreement_points * m
    if sum(weights.values()) == 0:
        if remainder_to is None:
            raise ConsensusError("no validator agreed with consensus in this round; pass remainder_to "
                                 "to send the pool elsewhere", field="pool")
        return {remainder_to: pool}
    try:
        return split_by_weight(pool, weights)
    except SplitError as err:
        raise ConsensusError(str(err), field=err.field) from err


@dataclass(frozen=True)
class SlashPolicy:
    """When a validator is persistently dishonest or absent, and how much of their stake to take."""

    window: int = 10  # look at the validator's last `window` decided rounds
    min_bad_rounds: int = 3  # slash when at least this many of them were bad
    bad_round_clipped_bps: int = 2_500  # a round is bad when >= this share of its votes was clipped
    no_reveal_is_bad: bool = True
    slash_bps: int = 1_000

    def is_bad(self, outcome) -> bool:
        """Whether a validator's outcome in one round counts against it: absent, or too much of it clipped."""
        return (not outcome.revealed and self.no_reveal_is_bad) or (
            outcome.revealed and outcome.clipped_bps >= self.bad_round_clipped_bps)


@dataclass(frozen=True)
class Slash:
    account: str
    amount: int
    reason: str


def slashing_decisions(history: Sequence[RoundTally], stakes: Mapping[str, int],
                       policy: SlashPolicy = SlashPolicy(),
                       last_slashed_round: Mapping[str, int] | None = None) -> list[Slash]:
    """Validators to slash after the latest round, with integer amounts (slash_bps of current stake).

    `history` runs oldest to newest. Rounds up to a validator's `last_slashed_round` are ignored,
    so the same misconduct is never punished twice. Only rounds where the validator had decided
    contributions count.
    """
    last_slashed_round = last_slashed_round or {}
    bad: dict[str, list[int]] = {}
    seen: dict[str, int] = {}
    for t in reversed(history):
        for v, o in t.validators.items():
            if o.assigned == 0 or t.round_id <= last_slashed_round.get(v, -1):
                continue
            if seen.get(v, 0) >= policy.window:
                continue
            seen[v] = seen.get(v, 0) + 1
            if policy.is_bad(o):
                bad.setdefault(v, []).append(t.round_id)
    out = []
    for v in sorted(bad):
        rounds = bad[v]
        if len(rounds) >= policy.min_bad_rounds:
            amount = stakes.get(v, 0) * policy.slash_bps // BPS
            if amount > 0:
                out.append(Slash(v, amount, f"clipped or unrevealed in {len(rounds)} of the last "
                                            f"{seen[v]} rounds (rounds {sorted(rounds)})"))
    return out


def contributor_bond_slashes(decisions: Mapping[int, str], bonds: Mapping[int, int],
                             slash_bps: int = 5_000) -> dict[int, int]:
    """Bond amount to slash per rejected contribution (slash_bps of its bond); accepted ones keep theirs.

    `decisions` maps contribution id to "accept" | "reject" | "undecided" | "withdrawn" (gate
    rejections count as "reject"). The rest of a rejected bond is returned to the contributor.
    """
    if not 0 <= slash_bps <= BPS:
        raise ConsensusError("slash_bps must be between 0 and 10000", field="slash_bps")
    return {cid: bonds.get(cid, 0) * slash_bps // BPS for cid, d in decisions.items() if d == "reject"}
