"""Access log records: filter text, field choice, escaping, and no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from e2e.logs import parse_logfmt

from ldapsrv.auth.tokens import issue_token
from ldapsrv.directory.filters import (
    And,
    Approx,
    Equality,
    Extensible,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
)
from ldapsrv.ldap import rootdse
from ldapsrv.ldap.messages import (
    BindRequest,
    CompareRequest,
    DelRequest,
    ExtendedRequest,
    SaslAuth,
    SearchRequest,
    SimpleAuth,
)
from ldapsrv.observability.accesslog import (
    AccessLog,
    describe,
    json_line,
    logfmt_line,
    logfmt_value,
    refusal_reason,
)
from ldapsrv.observability.filtertext import filter_text
from ldapsrv.observability.logformat import configure_logging
from ldapsrv.observability.records import Observers, OperationRecord

SECRET = "correct horse battery staple"
TOKEN = issue_token(4, None).value


def record(request: object, **changes: object) -> OperationRecord:
    values: dict[str, object] = {
        "connection_id": "42-7",
        "client": "192.0.2.1:5555",
        "tls": True,
        "message_id": 3,
        "request": request,
        "request_type": type(request).__name__,
        "identity": "",
        "result_code": 0,
        "entries": 0,
        "duration_ms": 1.23456,
    }
    values.update(changes)
    return OperationRecord(**values)  # type: ignore[arg-type]


def search(filter_: object, attrs: tuple[str, ...] = ()) -> SearchRequest:
    return SearchRequest("dc=example,dc=org", 2, 0, 0, 0, False, filter_, attrs)  # type: ignore[arg-type]


# -- filters ----------------------------------------------------------------------------


def test_sssd_filter_comes_back_in_rfc4515_form() -> None:
    tree = And(
        (
            Equality("uid", b"alice"),
            Equality("objectClass", b"posixAccount"),
            Present("uid"),
            And((Present("uidNumber"), Not(Equality("uidNumber", b"0")))),
        )
    )
    assert filter_text(tree) == (
        "(&(uid=alice)(objectClass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))"
    )


def test_every_filter_kind_is_rendered() -> None:
    tree = Or(
        (
            Substrings("cn", b"al", (b"i",), b"ce"),
            Substrings("cn", None, (), b"x"),
            GreaterOrEqual("uidNumber", b"10"),
            LessOrEqual("uidNumber", b"20"),
            Approx("cn", b"alyce"),
            Extensible("2.5.13.2", "cn", b"bob", True),
            Extensible("caseIgnoreMatch", None, b"bob", False),
            And(()),
        )
    )
    assert filter_text(tree) == (
        "(|(cn=al*i*ce)(cn=*x)(uidNumber>=10)(uidNumber<=20)(cn~=alyce)"
        "(cn:dn:2.5.13.2:=bob)(:caseIgnoreMatch:=bob)(&))"
    )


def test_filter_values_escape_specials_controls_and_invalid_utf8() -> None:
    assert filter_text(Equality("cn", b"a*b(c)d\\e\x00")) == "(cn=a\\2ab\\28c\\29d\\5ce\\00)"
    assert filter_text(Equality("cn", b"line\nbreak")) == "(cn=line\\0abreak)"
    assert filter_text(Equality("cn", "Zoë".encode())) == "(cn=Zoë)"
    assert filter_text(Equality("cn", b"\xff\xfe")) == "(cn=\\ff\\fe)"


# -- fields -----------------------------------------------------------------------------


def test_search_line_has_base_scope_filter_attributes_and_entries() -> None:
    fields = describe(record(search(Present("objectClass"), ("cn", "mail")), entries=5))
    assert fields == {
        "conn": "42-7",
        "client": "192.0.2.1:5555",
        "tls": True,
        "op": "search",
        "msgid": 3,
        "identity": "",
        "base": "dc=example,dc=org",
        "scope": "sub",
        "filter": "(objectClass=*)",
        "attrs": ["cn", "mail"],
        "result": 0,
        "result_name": "success",
        "entries": 5,
        "ms": 1.235,
    }


@pytest.mark.parametrize(
    ("password", "method"),
    [(SECRET.encode(), "password"), (TOKEN.encode(), "token"), (b"", "anonymous")],
)
def test_bind_line_names_the_method_never_the_credential(password: bytes, method: str) -> None:
    bind = BindRequest(
        3, "cn=alice,ou=users,dc=example,dc=org" if password else "", SimpleAuth(password)
    )
    fields = describe(record(bind, result_code=49, refusal="wrong password"))
    assert fields["method"] == method
    for line in (json_line(fields), logfmt_line(fields)):
        assert SECRET not in line and TOKEN not in line and TOKEN[-20:] not in line
    if password:
        assert fields["reason"] == "wrong_password"


def test_sasl_bind_names_the_mechanism_not_the_credentials() -> None:
    fields = describe(
        record(
            BindRequest(3, "", SaslAuth("PLAIN", b"\x00alice\x00" + SECRET.encode())), result_code=7
        )
    )
    assert (fields["method"], fields["mechanism"]) == ("sasl", "PLAIN")
    assert SECRET not in json_line(fields)


def test_compare_and_password_modify_lines_carry_no_values() -> None:
    compare = describe(
        record(CompareRequest("cn=alice", "userPassword", SECRET.encode()), result_code=5)
    )
    assert (compare["op"], compare["dn"], compare["attr"]) == (
        "compare",
        "cn=alice",
        "userPassword",
    )
    passwd = describe(record(ExtendedRequest(rootdse.PASSWORD_MODIFY, SECRET.encode())))
    assert (passwd["op"], passwd["oid"]) == ("passwd", rootdse.PASSWORD_MODIFY)
    for fields in (compare, passwd):
        assert SECRET not in json_line(fields) and SECRET not in logfmt_line(fields)


def test_writes_unbind_and_undecodable_requests_have_lines_too() -> None:
    delete = describe(record(DelRequest("cn=bob,ou=users,dc=example,dc=org"), result_code=53))
    assert (delete["op"], delete["dn"], delete["result_name"]) == (
        "delete",
        "cn=bob,ou=users,dc=example,dc=org",
        "unwillingToPerform",
    )
    rejected = describe(record(None, request_type="SearchRequest", result_code=2))
    assert (rejected["op"], rejected["result"]) == ("search", 2)
    unbind = describe(record(None, request_type="UnbindRequest", result_code=None))
    assert unbind["op"] == "unbind" and "result" not in unbind


@pytest.mark.parametrize(
    ("refusal", "label"),
    [
        ("wrong password", "wrong_password"),
        ("no such account", "no_such_account"),
        ("bind DN does not name an account", "no_such_account"),
        ("account is disabled", "account_disabled"),
        ("account has no password", "no_password"),
        ("service accounts bind only with an app-password token", "service_account_password"),
        ("unknown token (lookup id abc)", "unknown_token"),
        ("wrong token secret", "wrong_token_secret"),
        ("token belongs to account bob", "token_of_other_account"),
        ("token nas expired at 2026-01-01T00:00:00+00:00", "token_expired"),
        ("token nas has intent api, not app_password", "token_not_usable"),
        ("throttled", "throttled"),
        ("something new", "other"),
    ],
)
def test_bind_refusals_map_to_a_bounded_set_of_reasons(refusal: str, label: str) -> None:
    bind = BindRequest(3, "cn=x", SimpleAuth(b"x"))
    assert refusal_reason(record(bind, result_code=49, refusal=refusal)) == label


def test_a_bind_refused_before_checking_reports_its_result() -> None:
    bind = BindRequest(3, "cn=x", SimpleAuth(b"x"))
    assert refusal_reason(record(bind, result_code=13)) == "confidentialityRequired"
    assert refusal_reason(record(bind, result_code=0)) == ""


# -- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "",
        "two words",
        'a "quote"',
        "back\\slash",
        "x=y",
        "new\nline\ttab\r",
        "bell\x07",
        "Zoë",
    ],
)
def test_logfmt_values_round_trip_through_an_independent_parser(text: str) -> None:
    line = logfmt_line({"a": text, "b": "end"})
    assert "\n" not in line and "\x07" not in line
    assert parse_logfmt(line) == {"a": text, "b": "end"}


def test_logfmt_renders_booleans_lists_and_none() -> None:
    assert logfmt_value(True) == "true"
    assert logfmt_value(["cn", "mail"]) == "cn,mail"
    assert logfmt_value([]) == '""'
    assert logfmt_value(None) == '""'
    assert logfmt_value(1.5) == "1.5"


def test_json_lines_stay_on_one_line() -> None:
    line = json_line({"filter": "(cn=a\nb)", "dn": "cn=Zoë"})
    assert "\n" not in line and json.loads(line) == {"filter": "(cn=a\nb)", "dn": "cn=Zoë"}


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Whatever ``configure_logging`` sends to the stream; the root logger restored after."""
    root, access = logging.getLogger(), logging.getLogger("ldapsrv.access")
    saved = (list(root.handlers), root.level, access.level)
    try:
        yield io.StringIO()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        access.setLevel(saved[2])


