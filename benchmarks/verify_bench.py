"""``TokenVerifier.verify`` against the floor, python-jose and PyJWT; the token cache; key-set size.

The floor for one token is what no verifier can skip: ``cryptography``'s check of the same
signature (HMAC for HS*), plus ``base64.urlsafe_b64decode`` of the three segments and
``json.loads`` of header and payload. Keys and padding objects are built once, outside the loop.
"""

from __future__ import annotations

import base64
import hmac
import inspect
import json
import warnings
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jwt_guard import Issuer, IssuerTemplate, TokenVerifier
from jwt_guard.testing import generate_key

from ._fixtures import MAIN_ALGS, Bench, alg_of
from ._report import Row, verdict
from ._timing import Stats, calibrate, cycle, fmt_us, interleave, loop, paired_ratio

_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_JOSE_NATIVE = frozenset(  # python-jose has no PS*, ES256K or EdDSA
    ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
)
SECTION = "verify (fresh token, token cache off)"
DEFAULT_SECTION = "verify (fresh token, default configuration: token cache on)"
DEFAULT_ALGS = ("RS256", "HS256")


def signature_check(name: str, private_key: Any) -> Callable[[bytes, bytes], Any]:
    """The bare ``cryptography`` (or ``hmac``) check of one signature for algorithm ``name``."""
    alg = alg_of(name)
    if alg.startswith("HS"):
        secret, digest = private_key, "sha" + alg[2:]
        compare, mac = hmac.compare_digest, hmac.digest

        def check_hs(sig: bytes, msg: bytes) -> Any:
            if not compare(mac(secret, msg, digest), sig):
                raise ValueError("bad signature")

        return check_hs
    public = private_key.public_key()
    if alg.startswith(("RS", "PS")):
        h = _HASH[alg[2:]]()
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg.startswith("RS")
            else padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        )

        def check_rsa(sig: bytes, msg: bytes) -> Any:
            public.verify(sig, msg, pad, h)

        return check_rsa
    if alg.startswith("ES"):
        ecdsa = ec.ECDSA(_HASH[alg[2:5]]())
        size = (public.curve.key_size + 7) // 8

        def check_ec(sig: bytes, msg: bytes) -> Any:
            r = int.from_bytes(sig[:size], "big")
            s = int.from_bytes(sig[size:], "big")
            public.verify(encode_dss_signature(r, s), msg, ecdsa)

        return check_ec

    def check_ed(sig: bytes, msg: bytes) -> Any:
        public.verify(sig, msg)

    return check_ed


def floor_fn(check: Callable[[bytes, bytes], Any]) -> Callable[[str], Any]:
    """Split, base64url-decode the three segments, JSON-decode header and payload, check."""
    b64, loads = base64.urlsafe_b64decode, json.loads

    def floor(token: str) -> Any:
        h, p, s = token.split(".")
        loads(b64(h + "=" * (-len(h) % 4)))
        claims = loads(b64(p + "=" * (-len(p) % 4)))
        check(b64(s + "=" * (-len(s) % 4)), token[: len(h) + 1 + len(p)].encode("ascii"))
        return claims

    return floor


def _jose_fn(bench: Bench, name: str) -> Callable[[str], Any] | None:
    if name not in _JOSE_NATIVE:
        return None
    alg = name
    from jose import jwk as jose_jwk
    from jose import jwt as jose_jwt

    key = jose_jwk.construct(bench.keys[name].public_jwk(), alg)
    aud, iss = bench.issuer.audience, bench.issuer.issuer

    def jose_decode(token: str) -> Any:
        return jose_jwt.decode(token, key, algorithms=[alg], audience=aud, issuer=iss)

    return jose_decode


def _pyjwt_fn(bench: Bench, name: str) -> Callable[[str], Any]:
    import jwt as pyjwt

    alg = alg_of(name)
    key = pyjwt.PyJWK(bench.keys[name].public_jwk()).key
    aud, iss = bench.issuer.audience, bench.issuer.issuer

    def pyjwt_decode(token: str) -> Any:
        return pyjwt.decode(token, key, algorithms=[alg], audience=aud, issuer=iss)

    return pyjwt_decode


def verifier_for(bench: Bench, names: tuple[str, ...], cache: int = 0, **kw: Any) -> TokenVerifier:
    return TokenVerifier(
        issuer=bench.issuer.issuer,
        audience=bench.issuer.audience,
        jwks=kw.pop("jwks", None) or bench.jwks_for(*names),
        algorithms=sorted({alg_of(n) for n in names}),
        token_cache_size=cache,
        **kw,
    )


def _measure(
    contenders: dict[str, Callable[[str], Any]], tokens: list[str], mode: Any, anchor: str
) -> dict[str, Stats]:
    for fn in contenders.values():  # every contender must accept every token
        for token in tokens:
            fn(token)
    n = calibrate(contenders[anchor], tokens, mode.batch_seconds, 20_000)
    items = cycle(tokens, max(n, len(tokens)) if not mode.quick else n)
    return interleave({k: loop(fn, items) for k, fn in contenders.items()}, mode.rounds)


