"""Multi-tenant issuers: ``IssuerTemplate`` and the verifier's side of it.

One template stands for many issuers of one shape, all signing with one key source: Microsoft
Entra ID (``https://login.microsoftonline.com/{tid}/v2.0``, one ``iss`` per tenant, one
``common`` key set), Auth0 organisations on their own custom domains, Keycloak realms behind one
host. The verifier tries templates only after every exact issuer has missed, so a verifier
without templates pays nothing for them.

A token is admitted by a template in this order, and refused at the first step it fails, before
any key is fetched or looked up:

1. its ``iss`` has the template's fixed text before and after the placeholder (which template,
   if several: exactly one may fit, else the token is refused);
2. the tenant value is taken from the token's own claim (``claim``, by default the placeholder's
   name: ``tid``), or, for ``claim="iss"``, cut out of ``iss`` between the fixed parts;
3. the value passes the tenant pattern (a GUID for Microsoft's hosts, else a conservative
   ``[A-Za-z0-9._-]`` name) and the rules no pattern can loosen: never empty, ASCII, no ``/``,
   ``\\``, ``@``, ``%``, ``:``, ``?``, ``#``, whitespace or control character, no ``..``;
4. the template filled with the value equals ``iss`` exactly (the claim and ``iss`` agree);
5. the tenant is allowed: in the ``tenants`` set (copied at construction), or a ``tenants``
   callable returns ``True`` (anything else, an exception or a timeout refuses: fail closed), or
   ``any_tenant=True`` was chosen explicitly.

Then the signature is checked with the template's key source (one for every tenant, or, with the
placeholder in the key URL, the admitted tenant's own) and the claims with the filled ``iss`` as
the expected issuer; ``Claims.tenant`` holds the tenant.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .._logsafe import exc_info, safe
from .._options import duration
from ..errors import ConfigurationError, InvalidToken, WrongIssuer
from ..sources.base import KeySource, check_key_source
from ..sources.options import JWKSOptions
from ..sources.static import StaticKeys
from ._issuers import (
    IssuerState,
    build_source,
    check_algorithms,
    check_flag,
    check_names,
    check_text,
    names,
)
from .claims import ClaimRules, _issuer_mismatch, _shown
from .jws import allowed_algorithms

__all__ = [
    "ENTRA_TENANT_PATTERN",
    "TENANT_PATTERN",
    "AwaitTenant",
    "IssuerTemplate",
    "Tenancy",
    "build_tenancy",
]

logger = logging.getLogger("jwt_guard.tenants")

TenantCheck = Callable[[str], "bool | Awaitable[bool]"]

TENANT_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?"
"""The default tenant pattern: 1 to 64 letters, digits, ``.``, ``_`` and ``-``, starting and
ending with a letter or digit (Keycloak realm names, Auth0 organisation names, slugs)."""

ENTRA_TENANT_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
"""A Microsoft Entra tenant ID (``tid``): a GUID in lower case, as Entra writes it in tokens.
The default pattern of templates on Microsoft's login hosts."""

# Hosts whose {tid} is an Entra tenant ID: public, US government and China clouds, v1 and v2.
_MICROSOFT_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.partner.microsoftonline.cn",
        "login.chinacloudapi.cn",
    }
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
# What no tenant value may hold, whatever its pattern says: it could move the filled-in issuer
# to another host, port, path, query or user (``/``, ``\``, ``@``, ``:``, ``?``, ``#``), smuggle
# an encoding (``%``), or break a log line or a URL (controls, whitespace, quotes, brackets).
_NEVER = frozenset('/\\@%:?#[]{}<>"`^| ')
_NEVER_SEARCH = re.compile("[" + "".join(re.escape(ch) for ch in sorted(_NEVER)) + "]").search
_MAX_VALUE = 255
_MAX_TENANT_SOURCES = 1024  # key sources kept for tenants a callable admitted (per template)
_MAX_STATES = 4096  # per-issuer verification states kept for admitted tenants (per template)


