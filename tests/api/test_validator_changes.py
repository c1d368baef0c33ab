"""A validator-set change on a live network, and clients pinned to the genesis that keep
verifying proofs by following it — without trusting the gateway for the new set."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from services.cli import main
from services.ledger.core.validators import Validator, ValidatorSet
from services.sdk import proofs
from services.sdk.client import Client
from tests.live import LiveNetwork

pytestmark = pytest.mark.functional


def change_powers(live: LiveNetwork) -> tuple[ValidatorSet, int]:
    """The consortium gives the ledger operator's validator power 2 (same keys)."""
    old = live.genesis.validators
    new = ValidatorSet.of([Validator(v.key_id, v.public_key, 2 if i == 0 else v.power, v.org)
                           for i, v in enumerate(old.validators)])
    admins = [live.client(live.admin_key(s)) for s in ("ledger", "trace", "customs")]
    height = admins[0].status()["height"]
    effective = height + live.genesis.params.validator_change_delay + 4
    action = {"type": "set_validators", "effective_height": effective,
              "validators": [{"public_key": v.public_key.hex(), "power": v.power,
                              "org": v.org} for v in new.validators]}
    proposed = admins[0].send("consortium.propose", {"action": action})
    assert proposed["status"] == "committed"
    for admin in admins[1:]:
        assert admin.send("consortium.approve",
                          {"proposal": proposed["tx_hash"]})["status"] == "committed"
    deadline = time.monotonic() + 60
    while admins[0].status()["height"] <= effective + 1:
        assert time.monotonic() < deadline, "the chain did not pass the effective height"
        time.sleep(0.2)
    return new, effective


@pytest.fixture(scope="module")
def changed(live: LiveNetwork) -> tuple[ValidatorSet, int]:
    return change_powers(live)


def test_a_genesis_pinned_client_follows_the_change(live: LiveNetwork,
                                                    changed: tuple[ValidatorSet, int]) -> None:
    new, effective = changed
    old = live.genesis.validators
    assert new.hash != old.hash
    client = live.client(live.demo_key)
    digest = hashlib.sha256(b"after the validator change").hexdigest()
    receipt = client.send("notary.anchor", {"digest": digest}, verify=True)
    assert receipt["height"] > effective
    assert receipt["header"]["validators_hash"] == new.hash.hex()
    assert client.trust is not None and new.hash in client.trust
    assert client.state(f"notary/anchor/{digest}", verify=True)["digest"] == digest
    record = client.call("GET", f"/v1/validators/sets/{new.hash.hex()}")
    assert record["first_height"] == effective
    assert ValidatorSet.from_wire(record["validators"]) == new
    genesis_set = client.call("GET", f"/v1/validators/sets/{old.hash.hex()}")
    assert genesis_set["first_height"] == 1
    # Blocks before the change still verify against the genesis set.
    early = client.block(2)
    proofs.verify_certified_header(early["block"]["header"], early["certificate"], old)


class LyingGateway:
    """Serves the real answers, except where told to lie."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.set_patch: dict[str, Any] = {}
        self.header_patch: dict[str, Any] = {}
        self.missing = False

    def fetch_set(self, validators_hash: str) -> Mapping[str, Any] | None:
        if self.missing:
            return None
        record = dict(self.client.call("GET", f"/v1/validators/sets/{validators_hash}"))
        return {**record, **self.set_patch}

    def fetch_block(self, height: int) -> Mapping[str, Any] | None:
        block = self.client.block(height)
        header = {**block["block"]["header"], **self.header_patch}
        return {**block, "block": {**block["block"], "header": header}}


def test_a_lying_gateway_cannot_install_a_validator_set(
        live: LiveNetwork, changed: tuple[ValidatorSet, int]) -> None:
    new, effective = changed
    liar = LyingGateway(live.client())

    def follow() -> ValidatorSet:
        return proofs.ValidatorTrust(live.genesis).follow(new.hash, liar.fetch_set,
                                                          liar.fetch_block)

    assert follow() == new  # honest answers: accepted
    liar.set_patch = {"validators": live.genesis.validators.to_wire()}
    with pytest.raises(proofs.ProofError, match="asked hash"):
        follow()
    liar.set_patch = {"first_height": effective + 3}  # a block that installs nothing
    with pytest.raises(proofs.ProofError, match="does not install"):
        follow()
    liar.set_patch = {}
    # A header rewritten to install the set at another block: its certificate fails.
    liar.header_patch = {"state_root": "00" * 32}
    with pytest.raises(proofs.ProofError, match=r"another block|does not verify"):
        follow()
    liar.header_patch = {}
    liar.missing = True
    with pytest.raises(proofs.UntrustedValidators):
        follow()


def test_offline_verify_follows_the_change_through_a_gateway(
        live: LiveNetwork, changed: tuple[ValidatorSet, int], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    client = live.client(live.demo_key)
    digest = hashlib.sha256(b"saved after the change").hexdigest()
    client.send("notary.anchor", {"digest": digest})
    saved = tmp_path / "answer.json"
    saved.write_text(json.dumps(client.call("GET", f"/v1/state/notary/anchor/{digest}")))
    genesis = str(live.data.genesis_path)
    assert main(["client", "verify", str(saved), "--genesis-file", genesis]) == 1
    assert "untrusted_validators" in capsys.readouterr().err
    assert main(["client", "--gateway", live.url, "verify", str(saved),
                 "--genesis-file", genesis]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True
