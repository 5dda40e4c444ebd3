"""Group suites: hashing, commutative blinding, validation of received points."""

import hashlib
from concurrent.futures import ProcessPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.batch import BatchRunner
from crypto.errors import InvalidElement, InvalidScalar, UnsupportedOperation
from crypto.groups import SUITES, X25519Blake3, get_suite

GROUPS = list(SUITES.values())
ids = [g.name for g in GROUPS]


@pytest.mark.parametrize("group", GROUPS, ids=ids)
@settings(max_examples=20, deadline=None)
@given(element=st.binary(max_size=64), a_seed=st.binary(), b_seed=st.binary())
def test_blinding_commutes(group, element, a_seed, b_seed):
    a = group.random_scalar(lambda n: hashlib.shake_256(b"a" + a_seed).digest(n))
    b = group.random_scalar(lambda n: hashlib.shake_256(b"b" + b_seed).digest(n))
    point = group.hash_to_group(element)
    assert group.multiply(a, group.multiply(b, point)) == group.multiply(
        b, group.multiply(a, point)
    )


@pytest.mark.parametrize("group", GROUPS, ids=ids)
def test_hash_is_deterministic_valid_and_batchable(group):
    elements = [b"blindmatch/v1\x00passport\x00X%d" % i for i in range(50)]
    packed = group.hash_batch(elements)
    assert packed == b"".join(group.hash_to_group(e) for e in elements)
    assert len(set(packed[i : i + 32] for i in range(0, len(packed), 32))) == 50
    group.validate(packed)


def test_suites_hash_differently():
    element = b"blindmatch/v1\x00iban\x00GB82WEST12345698765432"
    assert SUITES["x25519-blake3"].hash_to_group(element) != SUITES[
        "ristretto255-sha512"
    ].hash_to_group(element)


@pytest.mark.parametrize("group", GROUPS, ids=ids)
@pytest.mark.parametrize("length", [0, 1, 31, 33, 63])
def test_ragged_batch_rejected(group, length):
    key = group.random_scalar()
    if length == 0:
        assert group.multiply(key, b"") == b""
        return
    with pytest.raises(InvalidElement, match="not a whole number"):
        group.multiply(key, b"\x01" * length)


X25519_BAD = {
    "zero": bytes(32),
    "one": (1).to_bytes(32, "little"),
    "order 8": bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    "order 8 twin": bytes.fromhex(
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"
    ),
    "p - 1": (2**255 - 20).to_bytes(32, "little"),
    "p (non-canonical zero)": (2**255 - 19).to_bytes(32, "little"),
    "p + 1 (non-canonical one)": (2**255 - 18).to_bytes(32, "little"),
    "high bit set": b"\x09" + bytes(30) + b"\x80",
}
RISTRETTO_BAD = {
    "identity": bytes(32),
    "non-canonical": b"\xff" * 32,
    "negative field element": bytes.fromhex(
        "0100000000000000000000000000000000000000000000000000000000000000"
    ),
}


@pytest.mark.parametrize(
    "suite,name,point",
    [("x25519-blake3", n, p) for n, p in X25519_BAD.items()]
    + [("ristretto255-sha512", n, p) for n, p in RISTRETTO_BAD.items()],
)
def test_invalid_points_rejected_with_position(suite, name, point):
    group = get_suite(suite)
    good = group.hash_to_group(b"good")
    batch = good + good + point + good
    with pytest.raises(InvalidElement, match="element 2 is not a valid"):
        group.multiply(group.random_scalar(), batch)
    with pytest.raises(InvalidElement, match="element 2"):
        group.validate(batch)


def test_ristretto_inversion_undoes_blinding():
    group = SUITES["ristretto255-sha512"]
    a = group.random_scalar()
    point = group.hash_to_group(b"x")
    assert group.multiply(group.invert_scalar(a), group.multiply(a, point)) == point


def test_x25519_has_no_inversion():
    with pytest.raises(UnsupportedOperation, match="ristretto255-sha512"):
        X25519Blake3().invert_scalar(bytes(31) + b"\x01")


@pytest.mark.parametrize("group", GROUPS, ids=ids)
def test_broken_rng_is_refused(group):
    with pytest.raises(InvalidScalar):
        group.random_scalar(bytes)


def test_unknown_suite_names_supported_ones():
    with pytest.raises(UnsupportedOperation, match="x25519-blake3"):
        get_suite("p256-sha256")


@pytest.mark.parametrize("group", GROUPS, ids=ids)
def test_process_pool_matches_in_process(group):
    elements = [b"e%d" % i for i in range(300)]
    key = group.random_scalar()
    with ProcessPoolExecutor(2) as pool:
        runner = BatchRunner(pool, workers=2, min_parallel=10)
        packed = runner.hash(group.name, elements)
        assert packed == group.hash_batch(elements)
        assert runner.multiply(group.name, key, packed) == group.multiply(key, packed)
        bad = packed[:64] + bytes(32) + packed[96:]
        with pytest.raises(InvalidElement):
            runner.multiply(group.name, key, bad)
