"""Digest authentication: RFC vectors, parsing, nonces, and a UAC/UAS pair in memory."""

from __future__ import annotations

import hashlib

import pytest

from ccserver.sip.digest import (
    ALGORITHMS,
    AuthResult,
    DigestAuthenticator,
    NonceManager,
    build_authorization,
    compute_ha1,
    compute_response,
    parse_challenge,
    parse_credentials,
    select_challenge,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "pbx.example.com"
USERS = {"1001": "s3cret", "1002": 'qu"ote\\d'}
T0 = 1_700_000_000.0

# RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


# --------------------------------------------------------------------------- vectors


def rfc7616_response(algorithm: str) -> str:
    return compute_response(
        algorithm=algorithm,
        username="Mufasa",
        realm="http-auth@example.org",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        nonce=RFC7616_NONCE,
        qop="auth",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
    )


def test_rfc7616_sha256_example() -> None:
    assert (
        rfc7616_response("SHA-256")
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_rfc7616_md5_example() -> None:
    assert rfc7616_response("MD5") == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc2617_md5_example() -> None:
    # RFC 2617 §3.5.
    assert (
        compute_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_algorithm_names_are_case_insensitive() -> None:
    assert rfc7616_response("sha-256") == rfc7616_response("SHA-256")


def test_rfc2069_form_without_qop() -> None:
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5("u:r:p")
    ha2 = md5("REGISTER:sip:r")
    assert compute_response(
        algorithm="MD5",
        username="u",
        realm="r",
        password="p",
        method="REGISTER",
        uri="sip:r",
        nonce="n",
    ) == md5(f"{ha1}:n:{ha2}")


def test_auth_int_hashes_the_body() -> None:
    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    body = b"v=0\r\n"
    ha1 = sha(b"u:r:p")
    ha2 = sha(b"INVITE:sip:x@r:" + sha(body).encode())
    got = compute_response(
        algorithm="SHA-256",
        username="u",
        realm="r",
        password="p",
        method="INVITE",
        uri="sip:x@r",
        nonce="n",
        qop="auth-int",
        nc="00000001",
        cnonce="c",
        body=body,
    )
    assert got == sha(f"{ha1}:n:00000001:c:auth-int:{ha2}".encode())


def test_sess_variant_folds_nonce_and_cnonce_into_ha1() -> None:
    plain = compute_ha1(algorithm="MD5", username="u", realm="r", password="p")
    sess = compute_ha1(
        algorithm="MD5-sess", username="u", realm="r", password="p", nonce="n", cnonce="c"
    )
    assert sess == hashlib.md5(f"{plain}:n:c".encode()).hexdigest()
    with pytest.raises(ValueError, match="cnonce"):
        compute_ha1(algorithm="SHA-256-sess", username="u", realm="r", password="p")


@pytest.mark.parametrize(
    ("algorithm", "qop", "nc", "cnonce", "match"),
    [
        ("SHA-1", None, None, None, "unsupported digest algorithm"),
        ("MD5", "auth-conf", "00000001", "c", "unsupported qop"),
        ("MD5", "auth", None, None, "nc and cnonce"),
        ("MD5-sess", None, None, None, "cnonce"),
    ],
)
def test_compute_response_rejects(
    algorithm: str, qop: str | None, nc: str | None, cnonce: str | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        compute_response(
            algorithm=algorithm,
            username="u",
            realm="r",
            password="p",
            method="REGISTER",
            uri="sip:r",
            nonce="n",
            qop=qop,
            nc=nc,
            cnonce=cnonce,
        )


# --------------------------------------------------------------------------- parsing


def test_parse_rfc7616_authorization() -> None:
    value = (
        'Digest username="Mufasa",\r\n realm="http-auth@example.org",\r\n'
        ' uri="/dir/index.html", algorithm=SHA-256,\r\n'
        ' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001,\r\n'
        ' cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth,\r\n'
        ' response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",\r\n'
        f' opaque="{RFC7616_OPAQUE}"'
    )
    scheme, params = parse_credentials(value)
    assert scheme == "Digest"
    assert params["username"] == "Mufasa"
    assert params["nc"] == "00000001"
    assert params["qop"] == "auth"
    assert params["algorithm"] == "SHA-256"
    assert params["opaque"] == RFC7616_OPAQUE


def test_parse_challenge_keeps_qop_list_and_lowercases_names() -> None:
    scheme, params = parse_challenge(
        'digest REALM="sip.example.com", Nonce="abc", qop="auth,auth-int", stale=TRUE'
    )
    assert scheme == "digest"
    assert params == {
        "realm": "sip.example.com",
        "nonce": "abc",
        "qop": "auth,auth-int",
        "stale": "TRUE",
    }


def test_parse_unescapes_quoted_pairs() -> None:
    _, params = parse_credentials(r'Digest username="a\"b\\c", realm=""')
    assert params == {"username": 'a"b\\c', "realm": ""}


def test_parse_tolerates_empty_list_elements_and_bare_uri() -> None:
    _, params = parse_credentials("Digest ,username=u,, uri=sip:pbx.example.com ,")
    assert params == {"username": "u", "uri": "sip:pbx.example.com"}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        '"Digest" username="u"',
        'Digest username="u',
        "Digest username",
        "Digest username=",
        'Digest username="u" realm="r"',
        'Digest username="u", username="v"',
        'Digest username="a\nb"',
        'Digest username="u\\',
        "Digest =x",
        'Digest, username="u"',
    ],
)
def test_parse_rejects_junk(value: str) -> None:
    with pytest.raises(ValueError):
        parse_credentials(value)


# --------------------------------------------------------------------------- client


def test_build_authorization_reproduces_rfc7616() -> None:
    challenge = (
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    value = build_authorization(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616_CNONCE,
    )
    _, params = parse_credentials(value)
    assert params["response"] == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["algorithm"] == "SHA-256"
    assert params["opaque"] == RFC7616_OPAQUE


def test_build_authorization_without_qop_is_rfc2069() -> None:
    value = build_authorization(
        {"realm": "r", "nonce": "n"}, username="u", password="p", method="REGISTER", uri="sip:r"
    )
    _, params = parse_credentials(value)
    assert "qop" not in params and "nc" not in params and "cnonce" not in params
    assert params["algorithm"] == "MD5"


def test_build_authorization_escapes_quotes() -> None:
    value = build_authorization(
        'Digest realm="r", nonce="n", qop="auth"',
        username='we"ird\\',
        password="p",
        method="REGISTER",
        uri="sip:r",
    )
    assert parse_credentials(value)[1]["username"] == 'we"ird\\'


@pytest.mark.parametrize(
    "challenge",
    [
        'Basic realm="r"',
        'Digest nonce="n"',
        'Digest realm="r", nonce="n", algorithm=SHA-1',
        'Digest realm="r", nonce="n", qop="auth-conf"',
    ],
)
def test_build_authorization_rejects_unusable_challenges(challenge: str) -> None:
    with pytest.raises(ValueError):
        build_authorization(challenge, username="u", password="p", method="REGISTER", uri="sip:r")


def test_select_challenge_takes_topmost_supported() -> None:
    values = [
        'Basic realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-999',
        'Digest realm="r", nonce="n", algorithm=MD5',
        'Digest realm="r", nonce="n", algorithm=SHA-256',
    ]
    assert select_challenge(values) == values[2]
    assert select_challenge(values, algorithms=["SHA-256"]) == values[3]
    assert select_challenge(values[:2]) is None


# --------------------------------------------------------------------------- nonces


def test_nonce_lifecycle() -> None:
    nonces = NonceManager(SECRET, lifetime=300.0)
    nonce = nonces.new(T0)
    assert nonces.check(nonce, T0) == "ok"
    assert nonces.check(nonce, T0 + 300.0) == "ok"
    assert nonces.check(nonce, T0 + 300.5) == "stale"
    assert nonces.check(nonce, T0 + 86_400.0) == "stale"


def test_nonce_is_quotable_and_unique() -> None:
    nonces = NonceManager(SECRET)
    a, b = nonces.new(T0), nonces.new(T0)
    assert a != b
    assert set(a) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_nonce_from_another_secret_or_tampered_is_invalid() -> None:
    nonces = NonceManager(SECRET)
    nonce = nonces.new(T0)
    other = NonceManager(b"another secret, sixteen+ bytes")
    assert other.check(nonce, T0) == "invalid"
    flipped = nonce[:5] + ("A" if nonce[5] != "A" else "B") + nonce[6:]
    assert nonces.check(flipped, T0) == "invalid"
    for junk in ("", "abc", nonce + "A", nonce[:-1] + "!", "é" * len(nonce)):
        assert nonces.check(junk, T0) == "invalid"


def test_nonce_from_the_future_is_invalid() -> None:
    nonces = NonceManager(SECRET, clock_skew=5.0)
    nonce = nonces.new(T0 + 60.0)
    assert nonces.check(nonce, T0) == "invalid"
    assert nonces.check(nonce, T0 + 56.0) == "ok"


def test_any_node_with_the_secret_verifies() -> None:
    nonce = NonceManager(SECRET).new(T0)
    assert NonceManager(SECRET).check(nonce, T0 + 1.0) == "ok"


def test_nonce_manager_rejects_weak_configuration() -> None:
    with pytest.raises(ValueError):
        NonceManager(b"short")
    with pytest.raises(ValueError):
        NonceManager(SECRET, lifetime=0)
    with pytest.raises(ValueError):
        NonceManager(SECRET, nc_window=0)


def test_nc_must_not_repeat() -> None:
    nonces = NonceManager(SECRET)
    nonce = nonces.new(T0)
    assert nonces.check_nc(nonce, 1)
    assert not nonces.check_nc(nonce, 1)
    assert nonces.check_nc(nonce, 2)
    assert nonces.check_nc(nonce, 5)
    assert not nonces.check_nc(nonce, 5)
    assert not nonces.check_nc(nonce, 0)
    assert not nonces.check_nc("forged", 1)


def test_nc_window_accepts_reordering_once() -> None:
    nonces = NonceManager(SECRET, nc_window=4)
    nonce = nonces.new(T0)
    assert nonces.check_nc(nonce, 3)
    assert nonces.check_nc(nonce, 2)  # overtaken in flight
    assert not nonces.check_nc(nonce, 2)
    assert nonces.check_nc(nonce, 10)
    assert not nonces.check_nc(nonce, 6)  # left the window
    assert nonces.check_nc(nonce, 7)
    assert not nonces.check_nc(nonce, 3)


def test_nc_window_of_one_demands_increase() -> None:
    nonces = NonceManager(SECRET, nc_window=1)
    nonce = nonces.new(T0)
    assert nonces.check_nc(nonce, 2)
    assert not nonces.check_nc(nonce, 1)
    assert nonces.check_nc(nonce, 3)


def test_nc_memory_is_dropped_with_expired_nonces() -> None:
    nonces = NonceManager(SECRET, lifetime=300.0)
    old = nonces.new(T0)
    assert nonces.check_nc(old, 1)
    assert len(nonces) == 1
    fresh = nonces.new(T0 + 301.0)
    assert len(nonces) == 0
    # Forgetting it must not reopen it: the floor keeps refusing, and check() says stale.
    assert not nonces.check_nc(old, 1)
    assert nonces.check(old, T0 + 301.0) == "stale"
    assert nonces.check_nc(fresh, 1)


def test_nc_memory_is_bounded() -> None:
    nonces = NonceManager(SECRET, max_tracked=3)
    issued = [nonces.new(T0 + i) for i in range(5)]
    for nonce in issued[:4]:
        assert nonces.check_nc(nonce, 1)
    assert len(nonces) == 3
    # The evicted nonce cannot be replayed; newer untracked ones are still accepted.
    assert not nonces.check_nc(issued[0], 1)
    assert nonces.check_nc(issued[4], 1)


# --------------------------------------------------------------------------- UAC <-> UAS


@pytest.fixture
def uas() -> DigestAuthenticator:
    return DigestAuthenticator(REALM, NonceManager(SECRET), USERS.get)


def answer(
    challenge: str,
    *,
    username: str = "1001",
    password: str = "s3cret",
    method: str = "REGISTER",
    nc: int = 1,
) -> str:
    return build_authorization(
        challenge,
        username=username,
        password=password,
        method=method,
        uri=f"sip:{REALM}",
        nc=nc,
    )


def test_challenges_offer_sha256_then_md5(uas: DigestAuthenticator) -> None:
    values = uas.challenges(T0)
    assert ALGORITHMS == ("SHA-256", "MD5")
    parsed = [parse_challenge(v) for v in values]
    assert [p["algorithm"] for _, p in parsed] == ["SHA-256", "MD5"]
    for scheme, params in parsed:
        assert scheme == "Digest"
        assert params["realm"] == REALM
        assert params["qop"] == "auth"
        assert "stale" not in params
    assert parsed[0][1]["nonce"] == parsed[1][1]["nonce"]
    assert parse_challenge(uas.challenges(T0, stale=True)[0])[1]["stale"] == "true"


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_round_trip_ok(uas: DigestAuthenticator, index: int) -> None:
    challenge = uas.challenges(T0)[index]
    result = uas.verify([answer(challenge)], "REGISTER", T0 + 1)
    assert result == AuthResult("ok", username="1001")


def test_round_trip_with_quotes_in_password(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0], username="1002", password=USERS["1002"])
    assert uas.verify([value], "REGISTER", T0).status == "ok"


def test_wrong_password_is_forbidden(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0], password="guess")
    result = uas.verify([value], "REGISTER", T0)
    assert result.status == "forbidden"
    assert result.username is None


def test_unknown_user_is_forbidden(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0], username="9999")
    assert uas.verify([value], "REGISTER", T0).status == "forbidden"


