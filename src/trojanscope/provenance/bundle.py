"""The signature file: a Sigstore bundle (v0.3) holding a DSSE envelope whose payload is an
in-toto statement, as the OpenSSF model signing library (v1.0 predicate) writes it.

    statement  subject: [{name: model name, digest: {sha256: root}}], where root is the SHA-256
               of every file's raw digest concatenated in manifest order;
               predicate: {serialization: {method: files, hash_type: sha256, allow_symlinks,
               ignore_paths}, resources: [{name, algorithm, digest}]}
    envelope   payload (base64 of the statement's JSON), payloadType, signatures [{sig, keyid}];
               the signature covers DSSE's pre-authentication encoding (PAE) of the payload
    bundle     mediaType, verificationMaterial {publicKey {hint} | x509CertificateChain}

Parsing reads untrusted JSON: anything malformed is a BundleError naming the problem.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
MAX_BUNDLE_BYTES = 64 << 20  # a manifest of a million files is about 150 MB; refuse more


class BundleError(ValueError):
    """A signature file that is not a model-signing bundle; the message says what is wrong."""


@dataclass(frozen=True)
class Signed:
    """What a bundle claims, before any key is checked."""
    model_name: str
    files: dict[str, str]           # name -> hex SHA-256, in the payload's order
    ignored: tuple[str, ...]        # the serialization's ignore_paths
    payload: bytes                  # the exact bytes the signature covers (via PAE)
    signature: bytes                # DER ECDSA
    key_hint: str | None            # SHA-256 of the signer's public key PEM
    certificates: tuple[bytes, ...]  # DER, signing certificate first


def root_digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for value in files.values():
        digest.update(bytes.fromhex(value))
    return digest.hexdigest()


def statement(model_name: str, files: dict[str, str], ignored: tuple[str, ...]) -> bytes:
    body = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root_digest(files)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256",
                              "allow_symlinks": False, "ignore_paths": list(ignored)},
            "resources": [{"name": name, "algorithm": "sha256", "digest": digest}
                          for name, digest in files.items()],
        },
    }
    return json.dumps(body, indent=2).encode("utf-8")


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload),
                                   payload)


def bundle_json(payload: bytes, signature: bytes, material: dict) -> str:
    return json.dumps({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {**material, "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode(),
                         "payloadType": PAYLOAD_TYPE,
                         "signatures": [{"sig": base64.b64encode(signature).decode(),
                                         "keyid": ""}]},
    }, indent=2)


def read_bundle(path: Path) -> Signed:
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise BundleError(f"{size} bytes: larger than any signature ({MAX_BUNDLE_BYTES})")
        return parse_bundle(path.read_bytes())
    except OSError as exc:
        raise BundleError(f"cannot read: {exc.strerror or exc}") from None


def parse_bundle(raw: bytes) -> Signed:
    try:
        bundle = json.loads(raw.decode("utf-8"))
        if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise BundleError(f"media type {bundle.get('mediaType')!r}, not a Sigstore bundle "
                              "v0.3")
        envelope = bundle["dsseEnvelope"]
        if envelope["payloadType"] != PAYLOAD_TYPE:
            raise BundleError(f"payload type {envelope['payloadType']!r}, not in-toto")
        payload = _base64(envelope["payload"])
        signatures = envelope["signatures"]
        if len(signatures) != 1:
            raise BundleError(f"{len(signatures)} signatures; model signing uses one")
        material = bundle["verificationMaterial"]
        hint = (material.get("publicKey") or {}).get("hint")
        chain = (material.get("x509CertificateChain") or {}).get("certificates") or []
        return _claims(payload, _base64(signatures[0]["sig"]), hint,
                       tuple(_base64(c["rawBytes"]) for c in chain))
    except BundleError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # and 4,300-digit numbers,
        raise BundleError(f"not JSON ({exc})") from None             # nesting past the stack
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise BundleError(f"not a model-signing bundle (missing or odd field {exc})") from None


def _claims(payload: bytes, signature: bytes, hint, certificates) -> Signed:
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"payload is not JSON ({exc})") from None
    if body.get("_type") != STATEMENT_TYPE or body.get("predicateType") != PREDICATE_TYPE:
        raise BundleError(f"payload is not a model signing v1.0 statement "
                          f"({body.get('_type')!r}, {body.get('predicateType')!r})")
    predicate = body["predicate"]
    serialization = predicate["serialization"]
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise BundleError(f"serialization {serialization.get('method')!r} with "
                          f"{serialization.get('hash_type')!r}: only files with sha256 is read")
    files = {}
    for resource in predicate["resources"]:
        if resource["algorithm"] != "sha256" or not _is_hex(resource["digest"], 64):
            raise BundleError(f"resource {resource['name']!r}: not a SHA-256 digest")
        files[str(resource["name"])] = resource["digest"].lower()
    subject = body["subject"]
    if len(subject) != 1:
        raise BundleError(f"{len(subject)} subjects; model signing uses one")
    claimed = subject[0]["digest"]["sha256"]
    if claimed != root_digest(files):
        raise BundleError("the statement's root digest does not match its file digests")
    return Signed(str(subject[0]["name"]), files,
                  tuple(str(p) for p in serialization.get("ignore_paths", ())),
                  payload, signature, hint if isinstance(hint, str) else None, certificates)


def _base64(value) -> bytes:
    if not isinstance(value, str):
        raise BundleError("a base64 field is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("a field is not valid base64") from None


def _is_hex(value, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and \
        all(c in "0123456789abcdefABCDEF" for c in value)
