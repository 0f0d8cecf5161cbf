"""LDIF entries from OpenLDAP, lldap or 389-ds -> people and groups to import.

People: entries with ``inetOrgPerson``, ``posixAccount``, ``account``,
``shadowAccount``, ``person``, ``organizationalPerson`` or 389-ds' ``nsPerson``/
``nsAccount``; their name is ``uid``
(else the RDN value). Groups: ``posixGroup`` (``memberUid`` names),
``groupOfNames`` (``member`` DNs) and ``groupOfUniqueNames`` (``uniqueMember``
DNs, lldap and 389-ds); their name is ``cn``. Member DNs are resolved to the
people of the same file (any DN layout: lldap's ``ou=people``, 389-ds'
``ou=People``), else to the DN's ``uid``/``cn`` value. A disabled account is
recognised by 389-ds' ``nsAccountLock: TRUE`` or OpenLDAP's
``pwdAccountLockedTime``. The base, organizational units, service and other
entries are skipped with a report line each; operational attributes
(``nsUniqueId``, ``entryUUID``, timestamps) are ignored.

A value that cannot be imported (a bad number, a name ldapsrv does not allow)
is an error naming the entry; ``map_entries`` collects all of them and the
caller refuses the whole file.
"""

from __future__ import annotations

from ldapsrv.auth.legacy_hashes import compact, describe_unusable, scheme_of
from ldapsrv.auth.passwords import SCHEME as NATIVE_SCHEME
from ldapsrv.directory.dn import DNError, normalize, parse_dn
from ldapsrv.directory.names import validate_account_name, validate_group_name
from ldapsrv.errors import InvalidValue
from ldapsrv.migration.ldif import LdifEntry, LdifError
from ldapsrv.migration.records import ImportBatch, ImportedGroup, ImportedPerson

PERSON_CLASSES = frozenset(
    {
        "inetorgperson",
        "posixaccount",
        "account",
        "shadowaccount",
        "person",
        "organizationalperson",
        "nsperson",  # 389-ds 1.4+ people: nsPerson + nsAccount + nsOrgPerson
        "nsaccount",
        "nsorgperson",
    }
)
GROUP_CLASSES = frozenset({"posixgroup", "groupofnames", "groupofuniquenames"})
CONTAINER_CLASSES = frozenset(
    {"organizationalunit", "organization", "dcobject", "domain", "country", "locality"}
)
MAX_HASH_LENGTH = 255  # the store's password_hash column
_CRYPT_PREFIXES = ("$1$", "$5$", "$6$", "$2a$", "$2b$", "$2y$")
_TRUE = ("true", "1", "yes")


