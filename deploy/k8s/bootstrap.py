"""Bootstrap material for the Kubernetes manifests: genesis, key Secrets, credentials, TLS.

Run from the repository root with the project installed (``pip install -e .``)::

    # a consortium's genesis from the members' PUBLIC keys (see docs/runbook.md)
    python deploy/k8s/bootstrap.py genesis --members members.json --out genesis.json

    # everything a single-cluster demo consortium needs, generated offline
    python deploy/k8s/bootstrap.py local --out ~/ecosphere-bootstrap
    kubectl apply -f ~/ecosphere-bootstrap/bootstrap.yaml     # Secrets and ConfigMaps
    kubectl apply -k deploy/k8s/overlays/local-consortium

Nothing this writes belongs in the repository: ``--out`` must be outside it. The
manifests only *name* these Secrets and ConfigMaps (``tests/deploy`` checks that
every name they reference is one this script produces, and the reverse).

Private keys never leave the machine they are generated on except as the one
Secret their own workload mounts; admin keys are never put in the cluster.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import encode_unchecked
from services.ledger.core.genesis import ChainParams, Genesis, GenesisKey, GenesisOrg
from services.ledger.core.validators import Validator, ValidatorSet
from services.ledger.node import keys
from services.runtime.datadir import VALIDATOR_SERVICES

NAMESPACE = "ecosphere"
VALIDATORS = tuple(service for service, *_ in VALIDATOR_SERVICES)
SERVICES = (*VALIDATORS, "gateway")
# Gateways are replicas too: each gateway pod needs a node key of its own, registered
# in the genesis with the `node` permission. The HorizontalPodAutoscaler's
# maxReplicas must not exceed this pool.
GATEWAY_KEY_POOL = 4
BROKER = "ecosphere-broker"  # RabbitmqCluster name (its client Service has the same name)
VIEWS = "ecosphere-views"  # MongoDBCommunity name (its headless Service: <name>-svc)
VIEWS_USER = "ecosphere-gateway"


def node_key_secret(service: str) -> str:
    return f"ecosphere-{service}-node-key"


GATEWAY_KEYS_SECRET = "ecosphere-gateway-node-keys"
GENESIS_CONFIGMAP = "ecosphere-genesis"
BROKER_TLS_SECRET = "ecosphere-broker-tls"
BROKER_CA_CONFIGMAP = "ecosphere-broker-ca"
VIEWS_TLS_SECRET = "ecosphere-views-tls"
VIEWS_CA_CONFIGMAP = "ecosphere-views-ca"
VIEWS_PASSWORD_SECRET = "ecosphere-views-gateway-password"


def amqp_secret(service: str) -> str:
    return f"ecosphere-{service}-amqp"


def amqp_username(service: str) -> str:
    return f"ecosphere-{service}"


# --- genesis from public keys ------------------------------------------------------------

def assemble_genesis(members: dict[str, Any]) -> Genesis:
    """The genesis from a members document holding only public keys::

        {"chain_id": "ecosphere-prod", "genesis_time": 1767225600000,
         "organisations": [{"id": "operator", "name": "...", "roles": ["platform"],
                            "validator": "<hex>", "admins": ["<hex>"], "nodes": ["<hex>"]}]}

    ``validator``: the organisation's validator node key (power 1); ``admins``: admin
    keys (admin + member permissions); ``nodes``: non-voting node keys (gateways);
    ``members``: member keys (the gateways' relay keys, which relay signed EPCIS
    captures and record consumer scans: one per gateway, its only user).
    """
    orgs, gkeys, validators = [], [], []
    for org in members["organisations"]:
        orgs.append(GenesisOrg(org["id"], org["name"], tuple(org["roles"])))
        for admin in org.get("admins", []):
            gkeys.append(GenesisKey(bytes.fromhex(admin), org["id"], ("admin", "member")))
        if org.get("validator"):
            public = bytes.fromhex(org["validator"])
            validators.append(Validator(GenesisKey(public, org["id"], ()).key_id, public, 1,
                                        org["id"]))
        for node in org.get("nodes", []):
            gkeys.append(GenesisKey(bytes.fromhex(node), org["id"], ("node",)))
        for member in org.get("members", []):
            gkeys.append(GenesisKey(bytes.fromhex(member), org["id"], ("member",)))
    genesis_time = members.get("genesis_time") or time.time_ns() // 1_000_000
    from services.composition import LATEST

    # a new consortium starts on the latest composition (members.yaml may pin another)
    return Genesis(chain_id=members["chain_id"], genesis_time=int(genesis_time),
                   params=ChainParams(), organisations=tuple(orgs), keys=tuple(gkeys),
                   validators=ValidatorSet.of(validators),
                   composition=int(members.get("composition", LATEST)))


def genesis_bytes(genesis: Genesis) -> bytes:
    return encode_unchecked(genesis.to_wire())


# --- TLS ------------------------------------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ecosphere"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class CertificateAuthority:
    """A private CA for the demo consortium's broker and MongoDB (real deployments use
    their own PKI or cert-manager; the Secret and ConfigMap names stay the same)."""

    def __init__(self, common_name: str = "ecosphere demo CA", days: int = 825) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.days = days
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(common_name)).issuer_name(_name(common_name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=days))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, key_cert_sign=True, crl_sign=True,
                         content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, encipher_only=False,
                         decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        return _pem_cert(self.cert)

    def issue(self, common_name: str, dns_names: list[str]) -> tuple[str, str]:
        """(certificate PEM, private key PEM) of a server certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (x509.CertificateBuilder()
                .subject_name(_name(common_name)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=min(self.days, 397)))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                      x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return _pem_cert(cert), _pem_key(key)


