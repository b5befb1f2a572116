"""Runs every enabled gate over a batch of pending contributions and decides each one."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Collection, Hashable, Sequence

import numpy as np

from ledgerlm.validation.embeddings import Embedder, resolve_embedder
from ledgerlm.validation.errors import ValidationError
from ledgerlm.validation.gates.candidate import Candidate, Finding, GateReport, decide
from ledgerlm.validation.gates.duplicates import KeptRecords, find_duplicates
from ledgerlm.validation.gates.injection import injection_findings_many
from ledgerlm.validation.gates.junk import junk_findings_many
from ledgerlm.validation.gates.label_noise import knn_label_disagreement
from ledgerlm.validation.gates.personal_data import personal_data_findings_many
from ledgerlm.validation.gates.qa_consistency import qa_mismatches
from ledgerlm.validation.gates.text_batch import TextBatch
from ledgerlm.validation.near_duplicates import NearDuplicateIndex, Normalised
from ledgerlm.validation.policy import GatePolicy

_KIND = {"in_datanet": "accepted record", "in_pending": "pending contribution", "in_batch": "contribution"}


def run_gates(
    candidates: Sequence[Candidate],
    policy: GatePolicy | None = None,
    existing_hashes: Collection[str] = frozenset(),
    near_dup_index: NearDuplicateIndex | None = None,
    *,
    accepted: Sequence[Candidate] = (),
    pending: Sequence[Candidate] = (),
    labelled_reference: Sequence[Candidate] = (),
    embedder: str | Embedder | None = None,
) -> dict[int, GateReport]:
    """Run every enabled gate over a batch and decide each contribution; every candidate gets a report.

    - `accepted`: the Datanet's accepted records. Copies of them are rejected; they give the
      label-noise and question–answer gates neighbours and a distribution; they get no report.
    - `pending`: contributions from earlier uploads that passed the gates and still wait for a
      round; copies of them are rejected too.
    - `existing_hashes` / `near_dup_index`: accepted content hashes and a prebuilt MinHash index
      of accepted texts, for callers that keep no records (the index is never modified here).
    - `labelled_reference`: more accepted labelled records for the label-noise gate.
    - `embedder`: overrides the policy's embedder for label noise and Q&A consistency.
    """
    # the gates make many short-lived objects and no reference cycles, while a cyclic collection
    # walks every object of the process (a node holds hundreds of thousands): collections wait
    # until the batch is gated
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _gate_batch(candidates, policy, existing_hashes, near_dup_index, accepted, pending,
                           labelled_reference, embedder)
    finally:
        if enabled:
            gc.enable()


def _gate_batch(candidates, policy, existing_hashes, near_dup_index, accepted, pending, labelled_reference,
                embedder) -> dict[int, GateReport]:
    policy = policy or GatePolicy()
    findings: dict[int, list[Finding]] = {c.contribution_id: [] for c in candidates}
    if len(findings) != len(candidates):
        dup = next(cid for cid, n in Counter(c.contribution_id for c in candidates).items() if n > 1)
        raise ValidationError(f"contribution {dup} appears twice in the batch", field="candidates")

    def add(c: Candidate, gate: str, code: str, score: float, detail: str) -> None:
        findings[c.contribution_id].append(Finding(gate, code, float(score), policy.action(gate), detail))

    def rejected() -> set[int]:
        return {cid for cid, fs in findings.items() if fs and decide(fs) == "reject"}

    texts = {c.contribution_id: c.scan_text() for c in candidates}
    answers = [c.answer_text() for c in candidates]

    # content gates first, so a duplicate group keeps a copy these gates accept
    if policy.action("junk") != "off":
        found = dict(zip(findings, junk_findings_many([c.feature_text() for c in candidates], policy.junk)))
        # the label alone is not content; an answer that is junk spoils the record
        fields = [(c.contribution_id, name, text) for c in candidates
                  if not found[c.contribution_id] for name, text in c.answer_parts()]
        for (cid, name, _), more in zip(fields, junk_findings_many([t for _, _, t in fields], policy.junk)):
            if more and not found[cid]:
                found[cid] = [(code, score, f"field {name!r}: {detail}") for code, score, detail in more]
        for c in candidates:
            for code, score, detail in found[c.contribution_id]:
                add(c, "junk", code, score, detail)

    pd, inj = policy.personal_data, policy.injection
    # both gates search the same texts laid end to end: lay them out once
    scanned = TextBatch(list(texts.values())) if "off" not in (pd.action, inj.action) else None
    if pd.action != "off":
        kinds = frozenset(pd.kinds)
        for c, found in zip(candidates, personal_data_findings_many(list(texts.values()), kinds, scanned)):
            for code, score, detail in found:
                add(c, "personal_data", code, score, detail)

    if inj.action != "off":
        for c, found in zip(candidates, injection_findings_many(list(texts.values()), answers, inj, scanned)):
            for code, score, detail in found:
                if score >= inj.min_score:
                    add(c, "injection", code, score, detail)

    _duplicates(candidates, texts, policy, existing_hashes, near_dup_index, accepted, pending, rejected(), add)

    resolved = None

    def embedder_for(name: str) -> Embedder:
        nonlocal resolved
        if embedder is not None:
            resolved = resolved or resolve_embedder(embedder)
            return resolved
        return resolve_embedder(name)

    ln = policy.label_noise
    if ln.action != "off":
        out = rejected()
        labelled = [c for c in candidates if c.label is not None and c.contribution_id not in out]
        seen = {c.contribution_id for c in labelled}
        reference = [c for c in list(accepted) + list(labelled_reference)
                     if c.label is not None and c.contribution_id not in seen and not seen.add(c.contribution_id)]
        pool = labelled + reference
        if labelled and len(pool) >= max(ln.min_records, 3) and len({c.label for c in pool}) >= 2:
            vectors = embedder_for(ln.embedder).embed([c.feature_text() for c in pool])
            labels = [c.label for c in pool]
            k = _neighbourhood_size(labels, ln.k)
            hoods = knn_label_disagreement(vectors, labels, k, rows=range(len(labelled)),
                                           min_disagreement=ln.min_disagreement, min_margin=ln.min_margin)
            for i, c in enumerate(labelled):
                hood = hoods.get(i)
                if hood and hood.leaning_label is not None:
                    lean = hood.leaning_label
                    add(c, "label_noise", "disagrees_with_neighbours", hood.margin,
                        f"labelled {hood.label!r} but its nearest records lean to {lean!r}: "
                        f"{hood.counts.get(lean, 0)} of {sum(hood.counts.values())} are labelled {lean!r}, "
                        f"{hood.counts.get(hood.label, 0)} {hood.label!r}, and by similarity {lean!r} leads "
                        f"by {hood.margin:.2f}")

    qa = policy.qa_consistency
    if qa.action != "off":
        out = rejected()
        judged_pairs = [(c, c.question_text(), a) for c, a in zip(candidates, answers)
                        if c.contribution_id not in out and a.strip()]
        pairs = [(c, q, a) for c, q, a in judged_pairs if q.strip()]
        judged = [c for c, _, _ in pairs]
        pairs += [(c, q, a) for c in accepted if (q := c.question_text()).strip() and (a := c.answer_text()).strip()]
        pool = [c for c, _, _ in pairs]
        if judged and len(pool) >= qa.min_records:
            mismatches = qa_mismatches([q for _, q, _ in pairs], [a for _, _, a in pairs],
                                       len(judged), embedder_for(qa.embedder), qa)
            for row, m in mismatches.items():
                c = judged[row]
                if m.code == "answers_another_question":
                    other = pool[m.other]
                    whose = "accepted record" if m.other >= len(judged) else "contribution"
                    add(c, "qa_consistency", m.code, m.score,
                        f"the answer fits the question of {whose} {other.contribution_id} better "
                        f"(similarity {m.reference:.2f}) than its own question ({m.own:.2f})")
                else:
                    add(c, "qa_consistency", m.code, m.score,
                        f"the answer shares no more with its question (similarity {m.own:.2f}) than "
                        f"answers of other records typically do ({m.reference:.2f})")

    # most contributions have no finding: their report needs no decision worked out
    return {c.contribution_id: GateReport(c.contribution_id, decide(fs), tuple(fs)) if (fs := findings[c.contribution_id])
            else GateReport(c.contribution_id, "pass") for c in candidates}


def _neighbourhood_size(labels: list, k: int) -> int:
    """At most `k`, and at most the typical class size: neighbours beyond a record's class only add noise.

    With k larger than a class, even a correctly labelled record's neighbourhood is mostly other
    classes; capping at the median class size keeps small Datanets judgeable.
    """
    sizes = sorted(Counter(labels).values())
    return max(1, min(k, sizes[len(sizes) // 2]))


def _duplicates(candidates, texts, policy, existing_hashes, near_dup_index, accepted, pending, out, add) -> None:
    ex, nd = policy.exact_duplicate, policy.near_duplicate
    if ex.action == "off" and nd.action == "off":
        return
    base = near_dup_index
    if nd.action != "off" and base is not None and nd.threshold < base.threshold:
        raise ValidationError(
            f"near-duplicate threshold {nd.threshold} is below the index's LSH threshold "
            f"{base.threshold}; rebuild the index with a lower threshold",
            field="gates.near_duplicate.threshold")
    params = ({"num_perm": base.num_perm, "shingle_size": base.shingle_size, "seed": base.seed}
              if base is not None else {})
    near = nd.action != "off"

    sketch = NearDuplicateIndex(threshold=min(nd.threshold, 0.95), **params)
    normalised = Normalised()  # each text folded once, for its signature and every word diff it is in

    def pool(code: str, records: Sequence[Candidate], index: NearDuplicateIndex | None,
             hashes: Collection[str] = ()) -> KeptRecords:
        hashed: dict[str, Hashable | None] = dict.fromkeys(hashes)
        hashed.update({c.content_hash: c.contribution_id for c in records})
        kept_texts = {c.contribution_id: c.scan_text() for c in records}
        if not near:
            return KeptRecords(code, hashed, [], np.zeros((0, sketch.num_perm), np.uint32), kept_texts)
        if index is not None:  # a prebuilt index: its keys may be any record id
            return KeptRecords(code, hashed, index.keys(), index.matrix(), kept_texts)
        keys = list(kept_texts)
        signatures, present = sketch.signature_matrix([kept_texts[k] for k in keys])
        return KeptRecords(code, hashed, [k for k, ok in zip(keys, present) if ok], signatures[present],
                           kept_texts)

    kept = [pool("in_datanet", accepted, base, existing_hashes), pool("in_pending", pending, None)]
    matches = find_duplicates(candidates, texts, out, kept, sketch, exact=ex.action != "off", near=near,
                              within_batch=nd.within_batch, threshold=nd.threshold,
                              max_inserted_words=nd.max_inserted_words, normalised=normalised)
    for c in candidates:
        m = matches.get(c.contribution_id)
        if m is None:
            continue
        where = _KIND[m.code] if m.key is not None else "an " + _KIND[m.code]
        name = f"{where} {m.key}" if m.key is not None else where
        if m.exact:
            add(c, "exact_duplicate", m.code, 1.0, f"same content hash as {name}")
        else:
            add(c, "near_duplicate", m.code, m.similarity,
                f"estimated Jaccard {m.similarity:.2f} with {name}; they differ only in case, "
                "punctuation, typos or a few added words")
