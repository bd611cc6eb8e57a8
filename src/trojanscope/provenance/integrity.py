"""Does a model still hold what its signature lists? Standard library only: scan uses it to
note a signature it meets (`signature_notes`); verify adds the key check on top. The rules of
both live here so that listing them needs no cryptography."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..findings import Finding, Location, Rule, Severity
from .bundle import BundleError, Signed, read_bundle
from .manifest import ManifestError, hash_files, model_files

BAD_SIGNATURE = Rule("verify.bad-signature", Severity.CRITICAL,
                     "The signature is not valid for this key or trust root, or the signature "
                     "file is not a model-signing bundle",
                     "Do not use the model: get it and its signature again from the source, "
                     "and check which key should have signed it.")
FILE_CHANGED = Rule("verify.file-changed", Severity.HIGH,
                    "A signed file's content changed since it was signed",
                    "Replace the file with the signed one, or have the model signed again by "
                    "its owner.")
FILE_ADDED = Rule("verify.file-added", Severity.HIGH,
                  "A file that the signature does not list was added to the model",
                  "Remove the file (it could be a payload loaded beside the model), or have the "
                  "model signed again by its owner.")
FILE_REMOVED = Rule("verify.file-removed", Severity.HIGH,
                    "A file that the signature lists is missing",
                    "Get the complete model from its source.")


SIGNED = Rule("provenance.signed", Severity.INFO,
              "A model signature lies beside the model and every file it lists is unchanged",
              "scan checks the files, not who signed them: run `trojanscope verify PATH --key "
              "PUBLIC.pem` with the publisher's key.")
SIGNATURE_BROKEN = Rule("provenance.signature-mismatch", Severity.HIGH,
                        "A model signature lies beside the model, but the files differ from "
                        "what it lists, or it is not a readable model-signing bundle",
                        "Do not trust the model's origin: get it again from its publisher and "
                        "run `trojanscope verify`.")


@dataclass(frozen=True)
class Changes:
    changed: list[str]
    added: list[str]
    removed: list[str]

    @property
    def none(self) -> bool:
        return not (self.changed or self.added or self.removed)


def ignored_paths(root: Path, signature: Path, base: tuple[str, ...]) -> tuple[str, ...]:
    """`base` plus the signature's own path when it lies inside the signed folder."""
    try:
        inside = signature.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return base
    return base if inside in base or not root.is_dir() else base + (inside,)


def compare(root: Path, signed: Signed, signature: Path) -> Changes:
    links: list[str] = []  # a link put into a signed model is reported as an added file
    files = model_files(root, ignored_paths(root, signature, signed.ignored), links)
    now = hash_files(files)
    return Changes(changed=[n for n in signed.files if n in now and now[n] != signed.files[n]],
                   added=[n for n in now if n not in signed.files] + links,
                   removed=[n for n in signed.files if n not in now])


def signature_notes(root: Path, signature: Path) -> list[Finding]:
    """scan's note on a signature found beside a model: whether the files still match it.
    Who signed it is not checked here (that takes the publisher's key: verify)."""
    at = Location(str(signature))
    try:
        signed = read_bundle(signature)
        changes = compare(root, signed, signature)
    except (BundleError, ManifestError) as exc:
        return [SIGNATURE_BROKEN.finding(f"{signature}: {exc}", at)]
    if changes.none:
        return [SIGNED.finding(f"{signature}: the {len(signed.files)} signed files of "
                               f"{signed.model_name!r} are unchanged (signer not checked)", at,
                               {"files": len(signed.files), "key_hint": signed.key_hint})]
    listed = [f"{what} {name}" for what, names in (("changed", changes.changed),
                                                   ("added", changes.added),
                                                   ("removed", changes.removed))
              for name in names]
    return [SIGNATURE_BROKEN.finding(
        f"{signature}: the model differs from its signature: {', '.join(listed[:5])}"
        + (f" and {len(listed) - 5} more" if len(listed) > 5 else ""), at,
        {"changed": changes.changed, "added": changes.added, "removed": changes.removed})]