class MappingError(ValueError):
    """The file cannot be imported as it is; ``problems`` lists every entry at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def normalize_password_hash(value: str) -> tuple[str | None, str | None]:
    """(the hash to store, None) for a verifiable hash, else (None, why not).

    Bare crypt strings (``$6$...``, as in /etc/shadow) get the ``{CRYPT}`` prefix
    so that the store knows their scheme; 389-ds' long ``{PBKDF2_SHA256}`` is
    shortened (``legacy_hashes.compact``); ldapsrv's own hashes pass as they are.
    """
    value = value.strip()
    if value.startswith(_CRYPT_PREFIXES):
        value = "{CRYPT}" + value
    if value.startswith(NATIVE_SCHEME) and value.count("$") >= 5:
        return value, None
    if scheme_of(value) is None:
        return None, describe_unusable(value)
    value = compact(value)
    if len(value) > MAX_HASH_LENGTH:
        return (
            None,
            f"a {len(value)}-character hash, longer than ldapsrv stores ({MAX_HASH_LENGTH})",
        )
    return value, None


def _number(entry: LdifEntry, attribute: str, where: str) -> int | None:
    text = entry.first(attribute)
    if text is None:
        return None
    try:
        number = int(text.strip())
    except ValueError:
        raise InvalidValue(f"{where}: {attribute} {text!r} is not a number") from None
    if number < 1:
        raise InvalidValue(f"{where}: {attribute} {number} is not allowed (0 is root)")
    return number


def _rdn_value(dn: str) -> str | None:
    try:
        parsed = parse_dn(dn)
    except DNError:
        return None
    return parsed[0][0][1] if parsed else None


def _dn_key(dn: str) -> str | None:
    try:
        return repr(normalize(parse_dn(dn)))
    except DNError:
        return None


class _Mapper:
    def __init__(self, entries: list[LdifEntry], base_dn: str | None) -> None:
        self.entries = entries
        self.base = None if base_dn is None else normalize(parse_dn(base_dn))
        self.batch = ImportBatch()
        self.problems: list[str] = []
        self.people_by_dn: dict[str, str] = {}

    def where(self, entry: LdifEntry) -> str:
        return f"line {entry.line} ({entry.dn})"

    def in_base(self, entry: LdifEntry) -> bool:
        if self.base is None:
            return True
        try:
            dn = normalize(parse_dn(entry.dn))
        except DNError:
            return False
        return len(dn) >= len(self.base) and dn[len(dn) - len(self.base) :] == self.base

    def run(self) -> ImportBatch:
        groups: list[LdifEntry] = []
        for entry in self.entries:
            try:
                classes = {c.lower() for c in entry.text("objectClass")}
                if not self.in_base(entry):
                    self.batch.notes.append(f"skip      {self.where(entry)}: outside the base DN")
                elif classes & PERSON_CLASSES:
                    self.person(entry)
                elif classes & GROUP_CLASSES:
                    groups.append(entry)
                elif classes & CONTAINER_CLASSES or not classes:
                    self.batch.notes.append(
                        f"skip      {self.where(entry)}: the base or a container "
                        "(ldapsrv has its own ou=users and ou=groups)"
                    )
                else:
                    self.batch.notes.append(
                        f"skip      {self.where(entry)}: neither a person nor a group "
                        f"({', '.join(sorted(classes))}); make service accounts with "
                        "`ldapsrv service-account create`"
                    )
            except (InvalidValue, LdifError) as exc:
                self.problems.append(str(exc))
        for entry in groups:
            try:
                self.group(entry)
            except (InvalidValue, LdifError) as exc:
                self.problems.append(str(exc))
        self.refuse_duplicates()
        if self.problems:
            raise MappingError(self.problems)
        return self.batch

    def refuse_duplicates(self) -> None:
        """Two entries for one name (in any case) would silently overwrite each other."""
        for kind, items in (("person", self.batch.people), ("group", self.batch.groups)):
            first: dict[str, str] = {}
            for item in items:
                key = item.name.lower()
                if key in first:
                    self.problems.append(
                        f"{item.source}: {kind} {item.name!r} already comes from {first[key]}"
                    )
                else:
                    first[key] = item.source

    def person(self, entry: LdifEntry) -> None:
        where = self.where(entry)
        name = entry.first("uid") or _rdn_value(entry.dn)
        if name is None:
            raise InvalidValue(f"{where}: a person needs a uid")
        try:
            validate_account_name(name)
        except InvalidValue as exc:
            raise InvalidValue(f"{where}: {exc}") from None
        cn = entry.first("cn")
        display = entry.first("displayName") or (cn if cn and cn != name else None)
        person = ImportedPerson(
            name=name,
            source=where,
            uid_number=_number(entry, "uidNumber", where),
            gid_number=_number(entry, "gidNumber", where),
            display_name=display,
            given_name=entry.first("givenName"),
            surname=entry.first("sn"),
            mail=entry.first("mail"),
            home_directory=entry.first("homeDirectory"),
            login_shell=entry.first("loginShell"),
            gecos=entry.first("gecos"),
            password_hash=self.password(entry, name),
            disabled=self.disabled(entry),
        )
        self.batch.people.append(person)
        key = _dn_key(entry.dn)
        if key is not None:
            self.people_by_dn[key] = name

    def password(self, entry: LdifEntry, name: str) -> str | None:
        values = entry.values("userPassword")
        reasons = []
        for raw in values:
            text = raw.decode("utf-8", errors="replace")
            stored, reason = normalize_password_hash(text)
            if stored is not None:
                return stored
            reasons.append(reason or "")
        if reasons:
            self.batch.notes.append(
                f"no password for person {name} ({self.where(entry)}): {'; '.join(reasons)}; "
                f"set one with `ldapsrv user set-password {name}`"
            )
        return None

    @staticmethod
    def disabled(entry: LdifEntry) -> bool | None:
        lock = entry.first("nsAccountLock")
        if lock is not None:
            return lock.strip().lower() in _TRUE
        if entry.values("pwdAccountLockedTime"):
            return True
        return None

    def member_name(self, dn: str) -> str | None:
        dn = dn.split("#", 1)[0] if "#'" in dn else dn  # uniqueMember's optional uid
        key = _dn_key(dn)
        if key is not None and key in self.people_by_dn:
            return self.people_by_dn[key]
        return _rdn_value(dn)

    def group(self, entry: LdifEntry) -> None:
        where = self.where(entry)
        name = entry.first("cn") or _rdn_value(entry.dn)
        if name is None:
            raise InvalidValue(f"{where}: a group needs a cn")
        try:
            validate_group_name(name)
        except InvalidValue as exc:
            raise InvalidValue(f"{where}: {exc}") from None
        members: list[str] = []
        for dn in entry.text("member") + entry.text("uniqueMember"):
            member = self.member_name(dn)
            if member is None:
                self.batch.notes.append(f"skip      member {dn!r} of group {name}: not a DN")
            elif member.lower() not in {m.lower() for m in members}:
                members.append(member)
        for member in entry.text("memberUid"):
            if member.lower() not in {m.lower() for m in members}:
                members.append(member)
        self.batch.groups.append(
            ImportedGroup(
                name=name,
                source=where,
                gid_number=_number(entry, "gidNumber", where),
                description=entry.first("description"),
                members=tuple(members),
            )
        )


def map_entries(entries: list[LdifEntry], base_dn: str | None = None) -> ImportBatch:
    """People and groups of ``entries`` (only those under ``base_dn`` when given).
    Raises MappingError listing every entry that cannot be imported."""
    return _Mapper(entries, base_dn).run()
