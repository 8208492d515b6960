"""The API's `ombre` commands: `token create|list|revoke`, `audit` (the audit log) and
`api` (serve the API)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from api.tokens import Role, create_token, first_admin_token, list_tokens, revoke_token
from ombre.cli_common import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, setup_logging, utc_time
from ombre.shadow_cli import config_of, store_of, with_config
from shadow import audit
from shadow.calendar import from_ns, to_ns


def cmd_token(args: argparse.Namespace) -> int:
    """Creates a token (printed once), lists tokens, or revokes one."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    with store_of(config) as store:
        if args.action == "create":
            if not args.name:
                print("ombre token create: give --name (who or what uses it)", file=sys.stderr)
                return EXIT_USAGE
            sites = [site.id for site in config.sites]
            if args.site is not None and args.site not in sites:
                print(f"ombre token create: no site {args.site!r} in the config; its "
                      f"sites: {', '.join(sites)}", file=sys.stderr)
                return EXIT_USAGE
            try:
                text = create_token(store.engine, args.name, Role[args.role.upper()],
                                    kiosk=args.kiosk, site=args.site)
            except ValueError as exc:
                print(f"ombre token create: {exc}", file=sys.stderr)
                return EXIT_USAGE
            print(text)
            kind = "kiosk (viewer)" if args.kiosk else args.role
            seen = f" that sees site {args.site!r} only" if args.site else ""
            print(f"a {kind} token for {args.name!r}{seen}: it is shown only this once"
                  + ("; open /wall#token=... with it on the display" if args.kiosk else ""),
                  file=sys.stderr)
            return EXIT_OK
        if args.action == "revoke":
            if args.id is None or not revoke_token(store.engine, args.id):
                print(f"ombre token revoke: no active token {args.id}", file=sys.stderr)
                return EXIT_USAGE
            print(f"token {args.id} revoked")
            return EXIT_OK
        for found in list_tokens(store.engine):
            revoked = "" if found.revoked_ns is None else \
                f"\trevoked {from_ns(found.revoked_ns).isoformat()}"
            role = "viewer, kiosk" if found.kiosk else found.role.name.lower()
            role += f", site {found.site}" if found.site else ""
            print(f"{found.id}\t{found.name}\t{role}\t"
                  f"created {from_ns(found.created_ns).isoformat()}{revoked}")
    return EXIT_OK


def cmd_api(args: argparse.Namespace) -> int:
    """Serves the API on the configured host and port until Ctrl-C. With no token in
    the database yet, it creates an admin token in <data_dir>/first-admin-token."""
    import uvicorn  # noqa: PLC0415 - only this command serves

    from api.app import create_app  # noqa: PLC0415
    from api.connections import http_protocol  # noqa: PLC0415

    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    setup_logging(args.log_level)
    with store_of(config) as store:
        first_admin_token(store.engine, config.data_dir)
    print(f"Ombre API on http://{config.api.host}:{config.api.port}/docs", file=sys.stderr)
    app = create_app(config)
    uvicorn.run(app, host=config.api.host, port=config.api.port, log_level=args.log_level,
                http=http_protocol(app))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """Prints the audit log, oldest first: time, actor, action, target, details."""
    config = config_of(args)
    if config is None:
        return EXIT_CONFIG
    since = args.since or datetime.now(UTC) - timedelta(days=7)
    with store_of(config) as store:
        found = audit.entries(store.engine, since_ns=to_ns(since), action=args.action,
                              limit=args.limit)
    for entry in reversed(found):
        print(f"{from_ns(entry.ts_ns).isoformat()}\t{entry.actor}\t{entry.action}\t"
              f"{entry.target}\t{json.dumps(entry.details, sort_keys=True)}")
    if len(found) == args.limit:
        print(f"ombre audit: only the newest {args.limit} entries (--limit)", file=sys.stderr)
    return EXIT_OK


def add_api_commands(commands: Any) -> None:
    add: Callable[..., argparse.ArgumentParser] = commands.add_parser
    token = with_config(add("token", help="API tokens: create, list, revoke"))
    token.add_argument("action", choices=["create", "list", "revoke"])
    token.add_argument("id", type=int, nargs="?", help="token id (revoke)")
    token.add_argument("--role", choices=[r.name.lower() for r in Role], default="viewer")
    token.add_argument("--name", help="create: who or what uses the token")
    token.add_argument("--kiosk", action="store_true",
                       help="create: a viewer token for a wall display (/wall)")
    token.add_argument("--site", help="create: the one site the token sees (a viewer's or "
                                      "an operator's); by default the whole plant")
    token.set_defaults(command=cmd_token)

    log = with_config(add("audit", help="who did what: tokens, alerts, downtime reasons, "
                                        "jobs, orders imports, trusted and refused certificates"))
    log.add_argument("--since", type=utc_time, metavar="TIME",
                     help="RFC 3339 (default: 7 days ago)")
    log.add_argument("--action", choices=sorted(audit.ACTIONS))
    log.add_argument("--limit", type=int, default=1000, help="newest entries shown (1000)")
    log.set_defaults(command=cmd_audit)

    api = with_config(add("api", help="serve the API until Ctrl-C"))
    api.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    api.set_defaults(command=cmd_api)
