"""Simulated validator populations (honest, lazy, colluding, copycat) over commit–reveal rounds."""

from __future__ import annotations

import hashlib
import random
import statistics
from collections import Counter, defaultdict
from dataclasses import replace

from eth_utils import to_checksum_address

from ledgerlm.validation import consensus as cs
from ledgerlm.validation import reputation as rep

TOKEN = 10**18

POPULATIONS = {"honest": 20, "lazy_random": 8, "colluding_minority": 6, "copycat": 6}


def simulate_validators(seed: int, rounds: int = 30, per_round: int = 40, k: int = 9,
                        copy_visible: bool = False) -> dict:
    rng = random.Random(seed)
    validators = []
    for pop, n in POPULATIONS.items():
        for _ in range(n):
            addr = "0x" + hashlib.sha256(f"{seed}-{len(validators)}".encode()).hexdigest()[:40]
            validators.append((to_checksum_address(addr), pop))
    pop_of = dict(validators)
    stakes = {a: rng.randint(1_000, 10_000) * TOKEN for a, _ in validators}
    # the colluders are a minority of stake
    for a, p in validators:
        if p == "colluding_minority":
            stakes[a] = rng.randint(1_000, 4_000) * TOKEN
    initial = dict(stakes)
    reputation = {a: rep.NEUTRAL_BPS for a in stakes}
    earned = Counter()
    slashed = Counter()
    slash_events = Counter()
    last_slashed: dict[str, int] = {}
    history: list[cs.RoundTally] = []
    pool = 1_000 * TOKEN
    rules = cs.RoundRules()
    past_consensus: list[int] = []
    correct = decided = 0
    collusion_targets = collusion_accepted = 0
    for r in range(rounds):
        cids = list(range(r * 1000, r * 1000 + per_round))
        quality = {}
        colluder_owned = set()
        for cid in cids:
            u = rng.random()
            if u < 0.12:
                quality[cid] = rng.randint(2, 25)
                colluder_owned.add(cid)  # junk submitted by the colluders' own contributor
            elif u < 0.35:
                quality[cid] = rng.randint(5, 40)
            else:
                quality[cid] = rng.randint(65, 98)
        active = {a: s for a, s in stakes.items() if s > 0}
        assignments = cs.assign_validators(cids, active, k, seed=f"block-{seed}-{r}")
        guess = round(statistics.fmean(past_consensus)) if past_consensus else 50

        def honest_vote(cid: int, quality: dict[int, int] = quality) -> int:
            return max(0, min(100, round(rng.gauss(quality[cid], 7))))

        commits, reveals = {}, {}
        votes_by: dict[str, dict[int, int]] = defaultdict(dict)
        order = sorted(active, key=lambda a: pop_of[a] == "copycat")  # copycats move last
        for v in order:
            mine = [cid for cid, vs in assignments.items() if v in vs]
            for cid in mine:
                pop = pop_of[v]
                if pop == "honest":
                    vote = honest_vote(cid)
                elif pop == "lazy_random":
                    vote = rng.randint(0, 100)
                elif pop == "colluding_minority":
                    vote = 100 if cid in colluder_owned else honest_vote(cid)
                elif copy_visible:
                    seen = [(votes_by[o][cid], stakes[o]) for o in assignments[cid]
                            if o != v and cid in votes_by[o]]
                    vote = cs.stake_weighted_median(seen) if seen else guess
                else:
                    vote = guess  # commit–reveal hides the others' votes: all a copycat has is history
                votes_by[v][cid] = vote
        rnd = cs.Round(r, assignments, active, commit_deadline=10, reveal_deadline=20, rules=rules)
        for v, votes in votes_by.items():
            salt = hashlib.sha256(f"salt-{seed}-{r}-{v}".encode()).digest()
            commits[v] = cs.check_commit(rnd, v, cs.commit_hash(r, v, votes, salt), now=5)
            reveals[v] = cs.Reveal(v, votes, salt)
        rnd = replace(rnd, commits=commits)
        for v in list(reveals):
            cs.check_reveal(rnd, reveals[v], now=15)
        rnd = replace(rnd, reveals=reveals)
        t = cs.tally(rnd)
        history.append(t)
        mult = {v: rep.reward_multiplier_bps(reputation[v]) for v in t.validators}
        for v, amount in cs.validator_rewards(pool, t, multipliers_bps=mult).items():
            earned[v] += amount
        for v, o in t.validators.items():
            reputation[v] = rep.update(reputation[v], rep.validator_outcome_bps(o))
        for s in cs.slashing_decisions(history, stakes, last_slashed_round=last_slashed):
            stakes[s.account] -= s.amount
            slashed[s.account] += s.amount
            slash_events[s.account] += 1
            last_slashed[s.account] = r
        for cid, o in t.contributions.items():
            if o.decision == "undecided":
                continue
            past_consensus.append(o.consensus)
            decided += 1
            correct += (o.decision == "accept") == (quality[cid] >= rules.accept_threshold)
            if cid in colluder_owned:
                collusion_targets += 1
                collusion_accepted += o.decision == "accept"
    total_earned = sum(earned.values())
    total_stake = sum(initial.values())
    out = {}
    for pop in POPULATIONS:
        members = [a for a, p in validators if p == pop]
        st = sum(initial[a] for a in members)
        out[pop] = {
            "validators": len(members),
            "stake_share": st / total_stake,
            "reward_share": sum(earned[a] for a in members) / total_earned,
            "earned_tokens": sum(earned[a] for a in members) / TOKEN,
            "earned_per_1k_staked": sum(earned[a] for a in members) / (st / TOKEN) * 1000 / TOKEN,
            "validators_slashed": sum(1 for a in members if slash_events[a]),
            "slash_events": sum(slash_events[a] for a in members),
            "slashed_tokens": sum(slashed[a] for a in members) / TOKEN,
            "mean_reputation_bps": statistics.fmean(reputation[a] for a in members),
        }
    return {"rounds": rounds, "contributions_per_round": per_round, "k": k,
            "pool_per_round_tokens": pool // TOKEN, "copycat_sees_votes": copy_visible,
            "decision_accuracy": correct / max(decided, 1),
            "colluder_junk_accepted": collusion_accepted, "colluder_junk_total": collusion_targets,
            "pool_conserved": total_earned == pool * rounds, "populations": out}