def _value_problem(value: str) -> str | None:
    """Why ``value`` can never be a tenant (``None`` when it may be one)."""
    if (
        0 < len(value) <= _MAX_VALUE
        and value.isascii()
        and value.isprintable()
        and _NEVER_SEARCH(value) is None
        and ".." not in value
        and value != "."
    ):
        return None  # the common case, in one pass of each check
    if not value:
        return "is empty"
    if len(value) > _MAX_VALUE:
        return f"is longer than {_MAX_VALUE} characters"
    if not value.isascii() or not value.isprintable():
        return "holds a non-ASCII or control character"
    if not _NEVER.isdisjoint(value):
        return "holds a character that could change the issuer's host or path"
    if ".." in value or value == ".":
        return "is or holds a dot segment"
    return None


@dataclass(frozen=True)
class _Shape:
    """One template string cut at its placeholder."""

    text: str
    prefix: str
    suffix: str
    placeholder: str
    fixed: int = 0  # len(prefix) + len(suffix)

    def fill(self, value: str) -> str:
        return self.prefix + value + self.suffix

    def cut(self, iss: str) -> str | None:
        """The value ``iss`` holds where the placeholder is, if ``iss`` has this shape."""
        size = len(iss)
        if size > self.fixed and iss.startswith(self.prefix) and iss.endswith(self.suffix):
            return iss[len(self.prefix) : size - len(self.suffix)]
        return None


def _shape(owner: str, text: object) -> _Shape:
    if not isinstance(text, str) or not text:
        raise ConfigurationError(
            f"{owner}(template=...): must be a non-empty string (or a list of them), e.g. "
            f"'https://login.microsoftonline.com/{{tid}}/v2.0', not {text!r:.80}"
        )
    found = list(_PLACEHOLDER.finditer(text))
    if len(found) != 1:
        raise ConfigurationError(
            f"{owner}(template={text!r:.100}): must hold exactly one placeholder such as "
            f"{{tid}}, found {len(found)}"
        )
    match = found[0]
    prefix, suffix = text[: match.start()], text[match.end() :]
    rest = prefix + suffix
    if "{" in rest or "}" in rest:
        raise ConfigurationError(
            f"{owner}(template={text!r:.100}): a brace outside the placeholder {match.group()}"
        )
    if not rest.isascii() or not rest.isprintable() or any(ch.isspace() for ch in rest):
        raise ConfigurationError(
            f"{owner}(template={text!r:.100}): must be printable ASCII without spaces"
        )
    if "://" in text and "://" not in prefix:
        raise ConfigurationError(
            f"{owner}(template={text!r:.100}): the placeholder cannot be in the scheme"
        )
    if not prefix:
        raise ConfigurationError(
            f"{owner}(template={text!r:.100}): the placeholder cannot start the issuer: the "
            "fixed text before it is what says which provider this is"
        )
    return _Shape(text, prefix, suffix, match.group(1), len(prefix) + len(suffix))


def _default_pattern(shapes: Sequence[_Shape]) -> str:
    hosts = {urlsplit(s.prefix).hostname for s in shapes if "://" in s.prefix}
    if hosts and hosts <= _MICROSOFT_HOSTS:
        return ENTRA_TENANT_PATTERN
    return TENANT_PATTERN


