"""`ledgerlm chain`, `balance`, `stake`, `unstake`, `withdraw`: the settlement layer from the shell."""

from __future__ import annotations

import time

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ledgerlm.cli.session import Session, Table, console, session
from ledgerlm.errors import LedgerError
from ledgerlm.times import format_time
from ledgerlm.units import format_amount, parse_amount, parse_positive_amount

app = typer.Typer(help="The EVM chain: status, deployment, event index, development faucet.", no_args_is_help=True)

ROLE_HELP = "validator, agent, contributor_bond or provider."


def resolve_address(s: Session, who: str) -> str:
    """An address as given, or the address of a key in this home."""
    from eth_utils import is_address, to_checksum_address

    if is_address(who):
        return to_checksum_address(who)  # web3 refuses lower-case addresses; people paste them anyway
    if who.lower().startswith("0x") and not (s.keyring().directory / f"{who}.json").exists():
        raise LedgerError(f"{who!r} is not an Ethereum address (0x and 40 hex digits) nor a key of this home",
                          field="address")
    return s.keyring().show(who).address


def require_tokens(client, account, wei: int, amount: str, doing: str) -> None:
    """Refuse, in LGR and naming the amount, what `account` cannot pay for `doing` (before the chain's
    ERC20InsufficientBalance in base units)."""
    held = int(client.chain.account(account.address).get("tokens", 0))
    if held < wei:
        raise LedgerError(f"{account.address} holds {format_amount(held)} LGR, less than the {amount} LGR to {doing}: "
                          f"send it LGR first (on a development chain: ledgerlm chain faucet {account.address})",
                          field="amount")


def render_index(i: dict) -> None:
    indexed = "nothing yet" if i["indexed_block"] is None else f"block {i['indexed_block']}"
    console.print(f"  indexed {indexed} of {i['chain_head']} (lag {i['lag']} blocks, final at {i['finality']}), "
                  f"{i['events']} events, {i['reorgs']} re-org(s) recovered")


@app.command()
def status(ctx: typer.Context):
    """Backend, chain id, head block, where the contracts live and how far the event index has come."""
    s = session(ctx)
    info = s.client().chain.info()

    def render(i):
        console.print(f"[bold]{i['kind']}[/] chain (id {i['chain_id']})  {i['url']}")
        console.print(f"  head block {i['head']['number']}  {i['head']['hash']}")
        console.print(f"  node {i['node_address']}  {format_amount(i['node_eth_wei'])} ETH for gas")
        if i["contracts"]:
            table = Table("contract", "address")
            for name, address in i["contracts"].items():
                table.add_row(name, address)
            console.print(table)
            console.print(f"  LGR supply {format_amount(i['token_supply'])}")
            render_index(i["index"])
        else:
            console.print("  no contracts deployed: run `ledgerlm chain deploy --chain-url URL --key NAME`")

    s.emit(info, render)


@app.command()
def deploy(
    ctx: typer.Context,
    chain_url: str = typer.Option(..., "--chain-url", help="JSON-RPC URL of the chain, e.g. http://127.0.0.1:8545."),
    key: str = typer.Option(..., "--key", help="Admin key: pays for the deployment and holds the admin roles "
                                               "(must not be the node's key)."),
    treasury: str = typer.Option("", "--treasury", help="Address or key name that receives LGR's fixed supply "
                                                        "and swept funds [default: the admin key]."),
    node_eth: str = typer.Option("1", help="ETH the deployer sends the node for relaying gas."),
):
    """Deploy the contracts on any EVM chain with an admin key and point this home at it."""
    from ledgerlm.chain import deploy_all, open_rpc
    from ledgerlm.node import Node

    s = session(ctx)
    s.home.require()
    deployer = s.unlock(key)
    chain = open_rpc(chain_url)
    try:
        node = Node.open(s.home)
        try:
            with console.status(f"deploying 5 contracts to chain {chain.chain_id}…"):
                deployment = deploy_all(chain, deployer, node=node.account.address,
                                        treasury=resolve_address(s, treasury) if treasury else deployer.address)
                wei = parse_amount(node_eth, field="node_eth")
                if wei and chain.eth_balance(node.account.address) < wei:
                    chain.send_eth(deployer, node.account.address, wei)
            deployment.save(s.home.deployment_path)
            config = node.config
            config.chain, config.chain_id = chain_url, chain.chain_id
            s.home.save_config(config)
        finally:
            node.close()
    finally:
        chain.close()
    s.emit({"chain_url": chain_url, "chain_id": deployment.chain_id, "contracts": deployment.addresses,
            "block": deployment.block, "treasury": deployment.treasury, "admin": deployment.deployer},
           lambda d: console.print(f"[green]deployed[/] on chain {d['chain_id']} at block {d['block']}: "
                                   + ", ".join(f"{k} {v}" for k, v in d["contracts"].items())))


