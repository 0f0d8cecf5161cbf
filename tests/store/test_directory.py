"""SqlDirectory: users, groups, memberships, numbers, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, insert

from ldapsrv.directory.predicates import FALSE, TRUE, FieldEquals, InGroup
from ldapsrv.errors import AlreadyExists, InvalidValue, NotFound, RangeExhausted
from ldapsrv.store.directory import NewUser, SqlDirectory
from ldapsrv.store.models import groups, utcnow

from .conftest import GID_RANGE, UID_RANGE


class TestCreateUser:
    def test_first_user_gets_the_first_uid_and_the_default_group_created_for_it(self, directory):
        alice = directory.create_user(NewUser("alice", mail="alice@example.org"))
        users = directory.get_group("users")
        assert alice.uid_number == UID_RANGE[0]
        assert users.gid_number == GID_RANGE[0]
        assert alice.gid_number == users.gid_number
        assert alice.group_names == ("users",)
        assert users.member_names == ("alice",)
        assert alice.home_directory == "/home/alice"
        assert alice.login_shell == "/bin/bash"
        assert alice.mail == "alice@example.org"
        assert alice.created.tzinfo is UTC and alice.created == alice.modified
        assert len(alice.uuid) == 36

    def test_later_users_get_the_next_uid_and_join_the_existing_default_group(self, directory):
        directory.create_user(NewUser("alice"))
        bob = directory.create_user(NewUser("bob"))
        assert bob.uid_number == UID_RANGE[0] + 1
        assert bob.gid_number == GID_RANGE[0]
        assert directory.get_group("users").member_names == ("alice", "bob")

    def test_explicit_gid_sets_the_primary_group_without_creating_or_joining_one(self, directory):
        carol = directory.create_user(NewUser("carol", gid_number=5000))
        assert carol.gid_number == 5000
        assert carol.group_names == ()
        assert directory.list_groups() == []

    def test_every_given_attribute_is_stored(self, directory):
        spec = NewUser(
            "dave",
            password_hash="$2b$10$abc",
            uid_number=4242,
            gid_number=4242,
            display_name="Dave Émile 🚀",
            given_name="Dave",
            surname="Émile",
            mail="dave@example.org",
            home_directory="/srv/home/dave",
            login_shell="/bin/zsh",
            gecos="Dave E,,,",
        )
        dave = directory.create_user(spec)
        assert dave == directory.get_user("DAVE")
        assert (dave.display_name, dave.surname, dave.gecos) == (
            "Dave Émile 🚀",
            "Émile",
            "Dave E,,,",
        )
        assert (dave.home_directory, dave.login_shell) == ("/srv/home/dave", "/bin/zsh")
        assert directory.get_credentials("dave").password_hash == "$2b$10$abc"

    def test_empty_strings_mean_absent(self, directory):
        erin = directory.create_user(NewUser("erin", mail="", home_directory="", login_shell=""))
        assert erin.mail is None
        assert (erin.home_directory, erin.login_shell) == ("/home/erin", "/bin/bash")

    def test_names_are_unique_regardless_of_case(self, directory):
        directory.create_user(NewUser("alice"))
        with pytest.raises(AlreadyExists, match=r'^user "alice" already exists$'):
            directory.create_user(NewUser("ALICE"))

    def test_the_name_keeps_its_case(self, directory):
        directory.create_user(NewUser("McAdmin"))
        assert directory.get_user("mcadmin").name == "McAdmin"

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            (NewUser("bad name"), "account name"),
            (NewUser("ok", uid_number=0), "uid number must be from 1"),
            (NewUser("ok", gid_number=-5), "gid number must be from 1"),
            (NewUser("ok", uid_number=2**31), "uid number must be from 1"),
            (NewUser("ok", mail="x" * 256), "mail must be at most 255"),
            (NewUser("ok", display_name="a\nb"), "display name must not contain control"),
            (NewUser("ok", gecos="a:b"), "gecos must not contain ':'"),
            (NewUser("ok", home_directory="home/ok"), "home directory must be an absolute path"),
            (NewUser("ok", login_shell="bash"), "login shell must be an absolute path"),
        ],
    )
    def test_invalid_values_are_refused_naming_the_rule(self, directory, spec, message):
        with pytest.raises(InvalidValue, match=message):
            directory.create_user(spec)
        assert directory.list_users() == []


class TestNumbers:
    def test_explicit_uid_outside_the_range_is_accepted(self, directory):
        assert directory.create_user(NewUser("root2", uid_number=500)).uid_number == 500

    def test_explicit_uid_already_taken_is_refused_naming_the_number_and_owner(self, directory):
        directory.create_user(NewUser("alice", uid_number=500))
        with pytest.raises(
            AlreadyExists, match=r'^uid number 500 is already taken by user "alice"$'
        ):
            directory.create_user(NewUser("bob", uid_number=500))

    def test_explicit_gid_already_taken_is_refused_naming_the_number_and_owner(self, directory):
        directory.create_group("staff", gid_number=700)
        with pytest.raises(
            AlreadyExists, match=r'^gid number 700 is already taken by group "staff"$'
        ):
            directory.create_group("other", gid_number=700)

    def test_allocation_skips_numbers_taken_by_explicit_assignment(self, directory):
        low = UID_RANGE[0]
        directory.create_user(NewUser("a", uid_number=low))
        directory.create_user(NewUser("b", uid_number=low + 1))
        directory.create_user(NewUser("c", uid_number=low + 3))
        assert directory.create_user(NewUser("d")).uid_number == low + 2
        assert directory.create_user(NewUser("e")).uid_number == low + 4

    def test_allocation_skips_a_long_run_of_taken_numbers(self, directory):
        # More than one allocator window (1024) of explicitly taken gids.
        low = GID_RANGE[0]
        now = utcnow()
        with directory.engine.begin() as conn:
            conn.execute(
                insert(groups),
                [
                    {
                        "uuid": f"00000000-0000-4000-8000-{i:012d}",
                        "name": f"g{i}",
                        "name_lower": f"g{i}",
                        "gid_number": low + i,
                        "created_at": now,
                        "modified_at": now,
                    }
                    for i in range(1100)
                ],
            )
        assert directory.create_group("next").gid_number == low + 1100

    def test_numbers_are_never_reused_after_deletion(self, directory):
        first = directory.create_user(NewUser("alice")).uid_number
        directory.delete_user("alice")
        assert directory.create_user(NewUser("alice")).uid_number == first + 1
        gid = directory.create_group("staff").gid_number
        directory.delete_group("staff")
        assert directory.create_group("staff").gid_number == gid + 1

    def test_an_exhausted_range_raises_range_exhausted_and_changes_nothing(self, engine):
        directory = SqlDirectory(engine, uid_range=(100, 101), gid_range=(200, 201))
        directory.create_user(NewUser("a"))
        directory.create_user(NewUser("b"))
        with pytest.raises(RangeExhausted, match=r"no free uid number left in the range 100-101"):
            directory.create_user(NewUser("c"))
        assert [u.name for u in directory.list_users()] == ["a", "b"]
        directory.create_group("g2")
        with pytest.raises(RangeExhausted, match=r"no free gid number left in the range 200-201"):
            directory.create_group("g3")

    def test_a_widened_range_continues_from_the_counter(self, engine):
        SqlDirectory(engine, uid_range=(100, 100), gid_range=(200, 299)).create_user(NewUser("a"))
        wider = SqlDirectory(engine, uid_range=(100, 199), gid_range=(200, 299))
        assert wider.create_user(NewUser("b")).uid_number == 101

    def test_a_range_moved_up_starts_at_its_new_low_end(self, engine):
        SqlDirectory(engine, uid_range=(100, 199), gid_range=(200, 299)).create_user(NewUser("a"))
        moved = SqlDirectory(engine, uid_range=(5000, 5999), gid_range=(200, 299))
        assert moved.create_user(NewUser("b")).uid_number == 5000

    def test_bad_ranges_are_configuration_errors(self, engine):
        with pytest.raises(ValueError, match=r"uid range"):
            SqlDirectory(engine, uid_range=(10, 5), gid_range=(1, 2))
        with pytest.raises(ValueError, match=r"gid range"):
            SqlDirectory(engine, uid_range=(1, 2), gid_range=(0, 5))


class TestTimestamps:
    def test_timestamps_are_whole_seconds_in_utc_as_ldap_shows_them(self, engine):
        odd = datetime(2024, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=1)))
        directory = SqlDirectory(
            engine, uid_range=UID_RANGE, gid_range=GID_RANGE, clock=lambda: odd
        )
        alice = directory.create_user(NewUser("alice"))
        assert alice.created == datetime(2024, 3, 4, 4, 6, 7, tzinfo=UTC)
        assert directory.search_users(FieldEquals("created", alice.created), limit=5) == [alice]

    def test_the_default_clock_is_the_current_time(self, engine):
        before = datetime.now(UTC).replace(microsecond=0)
        directory = SqlDirectory(engine, uid_range=UID_RANGE, gid_range=GID_RANGE)
        created = directory.create_user(NewUser("alice")).created
        assert before <= created <= datetime.now(UTC)


class TestGroups:
    def test_create_group_allocates_a_gid_and_stores_the_description(self, directory):
        staff = directory.create_group("staff", description="Everyone on staff")
        assert staff.gid_number == GID_RANGE[0]
        assert staff.description == "Everyone on staff"
        assert staff.member_names == ()
        assert directory.get_group("STAFF") == staff

    def test_group_names_are_unique_regardless_of_case(self, directory):
        directory.create_group("Staff")
        with pytest.raises(AlreadyExists, match=r'^group "STAFF" already exists$'):
            directory.create_group("STAFF")

    def test_invalid_group_name_is_refused(self, directory):
        with pytest.raises(InvalidValue, match=r"group name"):
            directory.create_group("no spaces")

    def test_missing_things_raise_not_found_naming_them(self, directory):
        with pytest.raises(NotFound, match=r'^group "nope" not found$'):
            directory.get_group("nope")
        with pytest.raises(NotFound, match=r'^user "nope" not found$'):
            directory.get_user("nope")
        with pytest.raises(NotFound, match=r'^group "nope" not found$'):
            directory.delete_group("nope")
        with pytest.raises(NotFound, match=r'^user "nope" not found$'):
            directory.delete_user("nope")

    def test_list_groups_is_ordered_by_name_case_insensitively(self, directory):
        for name in ("beta", "Alpha", "gamma"):
            directory.create_group(name)
        assert [g.name for g in directory.list_groups()] == ["Alpha", "beta", "gamma"]


class TestMemberships:
    def test_add_member_shows_on_both_sides_and_touches_both(self, directory):
        alice = directory.create_user(NewUser("alice", gid_number=1))
        staff = directory.create_group("staff")
        directory.add_member("Staff", "ALICE")
        alice2, staff2 = directory.get_user("alice"), directory.get_group("staff")
        assert alice2.group_names == ("staff",)
        assert staff2.member_names == ("alice",)
        assert alice2.modified > alice.modified
        assert staff2.modified > staff.modified
        assert alice2.created == alice.created

    def test_adding_twice_is_already_exists(self, directory):
        directory.create_user(NewUser("alice", gid_number=1))
        directory.create_group("staff")
        directory.add_member("staff", "alice")
        with pytest.raises(
            AlreadyExists, match=r'^user "alice" is already a member of group "staff"$'
        ):
            directory.add_member("staff", "alice")

    def test_membership_of_missing_things_is_not_found(self, directory):
        directory.create_user(NewUser("alice", gid_number=1))
        directory.create_group("staff")
        with pytest.raises(NotFound, match=r'^group "nope" not found$'):
            directory.add_member("nope", "alice")
        with pytest.raises(NotFound, match=r'^user "nope" not found$'):
            directory.add_member("staff", "nope")
        with pytest.raises(NotFound, match=r'^user "alice" is not a member of group "staff"$'):
            directory.remove_member("staff", "alice")

    def test_remove_member_removes_and_touches_the_group(self, directory):
        directory.create_user(NewUser("alice", gid_number=1))
        directory.create_group("staff")
        directory.add_member("staff", "alice")
        before = directory.get_group("staff")
        directory.remove_member("staff", "alice")
        after = directory.get_group("staff")
        assert after.member_names == ()
        assert after.modified > before.modified
        assert directory.get_user("alice").group_names == ()

    def test_deleting_a_user_removes_its_memberships_and_touches_its_groups(self, directory):
        directory.create_user(NewUser("alice"))
        directory.create_user(NewUser("bob"))
        before = directory.get_group("users")
        directory.delete_user("alice")
        after = directory.get_group("users")
        assert after.member_names == ("bob",)
        assert after.modified > before.modified

    def test_deleting_a_group_removes_its_memberships_and_touches_its_members(self, directory):
        directory.create_user(NewUser("alice"))
        directory.create_group("staff")
        directory.add_member("staff", "alice")
        before = directory.get_user("alice")
        directory.delete_group("staff")
        after = directory.get_user("alice")
        assert after.group_names == ("users",)
        assert after.modified > before.modified

    def test_deleting_a_primary_group_leaves_its_users_gid_in_place(self, directory):
        alice = directory.create_user(NewUser("alice"))
        directory.delete_group("users")
        assert directory.get_user("alice").gid_number == alice.gid_number

    def test_group_names_are_ordered_case_insensitively(self, directory):
        directory.create_user(NewUser("alice", gid_number=1))
        for name in ("zeta", "Beta", "alpha"):
            directory.create_group(name)
            directory.add_member(name, "alice")
        assert directory.get_user("alice").group_names == ("alpha", "Beta", "zeta")


class TestCredentials:
    def test_credentials_are_found_case_insensitively(self, directory):
        alice = directory.create_user(NewUser("Alice", password_hash="h1"))
        creds = directory.get_credentials("aLiCe")
        assert creds is not None
        assert (creds.account_id, creds.name, creds.password_hash, creds.disabled) == (
            alice.id,
            "Alice",
            "h1",
            False,
        )

    def test_unknown_names_have_no_credentials(self, directory):
        assert directory.get_credentials("nobody") is None

    def test_set_password_hash_replaces_it_and_touches_the_user(self, directory):
        before = directory.create_user(NewUser("alice"))
        assert directory.get_credentials("alice").password_hash is None
        directory.set_password_hash("ALICE", "h2")
        assert directory.get_credentials("alice").password_hash == "h2"
        assert directory.get_user("alice").modified > before.modified

    def test_set_password_hash_of_a_missing_user_is_not_found(self, directory):
        with pytest.raises(NotFound, match=r'^user "ghost" not found$'):
            directory.set_password_hash("ghost", "h")


class TestSearch:
    @pytest.fixture
    def populated(self, directory):
        for i in range(12):
            directory.create_user(NewUser(f"user{i:02d}", mail=f"u{i}@Example.org"))
        directory.create_group("odd")
        for i in range(1, 12, 2):
            directory.add_member("odd", f"user{i:02d}")
        return directory

    def test_pages_walk_every_match_once_in_id_order(self, populated):
        seen, after = [], 0
        while page := populated.search_users(TRUE, after_id=after, limit=5):
            seen.extend(page)
            after = page[-1].id
        assert [u.name for u in seen] == [f"user{i:02d}" for i in range(12)]
        assert [u.id for u in seen] == sorted(u.id for u in seen)

    def test_the_filter_is_applied_in_sql_together_with_paging(self, populated):
        page = populated.search_users(InGroup("ODD"), limit=4)
        assert [u.name for u in page] == ["user01", "user03", "user05", "user07"]
        rest = populated.search_users(InGroup("odd"), after_id=page[-1].id, limit=100)
        assert [u.name for u in rest] == ["user09", "user11"]

    def test_each_record_carries_its_groups(self, populated):
        by_name = {u.name: u for u in populated.search_users(TRUE, limit=100)}
        assert by_name["user01"].group_names == ("odd", "users")
        assert by_name["user02"].group_names == ("users",)

    def test_a_page_costs_two_queries_whatever_its_size(self, populated):
        statements = []

        def count(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith("SELECT"):
                statements.append(statement)

        event.listen(populated.engine, "before_cursor_execute", count)
        try:
            page = populated.search_users(TRUE, limit=100)
        finally:
            event.remove(populated.engine, "before_cursor_execute", count)
        assert len(page) == 12
        assert len(statements) == 2

    def test_a_constant_false_filter_runs_no_query(self, populated):
        statements = []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(populated.engine, "before_cursor_execute", record)
        try:
            assert populated.search_users(FALSE, limit=10) == []
            assert populated.search_groups(FALSE, limit=10) == []
        finally:
            event.remove(populated.engine, "before_cursor_execute", record)
        assert statements == []

    def test_name_restricts_to_one_entry_case_insensitively(self, populated):
        assert [u.name for u in populated.search_users(TRUE, limit=10, name="USER03")] == ["user03"]
        assert populated.search_users(TRUE, limit=10, name="nobody") == []
        hit = populated.search_users(FieldEquals("mail", "u3@example.ORG"), limit=10, name="user03")
        assert len(hit) == 1
        miss = populated.search_users(
            FieldEquals("mail", "u4@example.org"), limit=10, name="user03"
        )
        assert miss == []

    def test_search_groups_carries_members_and_pages(self, populated):
        first = populated.search_groups(TRUE, limit=1)
        assert [g.name for g in first] == ["users"]
        assert len(first[0].member_names) == 12
        second = populated.search_groups(TRUE, after_id=first[0].id, limit=10)
        assert [(g.name, g.member_names) for g in second] == [
            ("odd", tuple(f"user{i:02d}" for i in range(1, 12, 2)))
        ]
        assert [g.name for g in populated.search_groups(TRUE, limit=5, name="ODD")] == ["odd"]

    def test_zero_limit_returns_nothing(self, populated):
        assert populated.search_users(TRUE, limit=0) == []

    def test_names_no_row_can_have_find_nothing_instead_of_failing(self, populated):
        # PostgreSQL refuses NUL even as a parameter; a bind DN could carry one.
        assert populated.search_users(TRUE, limit=5, name="user01\x00") == []
        assert populated.search_groups(TRUE, limit=5, name="odd\x00") == []
        assert populated.get_credentials("user01\x00") is None
        with pytest.raises(NotFound):
            populated.set_password_hash("user01\x00", "h")
        with pytest.raises(NotFound):
            populated.add_member("odd", "user02\x00")

    def test_list_users_is_ordered_by_name(self, directory):
        for name in ("bob", "Alice", "carol"):
            directory.create_user(NewUser(name))
        assert [u.name for u in directory.list_users()] == ["Alice", "bob", "carol"]
