"""`sign` and `verify`: the OpenSSF model signing format with a private key (or a key and its
certificate chain), checked with the public key (or trusted root certificates)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from ..findings import Location, Report
from ..results import SignResults, VerifyResults
from . import keys
from .bundle import BundleError, bundle_json, pae, read_bundle, root_digest, statement
from .integrity import (
    BAD_SIGNATURE,
    FILE_ADDED,
    FILE_CHANGED,
    FILE_REMOVED,
    compare,
    ignored_paths,
)
from .manifest import DEFAULT_IGNORED, hash_files, model_files
from .paths import default_signature


def sign(path: Path, private_key: Path, signature: Path | None = None,
         certificates: Path | None = None, password: bytes | None = None) -> Report:
    """Signs a model file or folder. `certificates`: PEM, the signing certificate first, then
    its chain (certificate mode); else the bundle names the public key by its hint."""
    started = time.perf_counter()
    root = Path(path)
    signature = Path(signature) if signature else default_signature(root)
    _writable(signature, root, [private_key] + ([certificates] if certificates else []))
    key = keys.load_private(private_key, password)
    if certificates is not None:
        chain = keys.load_certificates(certificates)
        if not chain or chain[0].public_key() != key.public_key():
            raise keys.KeyMaterialError(f"{certificates}: the first certificate is not for the "
                                        f"key in {private_key}")
        material = {"x509CertificateChain": {"certificates": [
            {"rawBytes": base64.b64encode(keys.certificate_der(c)).decode()} for c in chain]}}
        signer = keys.subject(chain[0])
    else:
        material = {"publicKey": {"hint": keys.key_hint(key.public_key())}}
        signer = material["publicKey"]["hint"]
    ignored = ignored_paths(root, signature, DEFAULT_IGNORED)
    files = hash_files(model_files(root, ignored))
    name = _model_name(root)
    payload = statement(name, files, ignored)
    try:
        signature.write_text(bundle_json(payload, keys.sign_bytes(key, pae(payload)), material),
                             encoding="utf-8")
    except OSError as exc:
        raise keys.KeyMaterialError(f"{signature}: cannot write: {exc.strerror}") from None
    return Report(command="sign", targets=(str(root),),
                  results=SignResults(signature=str(signature), files=len(files),
                                      root_digest=root_digest(files), signer=signer,
                                      model_name=name),
                  timings={"total_seconds": round(time.perf_counter() - started, 3)})


def _writable(signature: Path, root: Path, inputs: list[Path]) -> None:
    """Refuse, before signing, a signature path that a model folder may have planted (a link,
    a FIFO: the bundle would replace the file it names, or hang) or that names the key, the
    certificates, the model file or a file of the model folder other than a signature
    (`*.sig`)."""
    if signature.is_symlink() or signature.exists() and (
            not signature.is_file() or signature.stat().st_nlink > 1):
        raise keys.KeyMaterialError(f"{signature}: the signature's path is a link or not a "
                                    "regular file; remove it or name another path")
    if not signature.exists():
        return
    try:
        where, named = signature.resolve(), [Path(p).resolve() for p in [*inputs, root]]
    except (OSError, RuntimeError) as exc:  # a loop of links (RuntimeError before 3.13)
        raise keys.KeyMaterialError(f"{signature}: {exc}") from None
    if where in named or root.is_dir() and signature.suffix != ".sig" and \
            where.is_relative_to(named[-1]):
        raise keys.KeyMaterialError(f"{signature}: the signature would overwrite the key, the "
                                    "certificates or the model; name a new file")


def verify(path: Path, public_key: Path | None = None, signature: Path | None = None,
           roots: Path | None = None) -> Report:
    """Checks the signature with `public_key` (key mode) or `roots` (certificate mode), then
    every file: changed, added and removed files are findings, each naming its file."""
    if (public_key is None) == (roots is None):
        raise keys.KeyMaterialError("give the public key (--key) or the trusted root "
                                    "certificates (--root-certificates), one of them")
    started = time.perf_counter()
    root = Path(path)
    if not root.exists():
        raise keys.KeyMaterialError(f"{root}: no such file or folder")
    signature = Path(signature) if signature else default_signature(root)
    if not signature.is_file():
        raise keys.KeyMaterialError(f"{signature}: no signature file")
    findings, results = [], {"signature": str(signature)}
    at = Location(str(signature))
    trusted = keys.load_public(public_key) if public_key is not None else None
    trusted_roots = keys.load_certificates(roots) if roots is not None else None
    try:
        signed = read_bundle(signature)
    except BundleError as exc:
        findings.append(BAD_SIGNATURE.finding(f"{signature}: {exc}", at))
        signed = None
    if signed is not None:
        problem = _authenticity(signed, trusted, trusted_roots, results)
        if problem:
            findings.append(BAD_SIGNATURE.finding(f"{signature}: {problem}", at))
        changes = compare(root, signed, signature)
        for rule, names, what in ((FILE_CHANGED, changes.changed, "changed since signing"),
                                  (FILE_ADDED, changes.added, "is not in the signature"),
                                  (FILE_REMOVED, changes.removed, "is signed but missing")):
            for name in names:
                where = _shown(root, name)
                findings.append(rule.finding(f"{where}: {what}", Location(where)))
        results.update({"files": len(signed.files), "model_name": signed.model_name,
                        "root_digest": root_digest(signed.files), "changed": changes.changed,
                        "added": changes.added, "removed": changes.removed})
    results["verified"] = not findings
    return Report(command="verify", targets=(str(root),),
                  findings=tuple(findings), results=VerifyResults(**results),
                  timings={"total_seconds": round(time.perf_counter() - started, 3)})


def _authenticity(signed, public_key, roots, results: dict) -> str | None:
    """None when the signature holds, else what is wrong; records the signer."""
    if public_key is not None:
        hint = keys.key_hint(public_key)
        results["signer"] = hint
        if signed.key_hint and signed.key_hint != hint:
            return (f"signed by another key (hint {signed.key_hint[:16]}..., this key "
                    f"{hint[:16]}...)")
        key = public_key
    else:
        try:
            chain = keys.certificates_from_der(signed.certificates)
            key = keys.chain_key(chain, roots)
        except keys.KeyMaterialError as exc:
            return str(exc)
        results["signer"] = keys.subject(chain[0])
    if not keys.signature_holds(key, signed.signature, pae(signed.payload)):
        return "the signature does not match its statement under this key"
    return None


def _model_name(root: Path) -> str:
    return root.resolve().name


def _shown(root: Path, name: str) -> str:
    return str(root) if name == "." else str(root / name)
