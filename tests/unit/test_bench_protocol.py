"""The load generator's LDAP: its requests decode with ldapsrv's codec, and it reads
what ldapsrv's encoders produce (result codes, entries, paged cookies)."""

from __future__ import annotations

import pytest

from bench import protocol as bp
from bench.dataset import DataSet
from bench.scenarios import member_uid_filter, sssd_user_filter
from ldapsrv.directory.filters import And, Equality, Not, Present
from ldapsrv.ldap.codec import (
    decode_message,
    decode_paged_results_value,
    encode_bind_response,
    encode_paged_results_value,
    encode_search_done,
    encode_search_entry,
)
from ldapsrv.ldap.messages import (
    BindRequest,
    Control,
    ExtendedRequest,
    LDAPResult,
    SearchRequest,
    SimpleAuth,
    UnbindRequest,
)


def test_requests_decode_with_the_servers_codec():
    bind = decode_message(bp.bind_request(7, "cn=a,ou=users,dc=example,dc=org", "secret"))
    assert bind.message_id == 7
    assert bind.request == BindRequest(3, "cn=a,ou=users,dc=example,dc=org", SimpleAuth(b"secret"))
    assert isinstance(decode_message(bp.unbind_request(8)).request, UnbindRequest)
    tls = decode_message(bp.start_tls_request(9)).request
    assert isinstance(tls, ExtendedRequest) and tls.name == "1.3.6.1.4.1.1466.20037"


def test_the_sssd_user_filter_is_the_one_sssd_sends():
    message = decode_message(
        bp.search_request(
            2,
            "ou=users,dc=example,dc=org",
            bp.SCOPE_SUB,
            sssd_user_filter("bob"),
            ("uid", "cn"),
            page_size=500,
            cookie=b"abc",
        )
    )
    request = message.request
    assert isinstance(request, SearchRequest)
    assert request.filter == And(
        (
            Equality("uid", b"bob"),
            Equality("objectClass", b"posixAccount"),
            Present("uid"),
            And((Present("uidNumber"), Not(Equality("uidNumber", b"0")))),
        )
    )
    assert request.attributes == ("uid", "cn")
    (control,) = message.controls
    assert control.oid == "1.2.840.113556.1.4.319" and control.critical
    assert decode_paged_results_value(control.value or b"") == (500, b"abc")
    group = decode_message(
        bp.search_request(3, "ou=groups,dc=example,dc=org", 2, member_uid_filter("bob"))
    ).request
    assert isinstance(group, SearchRequest) and group.filter.items[0] == Equality(  # type: ignore[attr-defined]
        "memberUid", b"bob"
    )


def test_responses_are_read_to_their_result_code_and_cookie():
    stream = bytearray(
        encode_bind_response(1, LDAPResult(49, "invalid credentials"))
        + encode_search_entry(2, "cn=a,dc=example,dc=org", [("cn", [b"a"])])
        + encode_search_done(
            2,
            LDAPResult(0),
            [Control("1.2.840.113556.1.4.319", False, encode_paged_results_value(0, b"next"))],
        )
    )
    partial = bytearray(stream[:-3])
    assert len(bp.split_messages(partial)) == 2  # the last one is not complete yet
    messages = bp.split_messages(stream)
    assert stream == bytearray()
    bind, entry, done = (bp.read_response(m) for m in messages)
    assert (bind.tag, bind.result_code, bind.cookie) == (bp.BIND_RESPONSE, 49, None)
    assert (entry.tag, entry.result_code) == (bp.SEARCH_ENTRY, -1)
    assert (done.message_id, done.result_code, done.cookie) == (2, 0, b"next")
    last = bp.read_response(encode_search_done(3, LDAPResult(0)))
    assert last.cookie is None


def test_garbage_is_a_response_error_not_a_crash():
    with pytest.raises(bp.ResponseError):
        bp.read_response(b"\x04\x03abc")
    with pytest.raises(bp.ResponseError):
        bp.read_response(b"\x30\x05\x02\x01\x01\x61\x09")


def test_the_data_set_is_deterministic_and_knows_its_answers():
    one, two = DataSet(300, 12, 7, seed=3), DataSet(300, 12, 7, seed=3)
    assert one.people == two.people and one.groups == two.groups
    assert DataSet(300, 12, 7, seed=4).groups != one.groups
    assert len(one.groups) == 13  # 12 groups + the restricted account's scope group
    assert all(len(g.members) == 7 for g in one.groups)
    assert sum(one.groups_of) == 13 * 7
    assert one.scope.members == tuple(range(7))
    with pytest.raises(ValueError):
        DataSet(5, 1, 6)