def _audience(owner: str, value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset([check_text(owner, "audience", value) or ""])
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigurationError(
            f"{owner}(audience=...): must be a string, a list of strings or None, "
            f"not {type(value).__name__!r}"
        )
    return frozenset(check_names(owner, "audience", value, empty=False) or ())


@dataclass(frozen=True, eq=False)
class IssuerTemplate:
    """Many issuers of one shape (one per tenant) sharing one key source: multi-tenant Entra ID,
    Auth0 organisations on custom domains, Keycloak realms behind one host.

    The placeholder of ``template`` is filled with the tenant the token names in its own claim
    (``claim``, by default the placeholder's name), after that value has passed a strict pattern;
    ``iss`` must then equal the filled-in template exactly, and the tenant must be allowed. A
    token of an unknown tenant is refused before any key is fetched. Exact issuers are tried
    first; a template is never a wildcard.

    Args:
        template: the issuer with one ``{name}`` placeholder, e.g.
            ``"https://login.microsoftonline.com/{tid}/v2.0"``; or a list of such templates with
            the same placeholder (Entra v1 and v2 tokens: ``"https://sts.windows.net/{tid}/"``
            too), sharing everything else.
        audience: accepted ``aud`` value(s), as for ``Issuer``; ``None`` turns the check off.
        tenants: the allowed tenants: a set of values (copied: a later change to yours does
            nothing), or a callable ``f(tenant) -> bool`` (sync or ``async def``) that returns
            ``True`` to allow. It sees a value that passed the pattern, from a token whose
            signature is not checked yet: keep it cheap (a cached lookup). Anything but
            ``True``, an exception, or (async) no answer within ``tenant_timeout`` refuses the
            token (401 ``wrong_issuer``; an exception is logged once per episode).
        any_tenant: accept every tenant whose value passes the pattern (instead of ``tenants``):
            for Entra, any organisation's users. Say so explicitly; it is never the default.
        claim: the claim holding the tenant (default: the placeholder's name, ``tid``).
            ``"iss"``: the tenant is cut out of ``iss`` itself between the template's fixed
            parts (Keycloak: no claim carries the realm).
        tenant_pattern: a regular expression a tenant value must match in full (default
            :data:`ENTRA_TENANT_PATTERN` on Microsoft's login hosts, else
            :data:`TENANT_PATTERN`). No pattern can admit an empty value, a non-ASCII or
            control character, ``/``, ``\\``, ``@``, ``%``, ``:``, ``?``, ``#`` or ``..``.
        jwks_url / jwks / discovery / key_source: the one key source every tenant shares: a
            JWKS URL (Entra: ``https://login.microsoftonline.com/common/discovery/v2.0/keys``),
            a static JWK Set, a discovery base URL whose
            ``/.well-known/openid-configuration`` names the ``jwks_uri`` (its ``issuer`` must
            be that URL or one of the templates, a placeholder matching any name: Entra's
            ``common`` document says ``{tenantid}``), or a ready key source. Exactly one. With
            the template's placeholder in ``jwks_url`` or ``discovery`` each tenant has its own
            key set instead (Keycloak realms), made only for admitted tenants (every listed one,
            or those a ``tenants`` callable admitted, at most 1024 kept); not with
            ``any_tenant``.
        algorithms / scope_claims / allow_remote_oct: as for ``Issuer``.
        tenant_timeout: how long an async ``tenants`` callable may take (default 5 s).

    Example::

        IssuerTemplate(
            "https://login.microsoftonline.com/{tid}/v2.0",
            audience="11111111-1111-1111-1111-111111111111",
            tenants={"00000000-0000-0000-0000-000000000001"},
            jwks_url="https://login.microsoftonline.com/common/discovery/v2.0/keys",
        )
    """

    ENTRA_TENANT_PATTERN: ClassVar[str] = ENTRA_TENANT_PATTERN
    TENANT_PATTERN: ClassVar[str] = TENANT_PATTERN

    template: str | Sequence[str]
    audience: str | Sequence[str] | None
    tenants: Collection[str] | TenantCheck | None = None
    any_tenant: bool = False
    claim: str | None = None
    tenant_pattern: str | None = None
    jwks_url: str | None = None
    jwks: Mapping[str, Any] | None = None
    discovery: str | None = None
    key_source: Any = None
    algorithms: Sequence[str] | None = None
    scope_claims: Sequence[str] | None = None
    allow_remote_oct: bool = False
    tenant_timeout: float | timedelta = 5.0

    def __post_init__(self) -> None:
        own = "IssuerTemplate"
        texts = (self.template,) if isinstance(self.template, str) else self.template
        if not isinstance(texts, (list, tuple)) or not texts:
            raise ConfigurationError(
                f"{own}(template=...): must be a string or a non-empty list of strings"
            )
        shapes = tuple(_shape(own, text) for text in texts)
        if len({s.text for s in shapes}) != len(shapes):
            raise ConfigurationError(f"{own}(template=...): a template is listed twice")
        placeholders = {s.placeholder for s in shapes}
        if len(placeholders) != 1:
            raise ConfigurationError(
                f"{own}(template=...): every template must use the same placeholder, "
                f"found {sorted(placeholders)}"
            )
        _audience(own, self.audience)
        claim = check_text(own, "claim", self.claim, optional=True)
        pattern_text = check_text(own, "tenant_pattern", self.tenant_pattern, optional=True)
        try:
            pattern = re.compile(pattern_text or _default_pattern(shapes))
        except re.error as exc:
            raise ConfigurationError(
                f"{own}(tenant_pattern=...): not a regular expression: {exc}"
            ) from None
        any_tenant = check_flag(own, "any_tenant", self.any_tenant)
        tenants = self.tenants
        if any_tenant and tenants is not None:
            raise ConfigurationError(f"{own}: give tenants= or any_tenant=True, not both")
        if not any_tenant and tenants is None:
            raise ConfigurationError(
                f"{own}: say which tenants to accept: tenants={{...}} (a set), "
                "tenants=f (a function tenant -> bool), or any_tenant=True"
            )
        if tenants is not None and not callable(tenants):
            tenants = self._tenant_set(own, tenants, pattern)
            object.__setattr__(self, "tenants", tenants)
        given = [
            name
            for name in ("jwks_url", "jwks", "discovery", "key_source")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ConfigurationError(
                f"{own}: give exactly one key source shared by every tenant: jwks_url= (Entra: "
                "'https://login.microsoftonline.com/common/discovery/v2.0/keys'), discovery=, "
                f"jwks= or key_source= (got {', '.join(given) or 'none'})"
            )
        check_text(own, "jwks_url", self.jwks_url, optional=True)
        check_text(own, "discovery", self.discovery, optional=True)
        per_tenant = self._per_tenant_keys(own, shapes[0].placeholder)
        if per_tenant and any_tenant:
            raise ConfigurationError(
                f"{own}: a key set per tenant ({{{shapes[0].placeholder}}} in {given[0]}=) needs "
                "tenants=: with any_tenant=True any token could make the server fetch keys "
                "from any URL of that shape"
            )
        if self.jwks is not None and not isinstance(self.jwks, Mapping):
            raise ConfigurationError(
                f"{own}(jwks=...): must be a JWK Set dict ({{'keys': [...]}}), "
                f"not {type(self.jwks).__name__!r}"
            )
        if self.key_source is not None:
            check_key_source(own, self.key_source)
        check_algorithms(own, self.algorithms)
        check_names(own, "scope_claims", self.scope_claims, optional=True)
        check_flag(own, "allow_remote_oct", self.allow_remote_oct)
        timeout = duration(own, "tenant_timeout", self.tenant_timeout, allow_zero=False)
        object.__setattr__(self, "_shapes", shapes)
        object.__setattr__(self, "_claim", claim if claim is not None else shapes[0].placeholder)
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_timeout", timeout)
        object.__setattr__(self, "_per_tenant", per_tenant)

    def _per_tenant_keys(self, owner: str, placeholder: str) -> bool:
        """Whether ``jwks_url``/``discovery`` hold the placeholder: one key set per tenant
        (Keycloak realms), else one shared by all (Entra)."""
        for name in ("jwks_url", "discovery"):
            url = getattr(self, name)
            if url is None:
                continue
            found = _PLACEHOLDER.findall(url)
            if not found and "{" not in url and "}" not in url:
                return False
            if found != [placeholder] or url.count("{") != 1 or url.count("}") != 1:
                raise ConfigurationError(
                    f"{owner}({name}={url!r:.100}): may hold the template's placeholder "
                    f"{{{placeholder}}} once (a key set per tenant), and no other brace"
                )
            return True
        return False

    @staticmethod
    def _tenant_set(owner: str, tenants: object, pattern: re.Pattern[str]) -> frozenset[str]:
        if isinstance(tenants, (str, bytes)) or not isinstance(tenants, Collection):
            raise ConfigurationError(
                f"{owner}(tenants=...): must be a set of tenant values or a function "
                f"tenant -> bool, not {type(tenants).__name__!r}"
            )
        values = frozenset(tenants)  # a copy: changing the caller's set later changes nothing
        if not values:
            raise ConfigurationError(
                f"{owner}(tenants=...): is empty, so no token would ever be accepted"
            )
        for value in sorted(values, key=repr):
            if not isinstance(value, str):
                raise ConfigurationError(
                    f"{owner}(tenants=...): every tenant must be a string, got {value!r:.60}"
                )
            problem = _value_problem(value)
            if problem is None and not pattern.fullmatch(value):
                problem = f"does not match the tenant pattern {pattern.pattern!r}"
            if problem is not None:
                raise ConfigurationError(
                    f"{owner}(tenants=...): {value!r:.80} {problem}, so no token could name it"
                )
        return values

    @property
    def templates(self) -> tuple[str, ...]:
        """The template strings."""
        shapes: tuple[_Shape, ...] = self.__dict__["_shapes"]
        return tuple(s.text for s in shapes)

    @property
    def name(self) -> str:
        """The templates, for logs, ``repr`` and ``health()``."""
        return " | ".join(self.templates)

    def __repr__(self) -> str:
        tenants = self.tenants
        allowed = (
            "any_tenant=True"
            if self.any_tenant
            else f"tenants=<{len(tenants)} tenants>"
            if isinstance(tenants, frozenset)
            else f"tenants={getattr(tenants, '__qualname__', type(tenants).__name__)}"
        )
        keys = self.jwks.get("keys") if self.jwks is not None else None
        source = (
            f"jwks=<{len(keys) if isinstance(keys, list) else '?'} keys>"
            if self.jwks is not None
            else f"jwks_url={self.jwks_url!r}"
            if self.jwks_url is not None
            else f"discovery={self.discovery!r}"
            if self.discovery is not None
            else f"key_source={getattr(self.key_source, 'name', '?')!r}"
        )
        claim = self.__dict__["_claim"]
        return (
            f"IssuerTemplate({self.name!r}, {self.audience!r}, {allowed}, claim={claim!r}, "
            f"{source})"
        )


# -- the verifier's side ------------------------------------------------------------------------


class AwaitTenant(Exception):
    """Raised by :meth:`Tenancy.state_for` when the tenant callable answered with an awaitable:
    ``averify`` awaits :meth:`resolve`; ``verify`` calls :meth:`refuse`. Never leaves the
    verifier."""

    def __init__(
        self, issuer: _TemplateIssuer, answer: Awaitable[Any], tenant: str, iss: str
    ) -> None:
        super().__init__("the tenant check answered with an awaitable")
        self.issuer, self.answer, self.tenant, self.iss = issuer, answer, tenant, iss
        self.resume: Callable[[IssuerState], Any] | None = None

    async def resolve(self) -> Any:
        """Await the tenant check (bounded by ``tenant_timeout``); then what ``resume`` makes of
        the state, or the refusal."""
        issuer, tenant = self.issuer, self.tenant
        try:
            allowed = await asyncio.wait_for(_awaited(self.answer), issuer.timeout)
        except asyncio.TimeoutError:
            issuer.failed(tenant, None, f"no answer within {issuer.timeout:g}s")
            raise WrongIssuer(
                f"the tenant check for {_shown(tenant)} gave no answer within "
                f"{issuer.timeout:g}s ({issuer.name})"
            ) from None
        except Exception as exc:
            issuer.failed(tenant, exc)
            raise WrongIssuer(
                f"the tenant check for {_shown(tenant)} raised {type(exc).__name__} ({issuer.name})"
            ) from None
        issuer.answered()
        issuer.judge(allowed, tenant)
        if self.resume is None:  # pragma: no cover - the verifier always sets it
            raise InvalidToken("tenant check without a continuation")
        return self.resume(issuer.state(tenant, self.iss))

    def refuse(self) -> None:
        """``verify`` cannot await: close the awaitable, say so once, refuse the token."""
        if inspect.iscoroutine(self.answer):
            self.answer.close()
        self.issuer.awaitable_under_verify()
        raise InvalidToken(
            "the tenants callable returned an awaitable, which verify() cannot await"
        )


async def _awaited(answer: Awaitable[Any]) -> Any:
    return await answer


class _TemplateIssuer:
    """One ``IssuerTemplate`` as the verifier runs it: shapes, policy, key source, rules."""

    def __init__(
        self,
        cfg: IssuerTemplate,
        allowed: frozenset[str],
        rules: ClaimRules,
        scope_claims: tuple[str, ...],
        make_source: Callable[[str | None], tuple[KeySource, bool]],
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.shapes: tuple[_Shape, ...] = cfg.__dict__["_shapes"]
        self.claim: str = cfg.__dict__["_claim"]
        self.pattern: re.Pattern[str] = cfg.__dict__["_pattern"]
        self.timeout: float = cfg.__dict__["_timeout"]
        self.allowed, self.rules, self.scope_claims = allowed, rules, scope_claims
        tenants = cfg.tenants
        self.tenant_set = tenants if isinstance(tenants, frozenset) else None
        self.check: TenantCheck | None = tenants if callable(tenants) else None
        self.any_tenant = cfg.any_tenant
        self.is_async = self.check is not None and inspect.iscoroutinefunction(self.check)
        self._failing = False
        self._told_awaitable = False
        self._lock = threading.Lock()
        # The key source: one for every tenant, or (a placeholder in the key URL) one per
        # admitted tenant, built when first needed (every listed tenant's at once).
        self._make_source = make_source
        self.per_tenant: bool = cfg.__dict__["_per_tenant"]
        self._shared = None if self.per_tenant else make_source(None)
        self._sources: dict[str, tuple[KeySource, bool]] = {}
        self._states: dict[str, IssuerState] = {}
        if self.per_tenant and self.tenant_set is not None:
            for tenant in sorted(self.tenant_set):
                self._sources[tenant] = make_source(tenant)

    def source_for(self, tenant: str) -> tuple[KeySource, bool]:
        """The key source (and whether it shares the verifier's clock) of an admitted tenant."""
        shared = self._shared
        if shared is not None:
            return shared
        found = self._sources.get(tenant)
        if found is None:  # a tenant a callable admitted: bounded, the oldest go first
            with self._lock:
                found = self._sources.get(tenant)
                if found is None:
                    try:
                        found = self._make_source(tenant)
                    except ConfigurationError as exc:  # its key URL is one we may not fetch
                        raise WrongIssuer(
                            f"tenant {_shown(tenant)} has no usable key URL: {safe(exc)}"
                        ) from None
                    self._sources[tenant] = found
                    while len(self._sources) > _MAX_TENANT_SOURCES:
                        del self._sources[next(iter(self._sources))]
        return found

    def key_sources(self) -> dict[str, KeySource]:
        if self._shared is not None:
            return {self.name: self._shared[0]}
        shape = self.shapes[0]
        return {shape.fill(tenant): source for tenant, (source, _) in dict(self._sources).items()}

    def state(self, tenant: str, iss: str) -> IssuerState:
        """The state to verify the token of an admitted ``tenant`` (its ``iss``) with: made once
        per issuer and kept (bounded), as an exact issuer's is."""
        state = self._states.get(iss)
        if state is not None and state.tenant == tenant:
            return state
        state = self._new_state(tenant, iss)
        states = self._states
        states[iss] = state  # a race only makes an equal state twice
        if len(states) > _MAX_STATES:
            with self._lock:
                while len(states) > _MAX_STATES:
                    states.pop(next(iter(states)), None)
        return state

    def _new_state(self, tenant: str, iss: str) -> IssuerState:
        source, same_clock = self.source_for(tenant)
        rules = self.rules
        return IssuerState(
            ClaimRules(
                iss,
                rules.audiences,
                rules.leeway,
                rules.require_exp,
                rules.max_age,
                rules.required,
            ),
            self.allowed,
            source,
            self.scope_claims,
            same_clock,
            tenant=tenant,
        )

    def admit(self, shape: _Shape, iss: str, payload: Mapping[str, Any]) -> IssuerState:
        """The state to verify a token of ``iss`` with, or the refusal (see the module doc)."""
        if self.claim == "iss":
            value: object = shape.cut(iss)
            where = "in 'iss'"
        else:
            value = payload.get(self.claim)
            where = f"claim {self.claim!r}"
            if value is None:
                raise WrongIssuer(f"{where} is missing; {self.name} needs it to know the tenant")
        if not isinstance(value, str):
            raise WrongIssuer(f"tenant {where} is not a string ({self.name})")
        problem = _value_problem(value)
        if problem is None and not self.pattern.fullmatch(value):
            problem = "does not match the tenant pattern"
        if problem is not None:
            raise WrongIssuer(f"tenant {where} {_shown(value)} {problem} ({self.name})")
        if shape.fill(value) != iss:
            raise WrongIssuer(
                f"claim 'iss' {_shown(iss)} is not {_shown(shape.fill(value))}, the issuer of "
                f"the tenant in {where} ({self.name})"
            )
        if self.tenant_set is not None:
            self.judge(value in self.tenant_set, value)
        elif self.check is not None:
            try:
                answer = self.check(value)
            except Exception as exc:
                self.failed(value, exc)
                raise WrongIssuer(
                    f"the tenant check for {_shown(value)} raised {type(exc).__name__} "
                    f"({self.name})"
                ) from None
            if inspect.isawaitable(answer):
                raise AwaitTenant(self, answer, value, iss)
            self.answered()
            self.judge(answer, value)
        return self.state(value, iss)

    def judge(self, answer: object, tenant: str) -> None:
        if answer is not True:
            raise WrongIssuer(f"tenant {_shown(tenant)} is not allowed ({self.name})")

    def failed(self, tenant: str, exc: BaseException | None, why: str = "") -> None:
        """A tenant check that raised or timed out: ERROR once per episode, with the traceback
        the first time, so a broken directory cannot flood the log."""
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            logger.error(
                "tenant check failed, refusing its tokens until it answers again: "
                "template=%s tenant=%s error=%s",
                safe(self.name),
                safe(tenant, 80),
                safe(why or f"{type(exc).__name__}: {exc}"),
                exc_info=exc_info(exc) if exc is not None else None,
            )

    def answered(self) -> None:
        if self._failing:
            with self._lock:
                was, self._failing = self._failing, False
            if was:
                logger.info("tenant check answering again: template=%s", safe(self.name))

    def awaitable_under_verify(self) -> None:
        if not self._told_awaitable:
            self._told_awaitable = True
            logger.error(
                "the tenants callable of %s returned an awaitable under verify(), which cannot "
                "await it: every token it sees is refused; use averify() (the ASGI middleware) "
                "or a synchronous callable",
                safe(self.name),
            )


class Tenancy:
    """Every template of one verifier: finds the one that fits a token's ``iss``."""

    def __init__(self, issuers: Sequence[_TemplateIssuer], exact: Sequence[str]) -> None:
        self.issuers = tuple(issuers)
        self.shapes = tuple((t, s) for t in self.issuers for s in t.shapes)
        self.expected = (*exact, *(s.text for _, s in self.shapes))
        self.is_async = any(t.is_async for t in self.issuers)
        # iss -> (its template, its state) for tenants a set or any_tenant admitted: the same
        # iss and tenant claim always get the same answer from those, so it is given at once.
        self._admitted: dict[str, tuple[_TemplateIssuer, IssuerState]] = {}
        self._lock = threading.Lock()

    def state_for(self, iss: object, payload: Mapping[str, Any]) -> IssuerState:
        """The state for a token whose ``iss`` named no exact issuer, or ``WrongIssuer``.

        Raises :class:`AwaitTenant` when an async tenant check must be awaited.
        """
        if not isinstance(iss, str):
            raise _issuer_mismatch(iss, self.expected)
        known = self._admitted.get(iss)
        if known is not None:
            issuer, state = known
            if issuer.claim == "iss" or payload.get(issuer.claim) == state.tenant:
                return state
        fit: tuple[_TemplateIssuer, _Shape] | None = None
        for issuer, shape in self.shapes:
            if shape.cut(iss) is not None:
                if fit is not None:
                    others = ", ".join(_shown(s.text) for t, s in self.shapes if s.cut(iss))
                    raise WrongIssuer(
                        f"claim 'iss' {_shown(iss)} fits several templates ({others}): "
                        "refused, it is ambiguous"
                    )
                fit = (issuer, shape)
        if fit is None:
            raise _issuer_mismatch(iss, self.expected)
        issuer = fit[0]
        state = issuer.admit(fit[1], iss, payload)
        if issuer.check is None:  # a set or any_tenant: the answer cannot change
            admitted = self._admitted
            admitted[iss] = (issuer, state)
            if len(admitted) > _MAX_STATES:
                with self._lock:
                    while len(admitted) > _MAX_STATES:
                        admitted.pop(next(iter(admitted)), None)
        return state

    def admitted(self, iss: str) -> bool:
        """Whether a template admitted ``iss`` (a tenant's issuer) lately: safe to log."""
        return iss in self._admitted or any(iss in t._states for t in self.issuers)

    def key_sources(self) -> dict[str, KeySource]:
        sources: dict[str, KeySource] = {}
        for issuer in self.issuers:
            sources.update(issuer.key_sources())
        return sources

    def describe(self) -> list[str]:
        return [
            f"{t.name!r}: audience="
            f"{'None' if t.rules.audiences is None else sorted(t.rules.audiences)!r}, "
            f"tenants={_tenants_kind(t)}"
            for t in self.issuers
        ]


def _tenants_kind(issuer: _TemplateIssuer) -> str:
    if issuer.any_tenant:
        return "any"
    if issuer.tenant_set is not None:
        return str(len(issuer.tenant_set))
    return "callable"


def build_tenancy(
    configs: Sequence[IssuerTemplate],
    exact: Sequence[str],
    algorithms: Sequence[str] | None,
    require_exp: bool,
    max_age: float | None,
    required: tuple[str, ...],
    scope_claims: Sequence[str],
    *,
    leeway: float,
    monotonic: Callable[[], float],
    jwks_options: JWKSOptions,
) -> Tenancy:
    """The verifier's templates, each with its own key source built once."""
    seen: set[str] = set()
    built = []
    for cfg in configs:
        for text in cfg.templates:
            if text in seen:
                raise ConfigurationError(f"issuer template {text!r} is configured twice")
            seen.add(text)
        allowed = allowed_algorithms(cfg.algorithms if cfg.algorithms is not None else algorithms)
        rules = ClaimRules(
            cfg.templates[0], _audience("IssuerTemplate", cfg.audience), leeway, require_exp,
            max_age, required,
        )  # fmt: skip
        scopes = names(cfg.scope_claims if cfg.scope_claims is not None else scope_claims)

        def make_source(
            tenant: str | None,
            cfg: IssuerTemplate = cfg,
            allowed: frozenset[str] = allowed,
        ) -> tuple[KeySource, bool]:
            source = _source(cfg, allowed, jwks_options, tenant)
            same_clock = isinstance(source, StaticKeys) or (
                getattr(source, "monotonic", None) is monotonic
            )
            return source, same_clock

        built.append(_TemplateIssuer(cfg, allowed, rules, scopes, make_source))
    return Tenancy(built, exact)


def _source(
    cfg: IssuerTemplate,
    allowed: frozenset[str],
    jwks_options: JWKSOptions,
    tenant: str | None,
) -> KeySource:
    """The key source of ``cfg``, or of one of its tenants (a placeholder in the key URL)."""

    def filled(url: str | None) -> str | None:
        return url if url is None or tenant is None else _PLACEHOLDER.sub(lambda _: tenant, url)

    return build_source(
        cfg.name,
        allowed,
        jwks_options,
        key_source=cfg.key_source,
        jwks=cfg.jwks,
        jwks_url=filled(cfg.jwks_url),
        discovery=filled(None if cfg.discovery is None else str(cfg.discovery)),
        discovery_templates=cfg.templates,
        allow_oct=cfg.allow_remote_oct,
    )
