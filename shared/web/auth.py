"""JWT bearer auth with the roles of DESIGN.md: customer, staff, ops, admin."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.settings import StewardSettings
from shared.web.errors import ApiError

Role = Literal["customer", "staff", "ops", "admin"]
ROLES: tuple[Role, ...] = ("customer", "staff", "ops", "admin")
_VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the token says."""

    role: Role
    subject: str
    customer_id: str | None = None
    employee_id: str | None = None
    department: str | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)

    def can_access_customer(self, customer_id: str) -> bool:
        """Customers only see their own data; bank roles see any customer's."""
        return self.role != "customer" or self.customer_id == customer_id


class TokenVerifier:
    """Checks signature, expiry and claims; HS256 with a secret or RS256 through JWKS."""

    def __init__(self, settings: StewardSettings) -> None:
        self._algorithm = settings.steward_jwt_algorithm
        secret = settings.steward_jwt_secret
        self._secret = secret.get_secret_value() if secret else None
        self._jwks = (
            jwt.PyJWKClient(settings.steward_jwks_url) if settings.steward_jwks_url else None
        )
        self._issuer = settings.steward_jwt_issuer
        self._audience = settings.steward_jwt_audience
        self._required = ["exp", "sub"]
        self._required += ["iss"] if self._issuer else []
        self._required += ["aud"] if self._audience else []
        self._verified: dict[str, tuple[Principal, float]] = {}  # token → (principal, exp)

    @property
    def may_block(self) -> bool:
        """Verifying may fetch the JWKS over the network (run it off the event loop)."""
        return self._algorithm == "RS256" and self._jwks is not None

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; tokens verified before are remembered until expiry."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        principal, expires = self._verify(token)
        if not self.may_block:  # a JWKS key can be withdrawn: RS256 is checked every time
            if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            key: Any = (
                self._jwks.get_signing_key_from_jwt(token).key
                if self._algorithm == "RS256" and self._jwks
                else self._secret
            )
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": self._required},
            )
        except jwt.PyJWTError as exc:
            raise ApiError(401, "invalid_token", f"token rejected: {exc}") from None
        for name in ("customer_id", "employee_id", "department"):
            value = claims.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                claims[name] = str(value)  # a provider may give ids as numbers
            elif not isinstance(value, str | None):
                raise ApiError(401, "invalid_token", f"claim {name!r} is not a string")
        permissions = claims.get("permissions") or []
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise ApiError(401, "invalid_token", "claim 'permissions' is not a list of strings")
        role = claims.get("role")
        if role not in ROLES:
            raise ApiError(401, "invalid_token", f"unknown role {role!r}")
        if role == "customer" and not claims.get("customer_id"):
            raise ApiError(401, "invalid_token", "customer token without customer_id")
        if role == "staff" and not claims.get("employee_id"):
            raise ApiError(401, "invalid_token", "staff token without employee_id")
        principal = Principal(
            role=role,
            subject=str(claims["sub"]),
            customer_id=claims.get("customer_id"),
            employee_id=claims.get("employee_id"),
            department=claims.get("department"),
            permissions=frozenset(permissions),
        )
        return principal, float(claims["exp"])


def mint_token(
    secret: str,
    *,
    role: Role,
    customer_id: str | None = None,
    employee_id: str | None = None,
    department: str | None = None,
    permissions: tuple[str, ...] = (),
    ttl: timedelta = timedelta(hours=12),
) -> str:
    """A signed HS256 dev token (what `steward token` prints)."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": customer_id or employee_id or role,
        "role": role,
        "iat": now,
        "exp": now + ttl,
    }
    for name, value in (
        ("customer_id", customer_id),
        ("employee_id", employee_id),
        ("department", department),
    ):
        if value:
            claims[name] = value
    if permissions:
        claims["permissions"] = list(permissions)
    return jwt.encode(claims, secret, algorithm="HS256")


_bearer = HTTPBearer(auto_error=False)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from `Authorization: Bearer <JWT>`; 401 without a valid token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "missing_token", "Authorization: Bearer <JWT> is required")
    verifier: TokenVerifier = request.app.state.token_verifier
    if verifier.may_block:
        return await run_in_threadpool(verifier.verify, credentials.credentials)
    return verifier.verify(credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: Role) -> Any:
    """A dependency admitting only the given roles (403 for the others)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise ApiError(403, "forbidden", f"role {principal.role!r} may not do this")
        return principal

    return Depends(check)


CurrentCustomer = Annotated[Principal, require_role("customer")]
CurrentStaff = Annotated[Principal, require_role("staff")]
CurrentOps = Annotated[Principal, require_role("ops", "admin")]
CurrentAdmin = Annotated[Principal, require_role("admin")]
AnyBankRole = Annotated[Principal, require_role("staff", "ops", "admin")]


def authorize_customer(principal: Principal, customer_id: str) -> None:
    """403 unless the caller may see this customer's data."""
    if not principal.can_access_customer(customer_id):
        raise ApiError(403, "forbidden", "a customer may only access their own data")


async def _accessible_customer(customer_id: str, principal: CurrentPrincipal) -> str:
    authorize_customer(principal, customer_id)
    return customer_id


AccessibleCustomerId = Annotated[str, Depends(_accessible_customer)]
"""The `{customer_id}` path parameter, after checking the caller may access that customer."""