def test_wrong_method_is_forbidden(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0], method="INVITE")
    assert uas.verify([value], "REGISTER", T0).status == "forbidden"


def test_username_must_match_the_one_acted_for(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0])
    result = uas.verify([value], "REGISTER", T0, expected_username="1002")
    assert result.status == "forbidden"


def test_no_header_is_a_challenge(uas: DigestAuthenticator) -> None:
    result = uas.verify([], "REGISTER", T0)
    assert result.status == "challenge" and not result.stale


def test_other_realms_and_schemes_are_ignored(uas: DigestAuthenticator) -> None:
    foreign = 'Digest username="x", realm="other", nonce="n", uri="sip:o", response="0"'
    assert uas.verify(["Basic dXNlcjpwYXNz", foreign], "REGISTER", T0).status == "challenge"
    good = answer(uas.challenges(T0)[0])
    assert uas.verify([foreign, "Basic dXNlcjpwYXNz", good], "REGISTER", T0).status == "ok"


def test_stale_nonce_with_right_password_is_stale_challenge(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0])
    result = uas.verify([value], "REGISTER", T0 + 301.0)
    assert result.status == "challenge" and result.stale


def test_stale_nonce_with_wrong_password_is_forbidden(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0], password="guess")
    result = uas.verify([value], "REGISTER", T0 + 301.0)
    assert result.status == "forbidden" and not result.stale