def run_algorithms(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """One row per algorithm: verify / floor, with python-jose and PyJWT beside it."""
    mode = bench.mode
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for name in mode.algorithms:
        tokens = bench.mint(name, mode.pool)
        verifier = verifier_for(bench, (name,))
        contenders: dict[str, Callable[[str], Any]] = {
            "floor": floor_fn(signature_check(name, bench.keys[name].private_key)),
            "verify": verifier.verify,
        }
        jose_fn = _jose_fn(bench, name)
        if jose_fn is not None:
            contenders["python-jose"] = jose_fn
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyJWT's short-HMAC-key warning is not our business
            contenders["pyjwt"] = _pyjwt_fn(bench, name)
            stats = _measure(contenders, tokens, mode, "verify")
        floor, verify = stats["floor"], stats["verify"]
        ratio = verify.best / floor.best
        limit = 1.5 if alg_of(name).startswith("HS") else 1.25
        targeted = name in MAIN_ALGS
        others = {k: stats[k].best for k in ("python-jose", "pyjwt") if k in stats}
        note = ", ".join(f"{k} {fmt_us(v)} ({v / floor.best:.2f}x)" for k, v in others.items())
        raw[name] = {
            **{k: s.as_json() for k, s in stats.items()},
            "ratio": ratio,
            "paired_median_ratio": paired_ratio(verify, floor),
            "target": limit if targeted else None,
        }
        rows.append(
            Row(
                key=f"verify.{name}",
                section=SECTION,
                label=f"{name} verify vs floor",
                value=fmt_us(verify.best),
                baseline=fmt_us(floor.best),
                ratio=ratio,
                target=f"<= {limit}x" if targeted else "-",
                status=verdict(ratio <= limit) if targeted else "info",
                note=note if not targeted else "",
                data=raw[name],
            )
        )
        if targeted:
            for other, cost in others.items():
                rows.append(
                    Row(
                        key=f"verify.{name}.{other}",
                        section=SECTION,
                        label=f"{name} {other} decode (prebuilt key) vs floor",
                        value=fmt_us(cost),
                        baseline=fmt_us(floor.best),
                        ratio=cost / floor.best,
                        note=f"jwt_guard is {cost / verify.best:.2f}x faster",
                    )
                )
    results["algorithms"] = raw
    return rows


def run_cache_and_keys(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """A repeated token against a fresh RS256 verify; 1 key against 100 keys in the set; the
    multi-tenant rows (:func:`run_tenants`)."""
    mode = bench.mode
    tokens = bench.mint("RS256", mode.pool)
    fresh = verifier_for(bench, ("RS256",))
    cached = verifier_for(bench, ("RS256",), cache=4096)
    stats = _measure({"fresh": fresh.verify, "cached": cached.verify}, tokens, mode, "fresh")
    ratio = stats["cached"].best / stats["fresh"].best
    results["token_cache"] = {k: s.as_json() for k, s in stats.items()} | {"ratio": ratio}
    rows = [
        Row(
            key="cache.repeat",
            section="token cache",
            label="RS256 cached (repeat) vs RS256 fresh",
            value=fmt_us(stats["cached"].best),
            baseline=fmt_us(stats["fresh"].best),
            ratio=ratio,
            target="<= 0.1x",
            status=verdict(ratio <= 0.1),
        )
    ]

    decoys = [generate_key("ES256", f"decoy-{i}").public_jwk() for i in range(mode.decoys)]
    rs = bench.keys["RS256"].public_jwk()
    many_jwks = {"keys": [*decoys[: mode.decoys // 2], rs, *decoys[mode.decoys // 2 :]]}
    one = verifier_for(bench, ("RS256",), jwks={"keys": [rs]})
    many = TokenVerifier(
        issuer=bench.issuer.issuer,
        audience=bench.issuer.audience,
        jwks=many_jwks,
        algorithms=["RS256", "ES256"],
        token_cache_size=0,
    )
    stats = _measure({"1 key": one.verify, "100 keys": many.verify}, tokens, mode, "1 key")
    ratio = stats["100 keys"].best / stats["1 key"].best
    results["key_set_size"] = {k: s.as_json() for k, s in stats.items()} | {"ratio": ratio}
    rows.append(
        Row(
            key="keys.100_vs_1",
            section="key set size",
            label=f"RS256 verify, {len(many_jwks['keys'])} keys vs 1 key in the JWKS",
            value=fmt_us(stats["100 keys"].best),
            baseline=fmt_us(stats["1 key"].best),
            ratio=ratio,
            target="within 10%",
            status=verdict(abs(ratio - 1) <= 0.10),
        )
    )
    rows.extend(run_tenants(bench, results))
    return rows


def run_default_configuration(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """Every token new, through a verifier built as a user builds it (token cache on).

    A fresh token then also pays for a cache miss and an insert. Each batch walks more distinct
    tokens than the cache holds, in the same order every time, so every call misses (first in,
    first out or least recently used alike). The full run uses the default cache size; the quick
    run a 64-entry cache, so that it mints few tokens (the cost per call is the same).
    """
    mode = bench.mode
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    default_size = inspect.signature(TokenVerifier).parameters["token_cache_size"].default
    size = 64 if mode.quick else int(default_size)
    for name in DEFAULT_ALGS:
        if name not in mode.algorithms:
            continue
        tokens = bench.mint(name, size + max(size // 8, 8))
        default = verifier_for(bench, (name,), cache=size)
        floor = floor_fn(signature_check(name, bench.keys[name].private_key))
        contenders = {"floor": floor, "default": default.verify}
        for fn in contenders.values():
            for token in tokens:
                fn(token)
        stats = interleave({k: loop(fn, tokens) for k, fn in contenders.items()}, mode.rounds)
        ratio = stats["default"].best / stats["floor"].best
        limit = 1.5 if name.startswith("HS") else 1.25
        raw[name] = {k: st.as_json() for k, st in stats.items()} | {
            "ratio": ratio,
            "cache_size": size,
            "target": limit,
        }
        rows.append(
            Row(
                key=f"default.{name}",
                section=DEFAULT_SECTION,
                label=f"{name} verify, default config (every token new) vs floor",
                value=fmt_us(stats["default"].best),
                baseline=fmt_us(stats["floor"].best),
                ratio=ratio,
                target=f"<= {limit}x",
                status=verdict(ratio <= limit),
                note=f"token cache of {size} entries, every call a miss and an insert",
                data=raw[name],
            )
        )
    results["default_configuration"] = raw
    return rows


TENANTS_SECTION = "multi-tenant issuers (IssuerTemplate)"


def run_tenants(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """Templates cost nothing where they are not used, and little where they are.

    Three RS256 comparisons, token cache off unless said: a token of an exact issuer in a
    verifier that also holds templates against one without (the exact path must not notice
    them); a token an Entra-shaped template admits (tid claim, GUID pattern, an allow list of
    1000 tenants, v1 and v2 templates) against the same token shape from an exact issuer; and a
    repeated templated token from the token cache against a repeated exact one.
    """
    mode = bench.mode
    jwks = bench.jwks_for("RS256")
    base = bench.issuer.url
    audience = bench.issuer.audience
    tenants = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(1000)]
    tenant = tenants[500]
    templated_iss = f"{base}/{tenant}/v2.0"

    def template(exact_too: bool = False, cache: int = 0) -> TokenVerifier:
        shape = IssuerTemplate(
            [f"{base}/{{tid}}/v2.0", f"{base}/sts/{{tid}}/"],
            audience,
            tenants=set(tenants),
            tenant_pattern=IssuerTemplate.ENTRA_TENANT_PATTERN,
            jwks=jwks,
        )
        exact = [Issuer(bench.issuer.issuer, audience, jwks=jwks)] if exact_too else []
        return TokenVerifier(issuers=[*exact, shape], token_cache_size=cache)

    def exact_only(iss: str, cache: int = 0) -> TokenVerifier:
        return TokenVerifier(issuer=iss, audience=audience, jwks=jwks, token_cache_size=cache)

    plain = bench.mint("RS256", mode.pool)
    shaped = bench.mint("RS256", mode.pool, issuer=templated_iss, claims={"tid": tenant})
    rows: list[Row] = []
    raw: dict[str, Any] = {}

    def compare(
        key: str,
        label: str,
        contenders: dict[str, Any],
        tokens: list[str],
        target: tuple[str, Callable[[float], bool]] | None,
        note: str = "",
    ) -> None:
        stats = _measure(contenders, tokens, mode, "baseline")
        ratio = stats["subject"].best / stats["baseline"].best
        raw[key] = {k: st.as_json() for k, st in stats.items()} | {"ratio": ratio}
        rows.append(
            Row(
                key=f"tenants.{key}",
                section=TENANTS_SECTION,
                label=label,
                value=fmt_us(stats["subject"].best),
                baseline=fmt_us(stats["baseline"].best),
                ratio=ratio,
                target=target[0] if target else "-",
                status=verdict(target[1](ratio)) if target else "info",
                note=note,
            )
        )

    compare(
        "exact_beside_templates",
        "RS256 verify, exact issuer, templates also configured vs none",
        {"baseline": exact_only(bench.issuer.issuer).verify, "subject": template(True).verify},
        plain,
        ("within 5%", lambda r: abs(r - 1) <= 0.05),
        "templates are tried only after every exact issuer missed",
    )
    compare(
        "template_vs_exact",
        "RS256 verify, templated issuer (1000 tenants) vs exact issuer",
        {"baseline": exact_only(templated_iss).verify, "subject": template().verify},
        shaped,
        ("<= 1.1x", lambda r: r <= 1.1),
        "tid claim, issuer lookup (the tenant's first token: pattern, fill, allow list too)",
    )
    compare(
        "cached",
        "RS256 cached (repeat), templated issuer vs exact issuer",
        {
            "baseline": exact_only(templated_iss, cache=4096).verify,
            "subject": template(cache=4096).verify,
        },
        shaped,
        None,
        "a cache hit never looks at the issuer",
    )
    results["tenants"] = raw
    return rows
