"""keygen, sign and verify: where did it come from? Parse, call the library, render. A key's
password comes from the environment, never from the command line."""

from __future__ import annotations

import os
from pathlib import Path

from .. import render
from ..findings import Severity
from .common import EXIT_CODES, SEVERITIES, UserError, emit

NAMES = ("keygen", "sign", "verify")
PASSWORD_VARIABLE = "TROJANSCOPE_KEY_PASSWORD"


def add(commands) -> None:
    keygen = commands.add_parser(
        "keygen", help="make a P-256 key pair for sign and verify",
        description="Write NAME.pem (private, readable by you only) and NAME.pub.pem (public).")
    keygen.add_argument("name", nargs="?", default="model-signing", metavar="NAME")
    sign = commands.add_parser(
        "sign", epilog=EXIT_CODES, help="sign a model file or folder (OpenSSF model signing)",
        description="Record every file's SHA-256 and sign the list in the OpenSSF model signing "
                    "format (a Sigstore bundle). A folder's signature is FOLDER/model.sig, a "
                    f"file's FILE.sig. An encrypted key's password is read from "
                    f"${PASSWORD_VARIABLE}.")
    sign.add_argument("path", type=Path, metavar="PATH")
    sign.add_argument("--key", type=Path, required=True, metavar="PRIVATE.pem")
    sign.add_argument("--certificate", type=Path, metavar="CHAIN.pem",
                      help="certificate mode: the key's certificate, then its chain (PEM)")
    sign.add_argument("--signature", type=Path, metavar="SIG", help="where to write it")
    verify = commands.add_parser(
        "verify", epilog=EXIT_CODES, help="check a model against its signature",
        description="Check the signature with the public key (or the trusted root "
                    "certificates), then every file: any changed, added or removed file is a "
                    "finding that names it. Exit code 1 when anything fails.")
    verify.add_argument("path", type=Path, metavar="PATH")
    trust = verify.add_mutually_exclusive_group(required=True)
    trust.add_argument("--key", type=Path, metavar="PUBLIC.pem")
    trust.add_argument("--root-certificates", type=Path, metavar="ROOTS.pem",
                       help="certificate mode: the roots you trust (PEM)")
    verify.add_argument("--signature", type=Path, metavar="SIG")
    for parser in (sign, verify):
        parser.add_argument("-f", "--format", choices=render.names(),
                            default="text")
        parser.add_argument("-o", "--output", type=Path)
    verify.add_argument("--fail-on", choices=SEVERITIES, default="high")


def run(args) -> int:
    from .. import api

    if args.command == "keygen":
        return _keygen(args)
    try:
        if args.command == "sign":
            _report_is_not_the_signature(args)
            password = os.environ.get(PASSWORD_VARIABLE)
            report = api.sign(args.path, args.key, args.signature, args.certificate,
                              password.encode() if password else None)
        else:
            report = api.verify(args.path, args.key, args.signature, args.root_certificates)
    except api.InputError as exc:
        raise UserError(str(exc)) from None
    emit(report, args.format, args.output, Severity.LOW)
    return report.exit_code(Severity.parse(getattr(args, "fail_on", "high")))


def _report_is_not_the_signature(args) -> None:
    from ..provenance.paths import default_signature

    signature = args.signature or default_signature(Path(args.path))
    if args.output is not None and Path(os.path.abspath(args.output)) == \
            Path(os.path.abspath(signature)):
        raise UserError(f"{args.output}: -o would overwrite the signature {signature}")


def _keygen(args) -> int:
    try:
        from ..provenance import keys
    except ImportError as exc:
        raise UserError(f"keygen needs {exc.name}: pip install 'trojanscope[sign]'") \
            from None
    private, public = Path(f"{args.name}.pem"), Path(f"{args.name}.pub.pem")
    try:
        hint = keys.generate(private, public)
    except keys.KeyMaterialError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {private} (private: keep it secret) and {public} (public)")
    print(f"key hint {hint}")
    return 0