@app.command()
def index(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", help="Keep indexing new blocks until interrupted."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between polls with --follow."),
    batch: int = typer.Option(1000, "--batch", min=1, max=1_000_000, help="Blocks indexed per request."),
):
    """Rebuild the node's view of the chain from contract logs: index confirmed blocks, undo re-orgs."""
    s = session(ctx)
    chain = s.client().chain
    status = chain.index_status()
    start = status["indexed_block"] if status["indexed_block"] is not None else status["start_block"] - 1
    columns = (TextColumn("indexing blocks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=s.as_json) as bar:
        task = bar.add_task("index", total=max(1, status["lag"]))
        try:
            while True:
                status = chain.index(max_blocks=batch)
                indexed = status["indexed_block"] if status["indexed_block"] is not None else start
                bar.update(task, total=max(1, indexed - start + status["lag"]), completed=indexed - start)
                if status["lag"] == 0 and not follow:
                    break
                if status["lag"] == 0:
                    time.sleep(interval)
        except KeyboardInterrupt:  # --follow ends here; what was indexed is committed batch by batch
            pass

    def render(i):
        console.print(f"[green]indexed[/] to block {i['indexed_block']} ({i['events']} events)")
        render_index(i)
        d = i["derived"]
        console.print(f"  {d['anchored_versions']} anchored versions, {d['deposits']} deposits "
                      f"({format_amount(d['deposited'])} LGR), {d['settled_chunks']} settled chunks "
                      f"({format_amount(d['settled'])} LGR), {d['posted_roots']} roots, {d['claims']} claims "
                      f"({format_amount(d['claimed'])} LGR)")
        again = i.get("reanchored") or {}
        if any(again.values()):
            console.print(f"  [yellow]re-anchored[/] {again['datanets']} Datanets and {again['versions']} versions "
                          "that a re-org had taken off the chain")

    s.emit(status, render)


@app.command("revoke-slash")
def revoke_slash(
    ctx: typer.Context,
    slash_id: int = typer.Argument(..., min=0, max=2**256 - 1,
                                   help="The held slash (`balance ACCOUNT` lists an account's)."),
    as_key: str = typer.Option("", "--as", help="The admin key, by name [default: the home's admin keystore, "
                                                "unlocked with LEDGERLM_ADMIN_PASSPHRASE]. The node's key cannot "
                                                "revoke."),
):
    """Admin: give a held slash back to its staker before its dispute time ends."""
    from ledgerlm.identity.node_keys import ADMIN_PASSPHRASE_ENV, node_passphrase, unlock_keystore

    s = session(ctx)
    admin = (s.unlock(as_key) if as_key else
             unlock_keystore(s.home.admin_key_path, node_passphrase(ADMIN_PASSPHRASE_ENV, "admin"), "admin"))
    tx = s.client().chain.send(admin, "Staking", "revokeSlash", [slash_id])
    s.emit(tx, lambda t: console.print(f"[green]revoked[/] slash {slash_id} (tx {t['tx_hash']})"))


@app.command("release-limit")
def release_limit(
    ctx: typer.Context,
    amount: str = typer.Argument("", help="LGR the node may release per day; leave out to show the limit in force."),
    as_key: str = typer.Option("", "--as", help="The admin key, by name [default: the home's admin keystore, "
                                                "unlocked with LEDGERLM_ADMIN_PASSPHRASE]. The node's key cannot "
                                                "set it."),
):
    """Admin: the most of the validators' reward pool the node's hot key may release per day (it also posts the
    root that names who is paid, so this bounds what a stolen key could take); without AMOUNT, show it."""
    s = session(ctx)
    client = s.client()
    if not amount:
        pool = client.chain.info()["reward_pool"]
        s.emit(pool, lambda r: console.print(
            f"the node may release {format_amount(int(r['limit_per_day']))} LGR of the reward pool per day; "
            f"the pool holds {format_amount(int(r['pool']))}, of which {format_amount(int(r['releasable']))} "
            "may be released now"))
        return
    from ledgerlm.identity.node_keys import ADMIN_PASSPHRASE_ENV, node_passphrase, unlock_keystore

    limit = parse_amount(amount, field="amount")
    admin = (s.unlock(as_key) if as_key else
             unlock_keystore(s.home.admin_key_path, node_passphrase(ADMIN_PASSPHRASE_ENV, "admin"), "admin"))
    tx = client.chain.send(admin, "Staking", "setRewardReleaseLimit", [limit])
    s.emit(tx, lambda t: console.print(f"[green]set[/] the daily release limit to {amount} LGR (tx {t['tx_hash']})"))


@app.command()
def faucet(
    ctx: typer.Context,
    who: str = typer.Argument(..., help="Address or key name."),
    eth: str = typer.Option("1", help="ETH to send for gas."),
    tokens: str = typer.Option("1000", help="LGR tokens to send from the treasury account."),
):
    """Embedded development chain only: give an account ETH for gas and LGR (per-address limit)."""
    s = session(ctx)
    address = resolve_address(s, who)
    result = s.client().chain.faucet(address, eth_wei=parse_amount(eth, field="eth"),
                                     tokens=parse_amount(tokens, field="tokens"))
    s.emit(result, lambda r: console.print(f"[green]funded[/] {address}: {eth} ETH, {tokens} LGR"))


def balance(ctx: typer.Context, who: str = typer.Argument(..., help="Address or key name.")):
    """ETH, LGR, stake per role and escrow balance of an account."""
    s = session(ctx)
    account = s.client().chain.account(resolve_address(s, who))

    def render(a):
        console.print(f"[bold]{a['address']}[/]  nonce {a['nonce']}")
        console.print(f"  ETH {format_amount(a['eth_wei'])}")
        if "tokens" in a:
            console.print(f"  LGR {format_amount(a['tokens'])}   in escrow {format_amount(a['escrow'])}")
            for role, amount in a["stake"].items():
                if amount:
                    console.print(f"  staked as {role}: {format_amount(amount)}")
            for role, p in a["unstaking"].items():
                console.print(f"  unstaking {role}: {format_amount(p['amount'])} (withdrawable {format_time(p['release_at'])})")
            for h in a.get("held_slashes", []):
                console.print(f"  slash {h['slash_id']} held ({h['role']}, round {h['round_id']}): "
                              f"{format_amount(h['amount'])}, revocable by the admin until {format_time(h['matures_at'])}")

    s.emit(account, render)


def stake(
    ctx: typer.Context,
    amount: str = typer.Argument(..., help="LGR to stake, e.g. 100 or 2.5."),
    role: str = typer.Option("validator", help=ROLE_HELP),
    as_key: str = typer.Option(..., "--as", help="Key that stakes (signs the transactions)."),
):
    """Stake LGR for a role (approves the Staking contract, then stakes)."""
    s = session(ctx)
    staker, wei = s.unlock(as_key), parse_positive_amount(amount)
    require_tokens(s.client(), staker, wei, amount, "stake")
    txs = s.client().chain.stake(staker, role, wei)
    s.emit(txs, lambda t: console.print(f"[green]staked[/] {amount} LGR as {role} (tx {t[-1]['tx_hash']})"))


def unstake(
    ctx: typer.Context,
    amount: str = typer.Argument(..., help="LGR to unstake."),
    role: str = typer.Option("validator", help=ROLE_HELP),
    as_key: str = typer.Option(..., "--as", help="Key that unstakes (signs the request)."),
):
    """Request to unstake; the amount can be withdrawn after the cooldown."""
    s = session(ctx)
    tx = s.client().chain.request_unstake(s.unlock(as_key), role, parse_positive_amount(amount))
    s.emit(tx, lambda t: console.print(f"unstake of {amount} LGR requested (tx {t['tx_hash']})"))


def withdraw(
    ctx: typer.Context,
    role: str = typer.Option("validator", help=ROLE_HELP),
    as_key: str = typer.Option(..., "--as", help="Key whose unstaked LGR is withdrawn (signs the transaction)."),
):
    """Withdraw unstaked LGR whose cooldown has passed."""
    s = session(ctx)
    tx = s.client().chain.withdraw_stake(s.unlock(as_key), role)
    s.emit(tx, lambda t: console.print(f"[green]withdrawn[/] (tx {t['tx_hash']})"))


def transfer(
    ctx: typer.Context,
    to: str = typer.Argument(..., help="Address or key name."),
    amount: str = typer.Argument(..., help="LGR to send."),
    as_key: str = typer.Option(..., "--as", help="Key that sends the LGR (signs the transfer)."),
):
    """Send LGR to another account."""
    s = session(ctx)
    tx = s.client().chain.transfer(s.unlock(as_key), resolve_address(s, to), parse_positive_amount(amount))
    s.emit(tx, lambda t: console.print(f"sent {amount} LGR (tx {t['tx_hash']})"))


__all__ = ["app", "balance", "stake", "unstake", "withdraw", "transfer", "LedgerError"]
