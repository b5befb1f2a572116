#!/usr/bin/env bash
# The ledgerlm story on a fresh home, every step a real CLI command you can run yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export LEDGERLM_HOME="${LEDGERLM_HOME:-$(mktemp -d -t ledgerlm-demo-XXXX)}"
export LEDGERLM_PASSPHRASE="${LEDGERLM_PASSPHRASE:-demo-passphrase}"
export LEDGERLM_KDF_ITERATIONS="${LEDGERLM_KDF_ITERATIONS:-16384}"
OUT="$LEDGERLM_HOME/out"; mkdir -p "$OUT"

step() { printf '\n\033[1;34m▶ %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

step "1. A node home: database, blob store, node key, embedded chain"
run ledgerlm init

step "2. Keys for a Datanet owner (alice) and two contributors (bob, carol)"
for who in alice bob carol; do run ledgerlm keys new "$who"; done

step "3. alice creates a records Datanet with a JSON Schema"
run ledgerlm datanet create reef-facts --as alice --schema examples/qa.schema.json \
    --description "Facts about the Varnish Reef" --tags marine,qa --licence CC-BY-4.0

step "4. bob and carol contribute signed uploads (JSONL and CSV)"
run ledgerlm datanet contribute reef-facts examples/reef-facts-bob.jsonl --as bob
run ledgerlm datanet contribute reef-facts examples/reef-facts-carol.csv --as carol

step "5. Bad input is refused whole, with the line and field named"
run ledgerlm datanet contribute reef-facts examples/bad-records.jsonl --as bob || true
run ledgerlm datanet contribute reef-facts examples/reef-facts-bob.jsonl --as carol || true

step "6. alice reviews: accepts six, rejects one"
for id in 1 2 3 4 5 6; do run ledgerlm datanet accept "$id" --as alice; done
run ledgerlm datanet reject 7 --as alice --reason "unverified claim"
run ledgerlm datanet contributions reef-facts

step "7. alice publishes version 1: a Merkle root over accepted contributions, anchored on chain"
run ledgerlm datanet publish reef-facts --as alice
run ledgerlm chain status

step "8. bob withdraws one record: it leaves every future version"
run ledgerlm datanet withdraw 2 --as bob
run ledgerlm datanet publish reef-facts --as alice
run ledgerlm datanet show reef-facts

step "9. bob gets tokens from the development faucet and stakes as a validator"
run ledgerlm chain faucet bob --eth 1 --tokens 500
run ledgerlm stake 200 --as bob --role validator
run ledgerlm balance bob

step "10. Export version 2 for training"
run ledgerlm datanet export reef-facts --version 2 --format jsonl --out "$OUT/reef-facts-v2.jsonl"
run ledgerlm datanet export reef-facts --version 2 --format hf --out "$OUT/reef-facts-v2-hf"
head -n 2 "$OUT/reef-facts-v2.jsonl"

if command -v node >/dev/null && [ -d contracts/node_modules/@openzeppelin/merkle-tree ]; then
  step "11. An independent check: OpenZeppelin's merkle-tree rebuilds the published root"
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

printf '\n\033[1;32mdone.\033[0m home: %s\n' "$LEDGERLM_HOME"
