"""UserSig minting and verification (docs/spec.md §1), against the vendor's test vectors and
the official PyPI generator ``tls-sig-api-v2``."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import types
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import TLSSigAPIv2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringline.core.errors import ErrorCode, LocalCallError
from ringline.core.usersig import (
    DEFAULT_EXPIRE,
    MAX_USER_SIG_CHARS,
    SigInfo,
    UserSigError,
    gen_user_sig,
    verify_user_sig,
)

KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
APP = 1400000000
USER = "xiaojun"
T0 = 1700000000
EXPIRE = 15552000

VECTOR = (
    "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJk"
    "TE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoB"
    "HdYzUg__"
)
VECTOR_SIG = "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="
VECTOR_USERBUF = (
    "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpQJl"
    "LMxM4IIlmbkgIUNzNMWlxalFSaVpICsiw72y4OZnpoOE-BOTjMsi0nMiTUwDkiuqtIODszJSKpzCSzNCHCvCMioi"
    "fdLKwrLcM-y9DGyVagF2rTqB"
)
VECTOR_USERBUF_SIG = "Oab3vXglY45Pcxz+SSjhdxBWuhTAxVhxYLfvVjGhOJ0="


# -- helpers: build sig documents by hand ---------------------------------------------


def b64x(data: bytes) -> str:
    return base64.b64encode(data).decode().replace("+", "*").replace("/", "-").replace("=", "_")


def unb64x(sig: str) -> bytes:
    return base64.b64decode(sig.replace("*", "+").replace("-", "/").replace("_", "="))


def decode_doc(sig: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(zlib.decompress(unb64x(sig)))
    return doc


def encode_doc(doc: object, *, level: int = -1) -> str:
    return b64x(zlib.compress(json.dumps(doc).encode(), level))


def mac(doc: dict[str, Any], key: str = KEY) -> str:
    text = (
        f"TLS.identifier:{doc['TLS.identifier']}\n"
        f"TLS.sdkappid:{doc['TLS.sdkappid']}\n"
        f"TLS.time:{doc['TLS.time']}\n"
        f"TLS.expire:{doc['TLS.expire']}\n"
    )
    if "TLS.userbuf" in doc:
        text += f"TLS.userbuf:{doc['TLS.userbuf']}\n"
    return base64.b64encode(hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()).decode()


def good_doc(**changes: Any) -> dict[str, Any]:
    """A correctly signed document for (APP, USER, T0, EXPIRE), with ``changes`` applied
    *before* signing, so only the changed thing can be wrong."""
    doc: dict[str, Any] = {
        "TLS.ver": "2.0",
        "TLS.identifier": USER,
        "TLS.sdkappid": APP,
        "TLS.expire": EXPIRE,
        "TLS.time": T0,
    }
    doc.update(changes)
    doc["TLS.sig"] = mac(doc)
    return doc


def verify(sig: str, *, now: float = T0 + 10, **kwargs: Any) -> SigInfo:
    args: dict[str, Any] = {"sdk_app_id": APP, "user_id": USER, "secret_key": KEY, "now": now}
    args.update(kwargs)
    return verify_user_sig(sig, **args)


def fails_with(code: ErrorCode, sig: str, **kwargs: Any) -> UserSigError:
    with pytest.raises(UserSigError) as caught:
        verify(sig, **kwargs)
    assert caught.value.code == code, caught.value.message
    assert isinstance(caught.value, LocalCallError)
    return caught.value


@pytest.fixture
def official(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], Any]]:
    """Factory for the official generator with its clock pinned to the given time.

    Only the module's own ``time`` is replaced, so pytest's timing is untouched.
    """

    def make(at: int) -> Any:
        monkeypatch.setattr(TLSSigAPIv2, "time", types.SimpleNamespace(time=lambda: float(at)))
        return TLSSigAPIv2.TLSSigAPIv2(APP, KEY)

    yield make


# -- vendor test vectors ----------------------------------------------------------------


def test_vendor_vector_verifies_and_carries_the_published_sig() -> None:
    info = verify(VECTOR, now=T0 + 10)
    assert info == SigInfo(identifier=USER, sdk_app_id=APP, time=T0, expire=EXPIRE, userbuf=None)
    assert info.expires_at == T0 + EXPIRE
    assert decode_doc(VECTOR)["TLS.sig"] == VECTOR_SIG


def test_gen_reproduces_the_vendor_vector() -> None:
    sig = gen_user_sig(APP, KEY, USER, EXPIRE, now=T0)
    assert decode_doc(sig)["TLS.sig"] == VECTOR_SIG
    assert verify(sig).time == T0
    assert sig == VECTOR  # byte-identical to the official generator


def test_vendor_vector_with_userbuf_verifies_and_exposes_the_bytes() -> None:
    info = verify(VECTOR_USERBUF)
    assert info.userbuf == b"abc"
    assert info.expire == 86400
    assert decode_doc(VECTOR_USERBUF)["TLS.sig"] == VECTOR_USERBUF_SIG
    assert gen_user_sig(APP, KEY, USER, 86400, now=T0, userbuf=b"abc") == VECTOR_USERBUF


def test_default_expire_is_180_days() -> None:
    sig = gen_user_sig(APP, KEY, USER, now=T0)
    assert DEFAULT_EXPIRE == 180 * 86400
    assert verify(sig).expire == DEFAULT_EXPIRE


# -- interop with the official PyPI generator -------------------------------------------


@pytest.mark.parametrize("expire", [1, 86400, 180 * 86400])
def test_official_sig_without_userbuf_verifies(official: Callable[[int], Any], expire: int) -> None:
    sig = official(T0 + 123).gen_sig(USER, expire)
    info = verify(sig, now=T0 + 123 + expire)
    assert (info.time, info.expire, info.userbuf) == (T0 + 123, expire, None)


@pytest.mark.parametrize("userbuf", [b"abc", b"", bytes(range(256))])
def test_official_sig_with_userbuf_verifies(official: Callable[[int], Any], userbuf: bytes) -> None:
    sig = official(T0).gen_sig_with_userbuf(USER, 3600, userbuf)
    assert verify(sig).userbuf == userbuf


@pytest.mark.parametrize("userbuf", [None, b"abc", b"", b"\x00\xff" * 50])
def test_our_sig_is_byte_identical_to_the_official_one(
    official: Callable[[int], Any], userbuf: bytes | None
) -> None:
    # The official package has no verifier, so compare the output itself (and its
    # decoded document) with what the official generator makes.
    api = official(T0 + 7)
    theirs = api.gen_sig(USER, 999) if userbuf is None else api.gen_sig_with_userbuf(USER, 999, userbuf)
    ours = gen_user_sig(APP, KEY, USER, 999, now=T0 + 7, userbuf=userbuf)
    assert decode_doc(ours) == decode_doc(theirs)
    assert ours == theirs


def test_verification_parses_json_so_key_order_and_spacing_do_not_matter() -> None:
    doc = good_doc()
    reordered = dict(reversed(list(doc.items())))
    compact = b64x(zlib.compress(json.dumps(reordered, separators=(",", ":")).encode()))
    assert verify(compact).identifier == USER


def test_stored_zlib_blocks_as_written_by_the_go_generator_verify() -> None:
    assert verify(encode_doc(good_doc(), level=0)).sdk_app_id == APP


def test_surrounding_whitespace_is_ignored() -> None:
    assert verify(f"  {VECTOR}\r\n").identifier == USER


# -- one test per failure code ------------------------------------------------------------


@pytest.mark.parametrize("sig", ["", "   ", "\n"])
def test_empty_sig_is_sig_empty(sig: str) -> None:
    error = fails_with(ErrorCode.SIG_EMPTY, sig)
    assert "empty" in error.message and "init()" in error.message


@pytest.mark.parametrize("sig", ["not a sig!", "abc+def/", "eJyr==", "é" * 8, "abc\x00"])
def test_garbage_characters_are_malformed(sig: str) -> None:
    error = fails_with(ErrorCode.SIG_MALFORMED, sig)
    assert "alphabet" in error.message and "mint a new one" in error.message


@pytest.mark.parametrize("sig", ["abcde", "a", "ab_", "abc__"])
def test_bad_base64_length_or_padding_is_malformed(sig: str) -> None:
    assert "base64" in fails_with(ErrorCode.SIG_MALFORMED, sig).message


def test_base64_that_is_not_zlib_is_malformed() -> None:
    assert "zlib" in fails_with(ErrorCode.SIG_MALFORMED, b64x(b"hello world, not zlib")).message


def test_truncated_zlib_is_malformed() -> None:
    data = zlib.compress(json.dumps(good_doc()).encode())
    assert "truncated" in fails_with(ErrorCode.SIG_MALFORMED, b64x(data[:-6])).message


def test_trailing_bytes_after_zlib_are_malformed() -> None:
    data = zlib.compress(json.dumps(good_doc()).encode()) + b"xx"
    assert "trailing" in fails_with(ErrorCode.SIG_MALFORMED, b64x(data)).message


@pytest.mark.parametrize("payload", [b"not json", b"\xff\xfe{}", b'{"TLS.ver": "2.0"', b"[" * 5000])
def test_zlib_that_is_not_json_is_malformed(payload: bytes) -> None:
    assert "JSON" in fails_with(ErrorCode.SIG_MALFORMED, b64x(zlib.compress(payload))).message


@pytest.mark.parametrize("doc", [[1, 2], "2.0", 17, None])
def test_json_that_is_not_an_object_is_malformed(doc: object) -> None:
    assert "object" in fails_with(ErrorCode.SIG_MALFORMED, encode_doc(doc)).message


@pytest.mark.parametrize(
    "field", ["TLS.ver", "TLS.identifier", "TLS.sdkappid", "TLS.time", "TLS.expire", "TLS.sig"]
)
def test_missing_field_is_malformed(field: str) -> None:
    doc = good_doc()
    del doc[field]
    error = fails_with(ErrorCode.SIG_MALFORMED, encode_doc(doc))
    assert f"{field} is missing" in error.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("TLS.ver", 2.0),
        ("TLS.identifier", 42),
        ("TLS.sdkappid", str(APP)),
        ("TLS.sdkappid", float(APP)),
        ("TLS.sdkappid", True),
        ("TLS.sdkappid", 2**32),
        ("TLS.time", float(T0)),
        ("TLS.time", -1),
        ("TLS.time", 2**63),
        ("TLS.expire", False),
        ("TLS.expire", None),
        ("TLS.expire", "15552000"),
        ("TLS.sig", 1),
        ("TLS.sig", "not base64!"),
        ("TLS.userbuf", 1),
        ("TLS.userbuf", None),
        ("TLS.userbuf", "YWJ"),
    ],
)
def test_wrong_field_type_is_malformed(field: str, value: object) -> None:
    doc = good_doc() if field == "TLS.sig" else good_doc(**{field: value})
    doc[field] = value
    error = fails_with(ErrorCode.SIG_MALFORMED, encode_doc(doc))
    assert field in error.message


@pytest.mark.parametrize("ver", ["1.0", "2", "3.0", ""])
def test_wrong_version_is_sig_version(ver: str) -> None:
    error = fails_with(ErrorCode.SIG_VERSION, encode_doc(good_doc(**{"TLS.ver": ver})))
    assert "TLSSigAPIv2" in error.message


def test_a_v1_ecdsa_sig_is_sig_version_not_a_missing_field() -> None:
    v1 = {
        "TLS.account_type": "0",
        "TLS.identifier": USER,
        "TLS.appid_at_3rd": "0",
        "TLS.sdk_appid": str(APP),
        "TLS.expire_after": "180",
        "TLS.version": "201512300000",
        "TLS.time": str(T0),
        "TLS.sig": "MEUCIQ==",
    }
    assert "ECDSA" in fails_with(ErrorCode.SIG_VERSION, encode_doc(v1)).message


def test_version_is_checked_before_the_app() -> None:
    sig = encode_doc(good_doc(**{"TLS.ver": "1.0", "TLS.sdkappid": 7}))
    fails_with(ErrorCode.SIG_VERSION, sig)


def test_other_app_is_sig_app_mismatch() -> None:
    error = fails_with(ErrorCode.SIG_APP_MISMATCH, VECTOR, sdk_app_id=APP + 1)
    assert str(APP) in error.message and "SDKAppID" in error.message


def test_app_is_checked_before_the_user_and_expiry() -> None:
    fails_with(ErrorCode.SIG_APP_MISMATCH, VECTOR, sdk_app_id=1, user_id="bob", now=2 * T0)


def test_other_user_is_sig_identifier_mismatch() -> None:
    error = fails_with(ErrorCode.SIG_IDENTIFIER_MISMATCH, VECTOR, user_id="xiaojun2")
    assert "'xiaojun'" in error.message and "'xiaojun2'" in error.message


def test_user_is_checked_before_expiry() -> None:
    fails_with(ErrorCode.SIG_IDENTIFIER_MISMATCH, VECTOR, user_id="bob", now=2 * T0)


def test_sig_is_valid_up_to_and_including_time_plus_expire() -> None:
    assert verify(VECTOR, now=T0 + EXPIRE).expires_at == T0 + EXPIRE


@pytest.mark.parametrize("late", [1, 0.001])
def test_sig_past_time_plus_expire_is_sig_expired(late: float) -> None:
    error = fails_with(ErrorCode.SIG_EXPIRED, VECTOR, now=T0 + EXPIRE + late)
    assert "2024-05-12T22:13:20Z" in error.message
    assert "ringline usersig xiaojun" in error.message and "renew_user_sig()" in error.message


def test_expiry_far_beyond_the_calendar_still_gives_a_readable_message() -> None:
    sig = encode_doc(good_doc(**{"TLS.time": 2**63 - 1, "TLS.expire": 2**63 - 1}))
    error = fails_with(ErrorCode.SIG_EXPIRED, sig, now=float("inf"))
    assert f"Unix time {2**64 - 2}" in error.message


def test_expiry_is_checked_before_the_signature() -> None:
    fails_with(ErrorCode.SIG_EXPIRED, VECTOR, secret_key="wrong", now=T0 + EXPIRE + 1)


def test_tampered_sig_is_sig_bad_signature() -> None:
    doc = decode_doc(VECTOR)
    raw = bytearray(base64.b64decode(doc["TLS.sig"]))
    raw[0] ^= 1
    doc["TLS.sig"] = base64.b64encode(bytes(raw)).decode()
    error = fails_with(ErrorCode.SIG_BAD_SIGNATURE, encode_doc(doc))
    assert "secret key" in error.message


def test_extended_validity_without_resigning_is_sig_bad_signature() -> None:
    doc = decode_doc(VECTOR)
    doc["TLS.expire"] = EXPIRE * 10
    fails_with(ErrorCode.SIG_BAD_SIGNATURE, encode_doc(doc))


def test_added_userbuf_without_resigning_is_sig_bad_signature() -> None:
    doc = decode_doc(VECTOR)
    doc["TLS.userbuf"] = "YWJj"
    fails_with(ErrorCode.SIG_BAD_SIGNATURE, encode_doc(doc))


def test_truncated_mac_is_sig_bad_signature() -> None:
    doc = decode_doc(VECTOR)
    doc["TLS.sig"] = base64.b64encode(base64.b64decode(doc["TLS.sig"])[:16]).decode()
    fails_with(ErrorCode.SIG_BAD_SIGNATURE, encode_doc(doc))


def test_wrong_secret_key_is_sig_bad_signature() -> None:
    fails_with(ErrorCode.SIG_BAD_SIGNATURE, VECTOR, secret_key=KEY.upper())


def test_zip_bomb_is_malformed() -> None:
    doc = good_doc(padding="A" * 5_000_000)
    sig = encode_doc(doc, level=9)
    assert len(sig) <= MAX_USER_SIG_CHARS  # it gets past the length cap...
    assert "more than" in fails_with(ErrorCode.SIG_MALFORMED, sig).message  # ...not the inflater


def test_overlong_input_is_malformed() -> None:
    error = fails_with(ErrorCode.SIG_MALFORMED, "A" * (MAX_USER_SIG_CHARS + 1))
    assert f"longer than {MAX_USER_SIG_CHARS}" in error.message


def test_non_text_input_is_malformed_not_a_crash() -> None:
    fails_with(ErrorCode.SIG_MALFORMED, b"eJyr")  # type: ignore[arg-type]


def test_lone_surrogate_identifier_is_a_mismatch_not_a_crash() -> None:
    doc = good_doc()
    doc["TLS.identifier"] = "\ud800"
    sig = encode_doc(doc)
    fails_with(ErrorCode.SIG_IDENTIFIER_MISMATCH, sig)
    fails_with(ErrorCode.SIG_BAD_SIGNATURE, sig, user_id="\ud800")


def test_empty_secret_key_on_the_server_is_a_parameter_error() -> None:
    with pytest.raises(LocalCallError) as caught:
        verify(VECTOR, secret_key="")
    assert caught.value.code == ErrorCode.PARAM_INVALID
    assert not isinstance(caught.value, UserSigError)


def test_error_codes_are_the_vendor_numbers() -> None:
    assert fails_with(ErrorCode.SIG_EXPIRED, VECTOR, now=2 * T0).code == 70001


def test_sig_info_is_immutable() -> None:
    info = verify(VECTOR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.expire = 10**9  # type: ignore[misc]


# -- minting rejects bad arguments ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sdk_app_id": 0},
        {"sdk_app_id": 2**32},
        {"sdk_app_id": True},
        {"sdk_app_id": "1400000000"},
        {"secret_key": ""},
        {"user_id": ""},
        {"user_id": "a" * 33},
        {"user_id": "bad id"},
        {"user_id": "ü"},
        {"expire": 0},
        {"expire": -5},
        {"expire": 1.5},
        {"now": -1},
        {"now": 1.5},
        {"now": True},
        {"userbuf": "abc"},
    ],
)
def test_gen_rejects_bad_arguments_with_param_invalid(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "sdk_app_id": APP,
        "secret_key": KEY,
        "user_id": USER,
        "expire": EXPIRE,
        "now": T0,
    }
    args.update(kwargs)
    with pytest.raises(LocalCallError) as caught:
        gen_user_sig(**args)
    assert caught.value.code == ErrorCode.PARAM_INVALID


# -- properties ------------------------------------------------------------------------------

B64X_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-_"


@st.composite
def mutated_sigs(draw: st.DrawFn) -> str:
    """A valid sig with a few characters replaced, inserted or dropped."""
    chars = list(draw(st.sampled_from([VECTOR, VECTOR_USERBUF])))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(chars) - 1))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        ch = draw(st.sampled_from(B64X_ALPHABET))
        if op == "replace":
            chars[at] = ch
        elif op == "insert":
            chars.insert(at, ch)
        else:
            del chars[at]
    return "".join(chars)


@st.composite
def encoded_documents(draw: st.DrawFn) -> str:
    """Arbitrary JSON values, compressed and encoded as a sig would be."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    keys = st.sampled_from(
        [
            "TLS.ver",
            "TLS.identifier",
            "TLS.sdkappid",
            "TLS.time",
            "TLS.expire",
            "TLS.sig",
            "TLS.userbuf",
            "TLS.version",
            "x",
        ]
    )
    value = st.recursive(scalars, lambda inner: st.lists(inner) | st.dictionaries(keys, inner))
    doc = draw(st.dictionaries(keys, value) | value)
    return encode_doc(doc)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    sig=st.text()
    | st.text(alphabet=B64X_ALPHABET)
    | mutated_sigs()
    | encoded_documents()
    | st.sampled_from([VECTOR, VECTOR_USERBUF]),
    now=st.integers(0, 2 * T0),
)
def test_any_text_either_verifies_or_raises_user_sig_error(sig: str, now: int) -> None:
    try:
        info = verify(sig, now=now)
    except UserSigError as error:
        assert error.code in {
            ErrorCode.SIG_EMPTY,
            ErrorCode.SIG_MALFORMED,
            ErrorCode.SIG_VERSION,
            ErrorCode.SIG_APP_MISMATCH,
            ErrorCode.SIG_IDENTIFIER_MISMATCH,
            ErrorCode.SIG_EXPIRED,
            ErrorCode.SIG_BAD_SIGNATURE,
        }
        assert error.message
    else:
        assert isinstance(info, SigInfo)
        assert (info.sdk_app_id, info.identifier) == (APP, USER)
        assert now <= info.expires_at