def test_forged_nonce_is_a_fresh_challenge(uas: DigestAuthenticator) -> None:
    value = answer('Digest realm="pbx.example.com", nonce="made-up", qop="auth"')
    result = uas.verify([value], "REGISTER", T0)
    assert result.status == "challenge" and not result.stale


def test_replayed_nc_is_a_challenge(uas: DigestAuthenticator) -> None:
    challenge = uas.challenges(T0)[0]
    value = answer(challenge)
    assert uas.verify([value], "REGISTER", T0).status == "ok"
    assert uas.verify([value], "REGISTER", T0 + 1).status == "challenge"
    assert uas.verify([answer(challenge, nc=2)], "REGISTER", T0 + 2).status == "ok"


def test_unoffered_algorithm_is_a_challenge() -> None:
    sha_only = DigestAuthenticator(REALM, NonceManager(SECRET), USERS.get, algorithms=["SHA-256"])
    assert len(sha_only.challenges(T0)) == 1
    nonce = parse_challenge(sha_only.challenges(T0)[0])[1]["nonce"]
    md5 = answer(f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5')
    assert sha_only.verify([md5], "REGISTER", T0).status == "challenge"
    weird = md5.replace("algorithm=MD5", "algorithm=SHA-1")
    assert sha_only.verify([weird], "REGISTER", T0).status == "challenge"


def test_opaque_is_checked() -> None:
    uas = DigestAuthenticator(REALM, NonceManager(SECRET), USERS.get, opaque="xyz")
    challenge = uas.challenges(T0)[0]
    assert parse_challenge(challenge)[1]["opaque"] == "xyz"
    assert uas.verify([answer(challenge)], "REGISTER", T0).status == "ok"
    tampered = answer(challenge.replace('opaque="xyz"', 'opaque="abc"'), nc=2)
    assert uas.verify([tampered], "REGISTER", T0).status == "challenge"


def test_auth_int_is_accepted_and_covers_the_body(uas: DigestAuthenticator) -> None:
    challenge = uas.challenges(T0)[0].replace('qop="auth"', 'qop="auth-int"')
    value = build_authorization(
        challenge,
        username="1001",
        password="s3cret",
        method="INVITE",
        uri="sip:q@pbx.example.com",
        body=b"v=0\r\n",
    )
    assert uas.verify([value], "INVITE", T0, body=b"v=1\r\n").status == "forbidden"
    assert uas.verify([value], "INVITE", T0, body=b"v=0\r\n").status == "ok"


def test_uri_must_match_request_uri_when_given(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0])
    result = uas.verify([value], "REGISTER", T0, request_uri="sip:elsewhere")
    assert result.status == "bad"
    assert uas.verify([value], "REGISTER", T0, request_uri=f"sip:{REALM}").status == "ok"