def service_dns(name: str, namespace: str) -> list[str]:
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
            f"{name}.{namespace}.svc.cluster.local"]


def broker_dns(namespace: str) -> list[str]:
    nodes = f"{BROKER}-nodes"
    return [*service_dns(BROKER, namespace), f"*.{nodes}.{namespace}.svc",
            f"*.{nodes}.{namespace}.svc.cluster.local"]


def views_dns(namespace: str) -> list[str]:
    svc = f"{VIEWS}-svc"
    return [*service_dns(svc, namespace), f"*.{svc}.{namespace}.svc",
            f"*.{svc}.{namespace}.svc.cluster.local"]


# --- Kubernetes objects ---------------------------------------------------------------------

LABELS = {"app.kubernetes.io/part-of": "ecosphere",
          "app.kubernetes.io/managed-by": "ecosphere-bootstrap"}


def secret(name: str, data: dict[str, str], namespace: str,
           kind: str = "Opaque") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
            "stringData": data}


def config_map(name: str, data: dict[str, str], namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
            "data": data}


def password() -> str:
    """URL-safe (hex): the manifests put it into amqps:// and mongodb:// URLs as is."""
    return secrets.token_hex(24)


def local_consortium(out: Path, namespace: str = NAMESPACE,
                     chain_id: str = "ecosphere-local") -> list[dict[str, Any]]:
    """Generate, offline, the keys, genesis and credentials of a single-cluster
    consortium (the four validators and a gateway key pool) under ``out``."""
    offline = out / "offline"
    members: dict[str, Any] = {"chain_id": chain_id, "organisations": []}
    node_keys: dict[str, PrivateKey] = {}
    for service, org_id, name, roles in VALIDATOR_SERVICES:
        node = keys.load_or_create(offline / service / "node.key")
        admin = keys.load_or_create(offline / service / "admin.key")
        node_keys[service] = node
        org: dict[str, Any] = {"id": org_id, "name": name, "roles": list(roles),
                               "validator": node.public.hex(), "admins": [admin.public.hex()],
                               "nodes": []}
        members["organisations"].append(org)
    gateway_keys = [keys.load_or_create(offline / "gateway" / f"node-{i}.key")
                    for i in range(GATEWAY_KEY_POOL)]
    relay_keys = [keys.load_or_create(offline / "gateway" / f"relay-{i}.key")
                  for i in range(GATEWAY_KEY_POOL)]
    # The platform operator runs the gateways (node keys) and their relays (member keys).
    members["organisations"][0]["nodes"] = [k.public.hex() for k in gateway_keys]
    members["organisations"][0]["members"] = [k.public.hex() for k in relay_keys]
    (offline / "members.json").write_text(json.dumps(members, indent=2) + "\n")
    genesis = assemble_genesis(members)
    (offline / "genesis.json").write_bytes(genesis_bytes(genesis))

    ca = CertificateAuthority()
    broker_crt, broker_key = ca.issue(f"{BROKER}.{namespace}.svc", broker_dns(namespace))
    views_crt, views_key = ca.issue(f"{VIEWS}-svc.{namespace}.svc", views_dns(namespace))
    objects = [config_map(GENESIS_CONFIGMAP, {"genesis.json": genesis_bytes(genesis).decode()},
                          namespace)]
    for service in VALIDATORS:
        objects.append(secret(node_key_secret(service),
                              {"node.key": keys.to_pem(node_keys[service]).decode()},
                              namespace))
    objects.append(secret(GATEWAY_KEYS_SECRET,
                          {**{f"node-{i}.key": keys.to_pem(k).decode()
                              for i, k in enumerate(gateway_keys)},
                           **{f"relay-{i}.key": keys.to_pem(k).decode()
                              for i, k in enumerate(relay_keys)}}, namespace))
    for service in SERVICES:
        objects.append(secret(amqp_secret(service),
                              {"username": amqp_username(service), "password": password()},
                              namespace))
    objects.append(secret(VIEWS_PASSWORD_SECRET, {"password": password()}, namespace))
    objects.append(secret(BROKER_TLS_SECRET, {"tls.crt": broker_crt, "tls.key": broker_key,
                                              "ca.crt": ca.pem}, namespace, "kubernetes.io/tls"))
    objects.append(config_map(BROKER_CA_CONFIGMAP, {"ca.crt": ca.pem}, namespace))
    objects.append(secret(VIEWS_TLS_SECRET, {"tls.crt": views_crt, "tls.key": views_key},
                          namespace, "kubernetes.io/tls"))
    objects.append(config_map(VIEWS_CA_CONFIGMAP, {"ca.crt": ca.pem}, namespace))
    return objects


