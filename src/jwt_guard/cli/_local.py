"""``jwt-guard mint`` and ``jwt-guard issuer``: a local issuer whose keys live in a key file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..testing import LocalIssuer
from ._commands import Failure, json_out, listen_failure, out, parse_duration, wait_forever
from ._dpop import dpop_key, read_certificate
from ._keyfile import KeyFile

__all__ = ["DEFAULT_AUDIENCE", "DEFAULT_PORT", "run_issuer", "run_mint"]

DEFAULT_PORT = 8765
DEFAULT_AUDIENCE = "https://api.example.test"


def _keyfile(args: argparse.Namespace) -> tuple[KeyFile, bool]:
    """Load ``--key-file``, or make new keys (saved by the caller); ``(keys, created)``.

    A new key file holds a key for each of ``--algorithms`` and for ``--alg`` (``mint``), so
    ``mint --alg HS256`` works: the new file holds a random HS256 secret.
    """
    path = Path(args.key_file) if args.key_file else None
    alg: str | None = getattr(args, "alg", None)
    if path is not None and path.exists():
        keyfile = KeyFile.load(path)
        if args.port is not None and args.port != keyfile.port:
            raise Failure(
                f"key file {str(path)!r} belongs to {keyfile.issuer}; "
                "drop --port or use another --key-file"
            )
        held = list(dict.fromkeys(key.alg for key in keyfile.keys))
        if alg is not None and alg not in held:
            raise Failure(
                f"key file {str(path)!r} has no {alg} key (it has {', '.join(held)}); "
                f"to mint {alg}, create a key file that has one: "
                f"jwt-guard mint --key-file {alg.lower()}-keys.json --alg {alg}"
            )
        return keyfile, False
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if alg is not None and alg not in algorithms:
        algorithms.append(alg)
    if not algorithms:
        raise Failure("--algorithms names no algorithm; write e.g. --algorithms RS256,ES256")
    port = DEFAULT_PORT if args.port is None else args.port
    keyfile = KeyFile.create(
        f"http://127.0.0.1:{port}", args.audience or DEFAULT_AUDIENCE, algorithms
    )
    return keyfile, True


def _issuer_for(keyfile: KeyFile) -> LocalIssuer:
    """A (not yet started) issuer holding the key file's keys, on its port."""
    return LocalIssuer(keys=keyfile.keys, audience=keyfile.audience, port=keyfile.port)


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
    claims = dict(_claim(c) for c in args.claim)
    lifetime = parse_duration(args.expires_in)
    certificate = read_certificate(args.cert) if args.cert else None
    if args.dpop_alg and not args.dpop_key:
        raise Failure("--dpop-alg needs --dpop-key FILE (the key the token is bound to)")
    keyfile, created = _keyfile(args)
    issuer = _issuer_for(keyfile)
    audience: Any = keyfile.audience
    if args.aud:
        audience = args.aud[0] if len(args.aud) == 1 else args.aud
    bound_to = dpop_key(args.dpop_key, args.dpop_alg) if args.dpop_key else None
    token = issuer.mint(
        claims,
        alg=args.alg,
        subject=args.sub,
        audience=audience,
        scopes=args.scope,
        expires_in=lifetime,
        issuer=keyfile.issuer,
        dpop_key=bound_to,
        certificate=certificate,
    )
    if created and args.key_file:
        keyfile.save(Path(args.key_file))
    if not args.key_file:
        print("note: throwaway keys, so nothing can verify this; use --key-file", file=sys.stderr)
    elif created:
        print(f"created {args.key_file} for issuer {keyfile.issuer}", file=sys.stderr)
    if args.json:
        document: dict[str, Any] = {"token": token, "issuer": keyfile.issuer, "jwks": issuer.jwks()}
        if bound_to is not None:
            document["jkt"] = bound_to.jkt
        json_out(document)
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
        if args.port is not None:
            option = "--port"
        elif created:
            option = "the default port; choose one with --port"
        else:
            option = f"the port of {args.key_file}"
        raise listen_failure(keyfile.port, option, exc) from None
    if created and args.key_file:  # only once it serves: the file names the port it listens on
        keyfile.save(Path(args.key_file))
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
    secret = [key.alg for key in keyfile.keys if key.kty == "oct"]
    if secret and path:
        out(f"         ({', '.join(secret)} secrets are never published: --key-file {path})")
    out("\nPress Ctrl-C to stop.")
