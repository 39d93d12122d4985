"""``jwt-guard mint`` and ``jwt-guard issuer``: a local issuer whose keys live in a key file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._commands import Failure, json_out, out, parse_duration, wait_forever
from ._keyfile import KeyFile
from .testing import LocalIssuer
from .testing._state import pin_port, use_keys

__all__ = ["DEFAULT_AUDIENCE", "DEFAULT_PORT", "run_issuer", "run_mint"]

DEFAULT_PORT = 8765
DEFAULT_AUDIENCE = "https://api.example.test"


def _keyfile(args: argparse.Namespace) -> tuple[KeyFile, bool]:
    """Load ``--key-file``, or create it (throwaway keys without one); ``(keys, created)``."""
    path = Path(args.key_file) if args.key_file else None
    if path is not None and path.exists():
        keyfile = KeyFile.load(path)
        if args.port is not None and args.port != keyfile.port:
            raise Failure(
                f"key file {str(path)!r} belongs to {keyfile.issuer}; "
                "drop --port or use another --key-file"
            )
        return keyfile, False
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    port = DEFAULT_PORT if args.port is None else args.port
    if not 0 < port < 65536:
        raise Failure("--port must be between 1 and 65535")
    keyfile = KeyFile.create(
        f"http://127.0.0.1:{port}", args.audience or DEFAULT_AUDIENCE, algorithms
    )
    if path is not None:
        keyfile.save(path)
    return keyfile, True


def _issuer_for(keyfile: KeyFile) -> LocalIssuer:
    """A (not yet started) issuer holding the key file's keys, pinned to its port."""
    issuer = LocalIssuer(algorithms=(keyfile.keys[0].alg,), audience=keyfile.audience)
    use_keys(issuer, keyfile.keys)
    pin_port(issuer, keyfile.port)
    return issuer


def _claim(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise Failure(f"--claim {text!r}: write NAME=VALUE")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def run_mint(args: argparse.Namespace) -> int:
    """``jwt-guard mint``: print a token signed with the key file's keys."""
    keyfile, created = _keyfile(args)
    issuer = _issuer_for(keyfile)
    audience: Any = keyfile.audience
    if args.aud:
        audience = args.aud[0] if len(args.aud) == 1 else args.aud
    try:
        token = issuer.mint(
            dict(_claim(c) for c in args.claim),
            alg=args.alg,
            subject=args.sub,
            audience=audience,
            scopes=args.scope,
            expires_in=parse_duration(args.expires_in),
            issuer=keyfile.issuer,
        )
    except LookupError as exc:
        raise Failure(f"{exc.args[0]}; the key file has no such key") from None
    if not args.key_file:
        print("note: throwaway keys, so nothing can verify this; use --key-file", file=sys.stderr)
    elif created:
        print(f"created {args.key_file} for issuer {keyfile.issuer}", file=sys.stderr)
    if args.json:
        json_out({"token": token, "issuer": keyfile.issuer, "jwks": issuer.jwks()})
    else:
        out(token)
    return 0


def run_issuer(args: argparse.Namespace) -> int:
    """``jwt-guard issuer``: serve discovery and JWKS on 127.0.0.1 until Ctrl-C."""
    keyfile, created = _keyfile(args)
    issuer = _issuer_for(keyfile)
    try:
        issuer.start()
    except OSError as exc:
        raise Failure(f"cannot listen on 127.0.0.1:{keyfile.port}: {exc.strerror}") from None
    with issuer:
        sample = issuer.mint(expires_in=3600)
        if args.json:
            json_out(
                {
                    "issuer": issuer.issuer,
                    "audience": keyfile.audience,
                    "discovery_url": issuer.discovery_url,
                    "jwks_url": issuer.jwks_url,
                    "kids": [key.kid for key in keyfile.keys],
                    "sample_token": sample,
                }
            )
        else:
            _describe(issuer, keyfile, args.key_file, created, sample)
        wait_forever()
    return 0


def _describe(
    issuer: LocalIssuer, keyfile: KeyFile, path: str | None, created: bool, sample: str
) -> None:
    where = f"{'created' if created else 'loaded'} {path}" if path else "throwaway keys"
    out(f"issuer     {issuer.issuer}   ({where})")
    out(f"discovery  {issuer.discovery_url}")
    out(f"jwks       {issuer.jwks_url}")
    out(f"audience   {keyfile.audience}")
    out(f"\na token valid for 1 h:\n{sample}\n")
    if path:
        out(f"more:    jwt-guard mint --key-file {path} --scope read:items")
    out(f"verify:  jwt-guard verify TOKEN --issuer {issuer.issuer} --audience {keyfile.audience}")
    out("\nPress Ctrl-C to stop.")
