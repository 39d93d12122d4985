"""``jwt-guard dpop-proof`` and the DPoP key file ``jwt-guard mint --dpop-key`` binds tokens to.

A DPoP key file holds one private JWK with its ``alg`` (written mode 0600, for local testing):
the client's key. ``mint --dpop-key FILE`` puts its RFC 7638 thumbprint into the token's
``cnf.jkt``; ``dpop-proof --dpop-key FILE --url URL --token TOKEN`` signs the proof a request
with that token needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..binding.mtls import load_certificate
from ..errors import CertificateBindingMismatch, ConfigurationError
from ..testing.dpop import DPoPKey
from ._commands import Failure, json_out, out, read_token
from ._keyfile import private_jwk, signing_key

__all__ = ["DEFAULT_DPOP_ALG", "dpop_key", "read_certificate", "run_dpop_proof"]

DEFAULT_DPOP_ALG = "ES256"


def dpop_key(path: str, alg: str | None) -> DPoPKey:
    """The key in ``path``, or a new one for ``alg`` (default ES256) saved there."""
    file = Path(path)
    if file.exists():
        try:
            key = DPoPKey(signing_key(json.loads(file.read_text(encoding="utf-8"))))
        except (OSError, ValueError, ConfigurationError) as exc:
            raise Failure(
                f"DPoP key file {path!r}: not one private JWK with 'alg' ({exc})"
            ) from exc
        if alg is not None and alg != key.alg:
            raise Failure(
                f"DPoP key file {path!r} holds an {key.alg} key, not {alg}; drop --dpop-alg "
                "or use another file"
            )
        return key
    try:
        key = DPoPKey.generate(alg or DEFAULT_DPOP_ALG)
    except ConfigurationError as exc:
        raise Failure(f"--dpop-alg: {exc}") from exc
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(private_jwk(key.signing_key), handle, indent=2)
        handle.write("\n")
    print(f"created DPoP key {path} ({key.alg}, jkt {key.jkt})", file=sys.stderr)
    return key


def read_certificate(path: str) -> bytes:
    """The DER bytes of a client certificate file in PEM or DER (``mint --cert``)."""
    try:
        return load_certificate(Path(path).read_bytes())
    except OSError as exc:
        raise Failure(f"--cert {path!r}: {exc.strerror or exc}") from exc
    except CertificateBindingMismatch as exc:
        raise Failure(f"--cert {path!r}: {exc.detail}") from exc


def run_dpop_proof(args: argparse.Namespace) -> int:
    """``jwt-guard dpop-proof``: print a fresh proof for one request."""
    key = dpop_key(args.dpop_key, args.dpop_alg)
    token = read_token(args.token) if args.token is not None else None
    if token is not None and token[:5].lower() == "dpop ":
        token = token[5:].strip()
    proof = key.proof(args.method, args.url, access_token=token, nonce=args.nonce)
    if args.json:
        headers = {"DPoP": proof}
        if token is not None:
            headers = {"Authorization": f"DPoP {token}", **headers}
        json_out({"proof": proof, "jkt": key.jkt, "alg": key.alg, "headers": headers})
    else:
        out(proof)
    return 0
