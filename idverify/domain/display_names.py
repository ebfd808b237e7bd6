"""Display names against verified organization names: folding, protected forms and the verdict.

Pure rules only. A display name and a registered name are compared in one folded form (see
:func:`fold`); an organization's registered name protects a few forms of itself (see
:func:`protected_forms`); :func:`judge` turns the protected names found in a display name into
the verdict of ``AccountService.CheckDisplayName``. Finding them over keyed hashes is the flow's
business (idverify/flows/display_names.py).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import opencc

from idverify.domain.errors import ConfigError, InvalidArgument

DISPLAY_NAME_FIELD: Final = "display_name"
MAX_FOLDED_LENGTH: Final = 64
"""A display name and a protected name hold at most this many characters once folded."""
MIN_PROTECTED_LENGTH: Final = 2
"""Shorter forms protect nothing: one character is in too many names."""
MAX_APPROVED_NAMES: Final = 16

# Bounds the work before folding: NFKC can expand one character to many.
_MAX_RAW_LENGTH: Final = 4 * MAX_FOLDED_LENGTH
# Kept: letters, marks and digits. Everything else (spaces, punctuation, symbols, emoji, and the
# control and zero-width characters that make equal-looking names differ) is dropped, so that
# "抖 音", "抖-音" and "抖<ZWSP>音" all read as the protected "抖音".
_KEPT_CATEGORIES: Final = frozenset({"L", "M", "N"})
# Company forms a registered name ends with (GB/T company naming), longest first; "(集团)" is
# folded to 集团 before these apply.
_COMPANY_FORMS: Final = (
    "集团股份有限公司",
    "集团有限责任公司",
    "集团有限公司",
    "股份有限公司",
    "有限责任公司",
    "股份合作公司",
    "有限公司",
    "集团公司",
    "股份公司",
    "总公司",
    "公司",
    "集团",
)
# What is left when a shorter company form was cut from a longer one ("...有限" of "...有限公司"):
# not a name anyone goes by.
_FORM_REMNANTS: Final = ("有限", "有限责任", "股份", "股份合作")
_BRANCH = re.compile(
    r"^(?P<parent>.+?(?:股份有限公司|有限责任公司|有限公司|公司))"
    r"(?P<branch>.{2,}?(?:分公司|分行|支行|分店|办事处|营业部|分部|分厂))$"
)
# An administrative region a registered name may start with: a province-level name with its
# suffix or without, then optionally a prefecture-level city ending in 市.
_PROVINCES: Final = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|"
    "海南|四川|贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)
_REGION_PREFIX = re.compile(
    rf"^(?:(?:{_PROVINCES})(?:省|市|自治区|壮族自治区|回族自治区|维吾尔自治区|特别行政区)?)?"
    r"(?:[\u4e00-\u9fff]{2,3}市)?"
)
# Brackets around a part of a registered name ("阿里巴巴(中国)有限公司"): the name is also
# known without it. Applied after NFKC, which makes full-width parentheses ASCII; 【】 stay.
_BRACKETED = re.compile(r"[(\[\u3010][^)\]\u3011]*[)\]\u3011]")


@lru_cache(maxsize=1)
def _to_simplified() -> opencc.OpenCC:
    # One converter per process: loading its dictionaries takes milliseconds, a conversion
    # microseconds (docs/PERFORMANCE.md).
    return opencc.OpenCC("t2s")


def fold(raw: str, *, field: str = DISPLAY_NAME_FIELD) -> str:
    """Return the form in which display names and protected names are compared.

    NFKC (full-width to half-width), traditional to simplified Chinese (OpenCC ``t2s``), case
    folded, and only letters, marks and digits kept.

    Raises:
        InvalidArgument: ``EMPTY`` when nothing is left, ``TOO_LONG`` past 64 folded
            characters, naming ``field``; the value is never echoed.
    """
    if len(raw) > _MAX_RAW_LENGTH:
        raise InvalidArgument(
            f"{field} is longer than {MAX_FOLDED_LENGTH} characters", reason="TOO_LONG", field=field
        )
    folded = _fold_unbounded(raw)
    if not folded:
        raise InvalidArgument(f"{field} has no letters or digits", reason="EMPTY", field=field)
    if len(folded) > MAX_FOLDED_LENGTH:
        raise InvalidArgument(
            f"{field} is longer than {MAX_FOLDED_LENGTH} characters", reason="TOO_LONG", field=field
        )
    return folded


def _fold_unbounded(raw: str) -> str:
    text = _to_simplified().convert(unicodedata.normalize("NFKC", raw)).casefold()
    return "".join(char for char in text if unicodedata.category(char)[0] in _KEPT_CATEGORIES)


def protected_forms(registered_name: str) -> frozenset[str]:
    """The folded forms an organization's registered name protects.

    The name itself; without its company form (有限公司, 股份有限公司, 集团 ...), one form after
    another; without its leading region (北京, 深圳市 ...); without a bracketed part. A branch
    (``<parent's name><place>分行``) protects its own name and the parent's short forms followed
    by the branch part, never the parent's short forms alone. Forms shorter than two characters
    are left out.

    A name that folds to nothing protects nothing; forms longer than 64 characters are left out
    too (no display name can contain them).
    """
    nfkc = unicodedata.normalize("NFKC", registered_name)
    variants = {nfkc, _BRACKETED.sub("", nfkc)}
    forms: set[str] = set()
    for variant in variants:
        folded = _fold_unbounded(variant)
        if not folded:
            continue
        branch = _BRANCH.match(folded)
        if branch:
            forms.add(folded)
            forms.update(parent + branch["branch"] for parent in _short_forms(branch["parent"]))
        else:
            forms.update(_short_forms(folded))
    return frozenset(form for form in forms if MIN_PROTECTED_LENGTH <= len(form) <= MAX_FOLDED_LENGTH)


def _short_forms(folded: str) -> set[str]:
    forms = {folded}
    pending = [folded]
    while pending:
        name = pending.pop()
        for company_form in _COMPANY_FORMS:
            if name.endswith(company_form) and len(name) - len(company_form) >= MIN_PROTECTED_LENGTH:
                shorter = name[: -len(company_form)]
                if shorter not in forms and not shorter.endswith(_FORM_REMNANTS):
                    forms.add(shorter)
                    pending.append(shorter)
    without_region = {_REGION_PREFIX.sub("", form, count=1) for form in forms}
    return forms | {form for form in without_region if len(form) >= MIN_PROTECTED_LENGTH}


def substrings(folded: str) -> Iterator[tuple[int, int]]:
    """Every (start, end) of ``folded`` at least two characters long: at most 2,016 for 64 characters."""
    length = len(folded)
    for start in range(length - MIN_PROTECTED_LENGTH + 1):
        for end in range(start + MIN_PROTECTED_LENGTH, length + 1):
            yield start, end


class NameVerdict(enum.Enum):
    """What CheckDisplayName answers."""

    CONSISTENT = "CONSISTENT"
    INCONSISTENT = "INCONSISTENT"
    IMPERSONATION = "IMPERSONATION"
    UNVERIFIED = "UNVERIFIED"
    NOT_APPLICABLE = "NOT_APPLICABLE"


class NameKind(enum.Enum):
    """What a protected name found in a display name is."""

    VERIFIED = "v"  # a form of an organization's registered name
    APPROVED = "a"  # a short name or brand the tenant approved for an organization
    RESERVED = "reserved"  # on the tenant's reserved list: nobody's
    OFFICIAL = "official"  # a reserved word ("官方") an organization may put beside its own name


@dataclass(frozen=True, slots=True)
class Found:
    """A protected name found at ``display[start:end]``."""

    start: int
    end: int
    kind: NameKind
    # The organizations (claim tags) it protects; empty for reserved names.
    owners: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """What the verdict needs to know about the account asked about."""

    bound: bool
    organization: bool
    # The account's (document, name) tag; the owner of the names it registered, if any.
    name_tag: str
    # Bound at or above the tenant's claim assurance (its binding establishes its name).
    at_claim_assurance: bool
    # Its organization has names in the index (established since names are indexed).
    names_indexed: bool


@dataclass(frozen=True, slots=True)
class Judgement:
    """A verdict and its stable reason code."""

    verdict: NameVerdict
    reason: str


DEFAULT_RESERVED_NAMES: Final = (
    # State bodies and their usual short names: nobody's account may use them.
    "中共中央",
    "国务院",
    "全国人大",
    "全国人民代表大会",
    "全国政协",
    "中央军委",
    "最高人民法院",
    "最高人民检察院",
    "人民法院",
    "人民检察院",
    "人民政府",
    "外交部",
    "国防部",
    "公安部",
    "国家安全部",
    "公安局",
    "派出所",
    "网信办",
    "国家互联网信息办公室",
    "共青团中央",
    "人民日报",
    "新华社",
    "中央电视台",
    "央视",
)
DEFAULT_OFFICIAL_WORDS: Final = ("官方",)


@dataclass(frozen=True, slots=True)
class DisplayNamePolicy:
    """A tenant's ``[tenants.<t>.display_names]``: what no account may call itself.

    Attributes:
        reserved_names: protected from everyone (the default list: state bodies).
        official_words: words like 官方 that only an organization may use, beside its own name.
        platform_brands: the platform's own brands, protected like reserved names.
    """

    reserved_names: tuple[str, ...] = DEFAULT_RESERVED_NAMES
    official_words: tuple[str, ...] = DEFAULT_OFFICIAL_WORDS
    platform_brands: tuple[str, ...] = ()

    def reserved(self) -> ReservedNames:
        """The folded lists, ready to search.

        Raises:
            InvalidArgument: a listed name folds to nothing or is too long.
        """
        return _reserved(self)


def parse_display_name_policy(tenant: str, table: Any) -> DisplayNamePolicy:
    """Parses ``[tenants.<tenant>.display_names]``.

    Raises:
        ConfigError: naming the tenant and key at fault.
    """
    where = f"tenants.{tenant}.display_names"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table")
    known = {"reserved_names", "official_words", "platform_brands"}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
    lists = {}
    for key in known & set(table):
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}.{key}: expected a list of names")
        for name in value:
            try:
                if len(fold(name, field=key)) < MIN_PROTECTED_LENGTH:
                    raise ConfigError(f"{where}.{key}: a name needs at least two letters or digits")
            except InvalidArgument as exc:
                raise ConfigError(f"{where}.{key}: {exc}") from None
        lists[key] = tuple(value)
    return DisplayNamePolicy(**lists)


@lru_cache(maxsize=64)
def _reserved(policy: DisplayNamePolicy) -> ReservedNames:
    return ReservedNames((*policy.reserved_names, *policy.platform_brands), policy.official_words)


class ReservedNames:
    """A tenant's reserved names and official words, folded once."""

    __slots__ = ("_words",)

    def __init__(self, reserved: Iterable[str], official: Iterable[str]) -> None:
        words: dict[str, NameKind] = {}
        for name in reserved:
            words[fold(name, field="reserved_names")] = NameKind.RESERVED
        for name in official:
            words.setdefault(fold(name, field="official_words"), NameKind.OFFICIAL)
        self._words = tuple(words.items())

    def find(self, folded: str) -> list[Found]:
        """Every occurrence of a reserved name or official word in a folded display name."""
        found = []
        for word, kind in self._words:
            start = folded.find(word)
            while start >= 0:
                found.append(Found(start, start + len(word), kind))
                start = folded.find(word, start + 1)
        return found

    def holds(self, folded: str) -> bool:
        """True when ``folded`` is, or contains, a reserved name or official word."""
        return any(word in folded for word, _ in self._words)


def judge(account: AccountFacts, found: Sequence[Found]) -> Judgement:  # noqa: PLR0911 - a return per rule, in the docstring's order
    """The verdict on a display name in which ``found`` are the protected names.

    A protected name is the account's own when its organization owns it. Another's name, or a
    reserved name, outside every span of the account's own verified names is an impersonation,
    whoever the account is (a registered name may contain another's, a brand approved for it may
    not); an official word is one only where no own name stands. Then: no identity is
    UNVERIFIED, a person is NOT_APPLICABLE, an organization below the claim assurance (or with no
    indexed name) is UNVERIFIED, and an organization is CONSISTENT when an own name stands in
    its display name, else INCONSISTENT.
    """
    own = [f for f in found if account.name_tag and account.name_tag in f.owners]
    foreign = [
        f
        for f in found
        if f not in own
        and not (f.kind is NameKind.OFFICIAL and own)
        and not any(o.kind is NameKind.VERIFIED and o.start <= f.start and f.end <= o.end for o in own)
    ]
    if foreign:
        organization_name = any(f.owners for f in foreign)
        return Judgement(
            NameVerdict.IMPERSONATION, "OTHER_ORGANIZATION_NAME" if organization_name else "RESERVED_NAME"
        )
    if not account.bound:
        return Judgement(NameVerdict.UNVERIFIED, "NO_VERIFIED_IDENTITY")
    if not account.organization:
        return Judgement(NameVerdict.NOT_APPLICABLE, "PERSON_ACCOUNT")
    if not (account.at_claim_assurance and account.names_indexed):
        return Judgement(NameVerdict.UNVERIFIED, "NAME_NOT_ESTABLISHED")
    if any(f.kind is NameKind.VERIFIED for f in own):
        return Judgement(NameVerdict.CONSISTENT, "VERIFIED_NAME")
    if own:
        return Judgement(NameVerdict.CONSISTENT, "APPROVED_NAME")
    return Judgement(NameVerdict.INCONSISTENT, "NAME_NOT_CONTAINED")
