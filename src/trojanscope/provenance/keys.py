"""Key material for signing: elliptic-curve keys (P-256, P-384, P-521, as the model signing
format allows) and X.509 certificate chains. Needs `cryptography` (the `sign` extra).
Every error is a KeyMaterialError naming the file."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

CURVES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}


class KeyMaterialError(ValueError):
    """A key or certificate that cannot be used; names the file and the problem."""


def generate(private_path: Path, public_path: Path) -> str:
    """A new P-256 key pair written as PEM (the private key readable by its owner only);
    returns the public key's hint."""
    for path in (private_path, public_path):
        try:
            taken = os.path.lexists(path)  # a link to nothing is taken too
        except OSError as exc:  # a name too long
            raise KeyMaterialError(f"{path}: {exc.strerror}") from None
        if taken:
            raise KeyMaterialError(f"{path}: exists; not overwriting a key")
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    try:
        private_path.touch(mode=0o600)
        private_path.write_bytes(private_pem)
        public_path.write_bytes(public_pem(key.public_key()))
    except OSError as exc:
        raise KeyMaterialError(f"{exc.filename}: cannot write: {exc.strerror}") from None
    return key_hint(key.public_key())


def load_private(path: Path, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    raw = _read(path)
    try:
        key = serialization.load_pem_private_key(raw, password)
    except TypeError:
        raise KeyMaterialError(f"{path}: the key is encrypted; give its password") from None
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: not a PEM private key ({exc})") from None
    return _supported(key, path)


def load_public(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(_read(path))
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: not a PEM public key ({exc})") from None
    return _supported(key, path)


def load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(_read(path))
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: not PEM certificates ({exc})") from None
    return certificates


def certificate_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def certificates_from_der(chain) -> list[x509.Certificate]:
    try:
        return [x509.load_der_x509_certificate(raw) for raw in chain]
    except ValueError as exc:
        raise KeyMaterialError(f"a certificate in the signature is not DER ({exc})") from None


def subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """The format's key identifier: SHA-256 of the public key's PEM."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(CURVES[key.curve.name]()))


def signature_holds(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(CURVES[key.curve.name]()))
    except InvalidSignature:
        return False
    return True


def chain_key(chain: list[x509.Certificate], roots: list[x509.Certificate]
              ) -> ec.EllipticCurvePublicKey:
    """The signing certificate's key, once its chain is proved to end at one of `roots`: each
    link issued by the next (signature, issuer name, CA constraint), all valid at the signing
    certificate's start (the format records no signing time), and the certificate allowed to
    sign (key usage digitalSignature or extended key usage codeSigning)."""
    if not chain:
        raise KeyMaterialError("the signature carries no certificate")
    leaf = chain[0]
    when = leaf.not_valid_before_utc
    _usable_for_signing(leaf)
    current, rest = leaf, list(chain[1:])
    for _ in range(len(chain) + 1):
        _valid_at(current, when)
        if any(_issued_by(current, root) and _valid_at(root, when, strict=False)
               for root in roots):
            return _supported(leaf.public_key(), "the signing certificate")
        issuer = next((c for c in rest if _issued_by(current, c)), None)
        if issuer is None:
            raise KeyMaterialError(f"certificate {subject(current)!r} does not "
                                   "chain to a trusted root")
        rest.remove(issuer)
        current = issuer
    raise KeyMaterialError("certificate chain does not end at a trusted root")


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject:
        return False
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _valid_at(certificate: x509.Certificate, when: datetime, strict: bool = True) -> bool:
    inside = certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc
    if strict and not inside:
        raise KeyMaterialError(f"certificate {subject(certificate)!r} was not "
                               f"valid at {when.isoformat()}")
    return inside


def _usable_for_signing(leaf: x509.Certificate) -> None:
    extensions = leaf.extensions
    try:
        if extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return
    except x509.ExtensionNotFound:
        pass
    try:
        usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if x509.oid.ExtendedKeyUsageOID.CODE_SIGNING in usage:
            return
    except x509.ExtensionNotFound:
        pass
    raise KeyMaterialError(f"certificate {subject(leaf)!r} may not sign "
                           "(no digitalSignature key usage or codeSigning extended key usage)")


def _supported(key, where):
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) or \
            key.curve.name not in CURVES:
        raise KeyMaterialError(f"{where}: model signing uses elliptic-curve keys on P-256, "
                               f"P-384 or P-521, not {type(key).__name__}")
    return key


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"{path}: cannot read: {exc.strerror or exc}") from None