@pytest.mark.parametrize("fmt", ["json", "logfmt", "text"])
def test_access_lines_in_each_log_format(fmt: str, log_output: io.StringIO) -> None:
    configure_logging("warning", fmt, access_log=True, stream=log_output)
    logging.getLogger("ldapsrv.test").info("hidden below warning")
    logging.getLogger("ldapsrv.test").warning("shown %s", "here")
    AccessLog().operation_done(record(search(Present("cn"), ("cn",)), entries=2))
    out = log_output
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the access log is on at INFO although the level is warning
    if fmt == "json":
        warning, access = (json.loads(line) for line in lines)
        assert (warning["level"], warning["msg"]) == ("warning", "shown here")
        assert access["logger"] == "ldapsrv.access" and access["entries"] == 2
        assert access["attrs"] == ["cn"] and "msg" not in access
    elif fmt == "logfmt":
        warning, access = (parse_logfmt(line) for line in lines)
        assert (warning["level"], warning["msg"]) == ("warning", "shown here")
        assert (access["op"], access["filter"], access["entries"]) == ("search", "(cn=*)", "2")
    else:
        assert lines[0].endswith("WARNING ldapsrv.test: shown here")
        assert "INFO ldapsrv.access: conn=42-7 client=192.0.2.1:5555 tls=true op=search" in lines[1]


def test_access_log_can_be_switched_off(log_output: io.StringIO) -> None:
    configure_logging("debug", "text", access_log=False, stream=log_output)
    AccessLog().connection_opened("1-1", "127.0.0.1:1", False)
    logging.getLogger("ldapsrv.test").debug("still logged")
    assert log_output.getvalue().splitlines()[0].endswith("DEBUG ldapsrv.test: still logged")
    assert "ldapsrv.access" not in log_output.getvalue()


def test_a_failing_observer_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[OperationRecord] = []

    class Broken:
        def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
            raise RuntimeError("boom")

        def connection_closed(self, connection_id: str, client: str) -> None:
            raise RuntimeError("boom")

        def operation_done(self, record: OperationRecord) -> None:
            raise RuntimeError("boom")

    class Recorder(Broken):
        def operation_done(self, record: OperationRecord) -> None:
            seen.append(record)

    observers = Observers(Broken(), Recorder())
    done = record(search(Present("cn")))
    observers.operation_done(done)
    observers.connection_opened("1-1", "x", False)
    assert seen == [done]
    assert "observer failed" in caplog.text