def write_objects(path: Path, objects: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump_all(objects, sort_keys=False)
    path.write_text(text)
    path.chmod(0o600)


def _inside_repository(path: Path) -> bool:
    root = Path(__file__).resolve().parents[2]
    return path.resolve().is_relative_to(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("genesis", help="assemble a genesis from members' public keys")
    gen.add_argument("--members", required=True, type=Path)
    gen.add_argument("--out", required=True, type=Path)
    local = sub.add_parser("local", help="offline bootstrap of a single-cluster consortium")
    local.add_argument("--out", required=True, type=Path)
    local.add_argument("--namespace", default=NAMESPACE)
    local.add_argument("--chain-id", default="ecosphere-local")
    args = parser.parse_args(argv)
    if _inside_repository(args.out):
        print(f"bootstrap: {args.out} is inside the repository; keys and secrets must "
              "not be written there", file=sys.stderr)
        return 2
    if args.command == "genesis":
        genesis = assemble_genesis(json.loads(args.members.read_text()))
        args.out.write_bytes(genesis_bytes(genesis))
        print(json.dumps({"chain_id": genesis.chain_id, "genesis_hash": genesis.hash.hex(),
                          "validators": [v.key_id for v in genesis.validators.validators]}))
        return 0
    objects = local_consortium(args.out, args.namespace, args.chain_id)
    write_objects(args.out / "bootstrap.yaml", objects)
    print(json.dumps({"bootstrap": str(args.out / "bootstrap.yaml"),
                      "offline": str(args.out / "offline"), "objects": len(objects)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
