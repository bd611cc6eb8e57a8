"""The platform: serve (the web service and its workers), its tokens and users, and a worker."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .common import UserError

NAMES = ("serve", "worker")
ROLES = ("viewer", "reviewer", "admin")


def add(commands) -> None:
    serve = commands.add_parser(
        "serve", help="the platform: a web service where uploads are checked and remembered",
        description="Serve the API (/api/v1, /docs) and the pages on HOST:PORT, with N worker "
                    "processes that run the checks. SQLite under --data-dir unless --db names "
                    "a PostgreSQL database.")
    _where(serve, required=False)  # required, but also accepted after the action's name
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes started with the server (0: run `trojanscope "
                            "worker` yourself)")
    serve.add_argument("--max-upload", type=int, default=2048, metavar="MB",
                       help="uploads larger than this are refused (413)")
    _lease(serve)
    _ray(serve)
    actions = serve.add_subparsers(dest="action", metavar="ACTION")
    token = actions.add_parser("create-token", help="print a new API token for a user")
    _where(token, required=False, inner=True)
    token.add_argument("--role", choices=ROLES, required=True)
    token.add_argument("--user", default=None,
                       help="whose token (made if new; default: a user named after the role)")
    user = actions.add_parser("create-user", help="add a user who logs in with a password "
                                                  "(read from TROJANSCOPE_PASSWORD or stdin); "
                                                  "again: a new password, old sessions end")
    _where(user, required=False, inner=True)
    user.add_argument("name")
    user.add_argument("--role", choices=ROLES, required=True)
    revoke = actions.add_parser("revoke", help="take back every API token and session of a user")
    _where(revoke, required=False, inner=True)
    revoke.add_argument("name")

    worker = commands.add_parser("worker", help="run the platform's checks (claims jobs from "
                                                "the database)")
    _where(worker)
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty")
    _lease(worker)
    _ray(worker)


def _where(parser, required: bool = True, inner: bool = False) -> None:
    """--data-dir and --db; `inner` (an action of serve): given there or before the action's
    name (SUPPRESS: the action's parser must not reset what serve's read)."""
    default = argparse.SUPPRESS if inner else None
    parser.add_argument("--data-dir", type=Path, required=required, metavar="D",
                        default=default, help="where uploads (and the SQLite database) are kept")
    parser.add_argument("--db", metavar="URL", default=default,
                        help="postgresql://user@host:port/name (default: SQLite in the data "
                             "folder)")


def _ray(parser) -> None:
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="run vet and inspect as tasks on the Ray cluster at ADDRESS "
                             "(host:port; inspect on a GPU where the cluster has one)")


def _lease(parser) -> None:
    parser.add_argument("--lease", type=float, default=60.0, metavar="SECONDS",
                        help="how long a worker holds a job between renewals; a job whose "
                             "worker died runs again after this")


def run(args: argparse.Namespace) -> int:
    if args.data_dir is None:
        raise UserError("serve needs --data-dir D: where uploads and the database are kept")
    try:
        from ..serve.db import open_database
    except ImportError as exc:
        raise UserError(f"serve needs {exc.name}: pip install 'trojanscope[serve]'") from None
    try:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        sessions = open_database(args.data_dir, args.db)
    except OSError as exc:
        raise UserError(f"{args.data_dir}: {exc.strerror or exc}") from None
    except Exception as exc:  # the database cannot be reached or read
        raise UserError(f"the database: {str(exc).splitlines()[0]}") from None
    if getattr(args, "ray", None) and (args.command == "worker" or args.action is None):
        _check_ray(args.ray)
    if args.command == "worker":
        import logging

        from ..api import InputError
        from ..serve.worker import run_worker

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            run_worker(args.data_dir, args.db, once=args.once, lease=args.lease, ray=args.ray)
        except InputError as exc:
            raise UserError(str(exc)) from None
        return 0
    if args.action == "create-token":
        return _create_token(sessions, args)
    if args.action == "create-user":
        return _create_user(sessions, args)
    if args.action == "revoke":
        return _revoke(sessions, args)
    return _serve(args, sessions)


def _check_ray(address: str) -> None:
    """Ray installed and the cluster answering, before any worker starts."""
    from ..api import InputError
    from ..cluster.ray_scan import need_ray, reachable

    try:
        need_ray()
        reachable(address)
    except InputError as exc:
        raise UserError(str(exc)) from None


def _create_token(sessions, args) -> int:
    from ..serve import auth

    with sessions() as db:
        user = auth.user_named(db, args.user or args.role, args.role)
        if user.role != args.role:
            raise UserError(f"user {user.name!r} is a {user.role}, not a {args.role}")
        token = auth.new_token(db, user)
        db.commit()
    print(token)
    return 0


def _create_user(sessions, args) -> int:
    from ..serve import auth

    password = os.environ.get("TROJANSCOPE_PASSWORD") or sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise UserError("a password of at least 8 characters, from TROJANSCOPE_PASSWORD or "
                        "stdin")
    with sessions() as db:
        user = auth.user_named(db, args.name, args.role, password)
        user.role = args.role
        db.commit()
    print(f"user {args.name} ({args.role}) can log in")
    return 0


def _revoke(sessions, args) -> int:
    from sqlalchemy import select

    from ..serve import auth
    from ..serve.db import User

    with sessions() as db:
        user = db.scalar(select(User).where(User.name == args.name))
        if user is None:
            raise UserError(f"no user named {args.name!r}")
        count = auth.revoke(db, user)
        db.commit()
    print(f"took back {count} token(s) and session(s) of {args.name}")
    return 0


def _serve(args, sessions) -> int:
    import uvicorn

    from ..serve.app import Settings, create_app
    from ..serve.worker import WorkerPool

    app = create_app(Settings(args.data_dir, args.db, args.max_upload << 20), sessions)
    workers = WorkerPool(args.workers, args.data_dir, args.db, args.lease, args.ray)
    print(f"trojanscope serving on http://{args.host}:{args.port} (data in {args.data_dir}, "
          f"{args.workers} worker(s))", file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:  # when uvicorn returns; if it re-raises the signal, the workers see their
        workers.stop()  # parent gone and end themselves
    return 0
