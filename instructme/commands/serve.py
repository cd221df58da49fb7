"""``instructme serve``: the web studio (upload, instruct, listen and compare in a browser)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from instructme.errors import InstructMEError


def _cmd_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise InstructMEError(f"--port must be in 0..65535, got {args.port}")
    for flag, value in (("--max-upload-mb", args.max_upload_mb),
                        ("--max-seconds", args.max_seconds),
                        ("--max-age-minutes", args.max_age_minutes)):
        if not value > 0:
            raise InstructMEError(f"{flag} must be positive, got {value:g}")
    if args.max_queue < 1:
        raise InstructMEError("--max-queue must be at least 1")
    examples = Path(args.examples) if args.examples is not None else None
    if examples is not None and not examples.is_dir():
        raise InstructMEError(f"{examples}: examples folder not found")
    if args.demo and args.model is not None:
        raise InstructMEError("--demo and --model exclude each other")
    if args.max_clips < 1 or not args.max_store_mb > 0:
        raise InstructMEError("--max-clips and --max-store-mb must be positive")

    from instructme.web.app import DEFAULT_EXAMPLES_DIR, StudioSettings, create_app, open_pipeline
    from instructme.web.server import bind, is_loopback, serve

    settings = StudioSettings(  # the edit settings' defaults are the pipeline folder's
        max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
        examples_dir=examples if examples is not None else DEFAULT_EXAMPLES_DIR,
        max_age_s=args.max_age_minutes * 60.0, max_queue=args.max_queue, demo=args.demo,
        bound_host=args.host, extra_hosts=tuple(args.allowed_host),
        max_clips=args.max_clips, max_store_mb=args.max_store_mb)
    try:
        hosts = settings.allowed_hosts
    except ValueError as e:
        raise InstructMEError(f"--allowed-host: {e}") from None
    sock = bind(args.host, args.port)  # first: a busy port leaves nothing behind
    try:
        pipe, settings.model_name = open_pipeline(args.model, demo=args.demo)
        app = create_app(pipe, settings)
    except BaseException:
        sock.close()
        raise
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this address can "
              "upload audio and run edits (there is no login); the studio answers only the "
              f"host names {', '.join(hosts)} (add more with --allowed-host)", file=sys.stderr)

    def announce(url: str) -> None:
        print(f"instructme studio: {url}/  (model: {settings.model_name}; Ctrl-C stops)",
              file=sys.stderr, flush=True)

    serve(app, sock, log_level="warning" if args.quiet else "info", announce=announce)
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="web studio: upload, instruct, listen and compare")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another Host name the studio answers (repeatable; e.g. its name "
                        "behind a proxy). By default only the --host address and "
                        "localhost/127.0.0.1/[::1]")
    s.add_argument("--model", default=None,
                   help="pipeline folder (default: $INSTRUCTME_MODEL or models/instructme-small)")
    s.add_argument("--demo", action="store_true",
                   help="use an untrained tiny model (tries the page; its output is noise)")
    s.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload (MB)")
    s.add_argument("--max-seconds", type=float, default=60.0, help="longest clip (seconds)")
    s.add_argument("--examples", default=None,
                   help="folder of example *.wav clips (default: examples/ if present)")
    s.add_argument("--max-age-minutes", type=float, default=60.0,
                   help="clips unused this long are deleted")
    s.add_argument("--max-queue", type=int, default=16, help="most edits waiting at once")
    s.add_argument("--max-clips", type=int, default=500,
                   help="most clips held (the least recently used go first)")
    s.add_argument("--max-store-mb", type=float, default=2048.0,
                   help="most audio held on disk (MB)")
    s.add_argument("--quiet", action="store_true", help="log warnings only")
    s.set_defaults(func=_cmd_serve)