def _without(value: str, name: str) -> str:
    _, params = parse_credentials(value)
    del params[name]
    return "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items())


@pytest.mark.parametrize("name", ["username", "nonce", "uri", "response", "qop", "nc", "cnonce"])
def test_missing_parameter_is_bad(uas: DigestAuthenticator, name: str) -> None:
    value = _without(answer(uas.challenges(T0)[0]), name)
    assert uas.verify([value], "REGISTER", T0).status == "bad"


def test_missing_realm_is_bad(uas: DigestAuthenticator) -> None:
    value = _without(answer(uas.challenges(T0)[0]), "realm")
    assert uas.verify([value], "REGISTER", T0).status == "bad"


@pytest.mark.parametrize(
    ("old", "new"),
    [("nc=00000001", "nc=1"), ("nc=00000001", "nc=0000000g"), ("qop=auth", "qop=auth-conf")],
)
def test_malformed_values_are_bad(uas: DigestAuthenticator, old: str, new: str) -> None:
    value = answer(uas.challenges(T0)[0]).replace(old, new)
    assert uas.verify([value], "REGISTER", T0).status == "bad"


def test_unparseable_digest_is_bad(uas: DigestAuthenticator) -> None:
    assert uas.verify(['Digest username="1001'], "REGISTER", T0).status == "bad"


def test_userhash_is_refused(uas: DigestAuthenticator) -> None:
    value = answer(uas.challenges(T0)[0]) + ", userhash=true"
    assert uas.verify([value], "REGISTER", T0).status == "forbidden"


def test_authenticator_validates_configuration() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, NonceManager(SECRET), USERS.get, algorithms=[])
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, NonceManager(SECRET), USERS.get, algorithms=["SHA-1"])


def test_sha512_256_round_trip() -> None:
    uas = DigestAuthenticator(
        REALM, NonceManager(SECRET), USERS.get, algorithms=["SHA-512-256", "SHA-256"]
    )
    challenge = uas.challenges(T0)[0]
    assert parse_challenge(challenge)[1]["algorithm"] == "SHA-512-256"
    assert uas.verify([answer(challenge)], "REGISTER", T0).status == "ok"