@given(
    user_id=st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
    sdk_app_id=st.integers(1, 2**32 - 1),
    expire=st.integers(1, 10**9),
    now=st.integers(0, 2**40),
    userbuf=st.none() | st.binary(max_size=200),
    key=st.text(min_size=1, max_size=80),
)
def test_gen_then_verify_round_trips(
    user_id: str, sdk_app_id: int, expire: int, now: int, userbuf: bytes | None, key: str
) -> None:
    sig = gen_user_sig(sdk_app_id, key, user_id, expire, now=now, userbuf=userbuf)
    info = verify_user_sig(sig, sdk_app_id=sdk_app_id, user_id=user_id, secret_key=key, now=now + expire)
    assert info == SigInfo(user_id, sdk_app_id, now, expire, userbuf)
    with pytest.raises(UserSigError) as caught:
        verify_user_sig(sig, sdk_app_id=sdk_app_id, user_id=user_id, secret_key=key, now=now + expire + 1)
    assert caught.value.code == ErrorCode.SIG_EXPIRED


@pytest.mark.parametrize(
    ("sig", "user", "code"),
    [
        ("", "administrator", ErrorCode.SIG_EMPTY),
        ("not-a-sig!", "administrator", ErrorCode.SIG_MALFORMED),
        (
            gen_user_sig(APP + 1, KEY, "administrator", EXPIRE, now=T0),
            "administrator",
            ErrorCode.SIG_APP_MISMATCH,
        ),
        (
            gen_user_sig(APP, KEY, "alice", EXPIRE, now=T0),
            "administrator",
            ErrorCode.SIG_IDENTIFIER_MISMATCH,
        ),
        (gen_user_sig(APP, KEY, "administrator", 10, now=T0 - 100), "administrator", ErrorCode.SIG_EXPIRED),
        (
            gen_user_sig(APP, "other", "administrator", EXPIRE, now=T0),
            "administrator",
            ErrorCode.SIG_BAD_SIGNATURE,
        ),
    ],
    ids=["empty", "malformed", "other-app", "other-user", "expired", "bad-signature"],
)
def test_rest_wording_speaks_of_the_query_parameter_and_sdk_wording_of_the_sdk(
    sig: str, user: str, code: ErrorCode
) -> None:
    with pytest.raises(UserSigError) as sdk:
        verify_user_sig(sig, sdk_app_id=APP, user_id=user, secret_key=KEY, now=T0)
    with pytest.raises(UserSigError) as rest:
        verify_user_sig(sig, sdk_app_id=APP, user_id=user, secret_key=KEY, now=T0, via="rest")
    assert sdk.value.code == rest.value.code == code
    assert rest.value.message.startswith("the usersig query parameter ")
    assert not any(w in rest.value.message for w in ("init()", "renew_user_sig", "USER_ID", "user_id "))
    if code in (ErrorCode.SIG_EMPTY, ErrorCode.SIG_APP_MISMATCH, ErrorCode.SIG_IDENTIFIER_MISMATCH):
        assert "init()" in sdk.value.message  # the SDK's words stay for a login
    if code == ErrorCode.SIG_EXPIRED:
        assert "renew_user_sig()" in sdk.value.message
        assert "has expired at" in rest.value.message and "mint a new one for the admin identifier" in (
            rest.value.message
        )
