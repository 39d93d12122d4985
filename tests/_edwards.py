"""Edwards-curve arithmetic for the tests, written apart from jwt_guard: the small-order points.

The curves of RFC 8032 (Ed25519: -x^2 + y^2 = 1 + d x^2 y^2; Ed448: x^2 + y^2 = 1 + d x^2 y^2)
with the affine group law. The small-order (torsion) points are found as the RFC says they
arise: ``[L]P`` for points ``P`` of the full group (of order ``cofactor * L``) lands in the
torsion subgroup, which has ``cofactor`` points; the first such point of order ``cofactor``
generates it, and its ``cofactor`` distinct multiples are all of them (two or three scalar
multiplications by ``L`` instead of collecting until ``cofactor`` distinct ones turn up).
jwt_guard's check works the other way round (``[cofactor]P`` is the identity), so the two agree
only if both are right. For Ed25519 the result is compared with libsodium's published blocklist.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

Point = tuple[int, int]
_Projective = tuple[int, int, int]


@dataclass(frozen=True)
class Curve:
    name: str
    p: int
    a: int
    d: int
    order: int  # L: the prime order of the base point
    cofactor: int
    size: int  # bytes of an encoded point

    @property
    def identity(self) -> Point:
        return (0, 1)

    def on_curve(self, pt: Point) -> bool:
        x, y, p = pt[0], pt[1], self.p
        return (self.a * x * x + y * y - 1 - self.d * x * x * y * y) % p == 0

    def add(self, p1: Point, p2: Point) -> Point:
        (x1, y1), (x2, y2), p = p1, p2, self.p
        t = self.d * x1 * x2 * y1 * y2 % p
        x3 = (x1 * y2 + y1 * x2) * pow(1 + t, p - 2, p) % p
        y3 = (y1 * y2 - self.a * x1 * x2) * pow(1 - t, p - 2, p) % p
        return (x3, y3)

    def _add_projective(self, p1: _Projective, p2: _Projective) -> _Projective:
        # add-2008-bbjlp (complete on both curves: d is not a square).
        (x1, y1, z1), (x2, y2, z2), p = p1, p2, self.p
        a = z1 * z2 % p
        b = a * a % p
        c = x1 * x2 % p
        d = y1 * y2 % p
        e = self.d * c * d % p
        f, g = (b - e) % p, (b + e) % p
        x3 = a * f * ((x1 + y1) * (x2 + y2) - c - d) % p
        y3 = a * g * (d - self.a * c) % p
        return (x3, y3, f * g % p)

    def mul(self, k: int, pt: Point) -> Point:
        result: _Projective = (0, 1, 1)
        addend: _Projective = (pt[0], pt[1], 1)
        while k:
            if k & 1:
                result = self._add_projective(result, addend)
            addend = self._add_projective(addend, addend)
            k >>= 1
        x, y, z = result
        inverse = pow(z, self.p - 2, self.p)
        return (x * inverse % self.p, y * inverse % self.p)

    def point_order(self, pt: Point) -> int:
        """The order of a torsion point (a divisor of the cofactor)."""
        for n in range(1, self.cofactor + 1):
            if self.mul(n, pt) == self.identity:
                return n
        raise AssertionError(f"{pt} is not a torsion point")

    def x_for(self, y: int) -> int | None:
        """An x with (x, y) on the curve, by brute Tonelli-Shanks; None when there is none."""
        p = self.p
        u = (y * y - 1) * pow(self.d * y * y - self.a, p - 2, p) % p
        return _tonelli_shanks(u, p)

    def torsion_points(self) -> set[Point]:
        return set(_torsion(self))

    def _torsion(self) -> frozenset[Point]:
        y = 2
        while True:
            x = self.x_for(y)
            for pt in () if x is None else ((x, y), (-x % self.p, y)):
                generator = self.mul(self.order, pt)
                if self.point_order(generator) == self.cofactor:
                    found = {self.identity}
                    multiple = generator
                    while multiple != self.identity:
                        assert self.on_curve(multiple)
                        found.add(multiple)
                        multiple = self.add(multiple, generator)
                    assert len(found) == self.cofactor
                    return frozenset(found)
            y += 1
            assert y < 1000, "the torsion subgroup should appear within a few points"

    def encodings(self, pt: Point) -> list[bytes]:
        """Every encoding RFC 8032's decoder maps to ``pt``, the non-canonical ones included:
        y + k*p while it fits beside the sign bit, and the sign bit set when x is 0."""
        x, y = pt
        top = 1 << (8 * self.size - 1)
        signs = [x & 1] if x else [0, 1]
        ys = range(y, top, self.p)
        return [(yy | sign * top).to_bytes(self.size, "little") for yy in ys for sign in signs]

    def canonical(self, pt: Point) -> bytes:
        return self.encodings(pt)[0]


@functools.cache
def _torsion(curve: Curve) -> frozenset[Point]:
    return curve._torsion()


def _tonelli_shanks(u: int, p: int) -> int | None:
    u %= p
    if u == 0:
        return 0
    if pow(u, (p - 1) // 2, p) != 1:
        return None
    q, s = p - 1, 0
    while q % 2 == 0:
        q, s = q // 2, s + 1
    z = next(z for z in range(2, p) if pow(z, (p - 1) // 2, p) == p - 1)
    m, c, t, r = s, pow(z, q, p), pow(u, q, p), pow(u, (q + 1) // 2, p)
    while t != 1:
        i, t2 = 0, t
        while t2 != 1:
            t2, i = t2 * t2 % p, i + 1
        b = pow(c, 1 << (m - i - 1), p)
        m, c, t, r = i, b * b % p, t * b * b % p, r * b % p
    return r


_P25519 = 2**255 - 19
_P448 = 2**448 - 2**224 - 1

ED25519 = Curve(
    "Ed25519",
    _P25519,
    -1,
    -121665 * pow(121666, _P25519 - 2, _P25519) % _P25519,
    2**252 + 27742317777372353535851937790883648493,
    8,
    32,
)
ED448 = Curve(
    "Ed448",
    _P448,
    1,
    -39081 % _P448,
    2**446 - 13818066809895115352007386748515426880336692474882178609894547503885,
    4,
    57,
)
CURVES = {"Ed25519": ED25519, "Ed448": ED448}

# libsodium's blocklist (ge25519_has_small_order, crypto_core/ed25519/ref10/ed25519_ref10.c):
# the y encodings of every small-order Ed25519 point, compared with the sign bit cleared:
# 0 (order 4), 1 (order 1), two of order 8, p - 1 (order 2), and p, p + 1 (0 and 1 again,
# not reduced).
LIBSODIUM_ED25519_BLOCKLIST = {
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes([0xEC]) + b"\xff" * 30 + b"\x7f",
    bytes([0xED]) + b"\xff" * 30 + b"\x7f",
    bytes([0xEE]) + b"\xff" * 30 + b"\x7f",
}


def small_order_encodings(curve: Curve) -> list[bytes]:
    """Every encoding of every small-order point of ``curve``."""
    return sorted(enc for pt in curve.torsion_points() for enc in curve.encodings(pt))
