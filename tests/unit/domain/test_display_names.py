"""Folding, protected forms and the verdict rules of display names (pure)."""

# ruff: noqa: RUF001 - full-width letters and brackets are what these tests feed in

from __future__ import annotations

import pytest

from idverify.config import load_settings
from idverify.domain.display_names import (
    AccountFacts,
    DisplayNamePolicy,
    Found,
    Judgement,
    NameKind,
    NameVerdict,
    fold,
    judge,
    protected_forms,
    substrings,
)
from idverify.domain.errors import ConfigError, InvalidArgument

ORG = AccountFacts(bound=True, organization=True, name_tag="me", at_claim_assurance=True, names_indexed=True)
PERSON = AccountFacts(
    bound=True, organization=False, name_tag="p", at_claim_assurance=False, names_indexed=False
)


class TestFold:
    @pytest.mark.parametrize(
        ("raw", "folded"),
        [
            ("华为 技术", "华为技术"),
            ("華為技術", "华为技术"),
            ("ＨＵＡＷＥＩ", "huawei"),
            ("抖\u200b音", "抖音"),
            ("【抖音】🎵", "抖音"),
            ("阿里巴巴（中国）", "阿里巴巴中国"),
        ],
    )
    def test_equal_looking_names_fold_alike(self, raw: str, folded: str) -> None:
        """Width, script, spacing, punctuation, symbols and zero-width characters do not matter."""
        assert fold(raw) == folded

    @pytest.mark.parametrize(("raw", "reason"), [("", "EMPTY"), ("!? 🐧", "EMPTY"), ("字" * 65, "TOO_LONG")])
    def test_nothing_or_too_much_is_refused_naming_the_field(self, raw: str, reason: str) -> None:
        """INVALID_ARGUMENT with the field and reason, the value never echoed."""
        with pytest.raises(InvalidArgument) as refused:
            fold(raw)
        assert (refused.value.reason, refused.value.field) == (reason, "display_name")
        assert raw not in str(refused.value) or not raw


class TestProtectedForms:
    def test_company_forms_and_regions_come_off(self) -> None:
        """A name protects itself without its company form and without its leading region."""
        assert protected_forms("深圳市腾讯计算机系统有限公司") == {
            "深圳市腾讯计算机系统有限公司",
            "深圳市腾讯计算机系统",
            "腾讯计算机系统有限公司",
            "腾讯计算机系统",
        }

    def test_a_branch_never_protects_its_parents_short_name(self) -> None:
        """招商银行 stays the bank's: its branch holds only names with its branch part."""
        forms = protected_forms("招商银行股份有限公司深圳分行")
        assert "招商银行" not in forms
        assert "招商银行深圳分行" in forms

    def test_a_bracketed_part_may_be_left_out(self) -> None:
        """阿里巴巴(中国)有限公司 is also 阿里巴巴."""
        assert {"阿里巴巴", "阿里巴巴中国"} <= protected_forms("阿里巴巴（中国）有限公司")

    def test_nothing_shorter_than_two_characters_is_protected(self) -> None:
        """A one-character core protects nothing beyond the full name."""
        assert protected_forms("米有限公司") == {"米有限公司"}

    def test_substrings_are_bounded(self) -> None:
        """64 characters give 2,016 substrings of two or more."""
        assert len(list(substrings("字" * 64))) == 2016


class TestJudge:
    def test_the_rules_in_order(self) -> None:
        """Impersonation first, then unverified, person, below the claim assurance, own name."""
        mine = Found(0, 2, NameKind.VERIFIED, frozenset({"me"}))
        theirs = Found(0, 2, NameKind.VERIFIED, frozenset({"them"}))
        official = Found(2, 4, NameKind.OFFICIAL)
        assert judge(ORG, [mine]).verdict is NameVerdict.CONSISTENT
        assert judge(ORG, [mine, official]).verdict is NameVerdict.CONSISTENT
        assert judge(ORG, [official]).verdict is NameVerdict.IMPERSONATION
        assert judge(ORG, [theirs]).reason == "OTHER_ORGANIZATION_NAME"
        assert judge(ORG, []).verdict is NameVerdict.INCONSISTENT
        assert judge(PERSON, []).verdict is NameVerdict.NOT_APPLICABLE
        assert judge(PERSON, [Found(0, 2, NameKind.RESERVED)]).reason == "RESERVED_NAME"
        unbound = AccountFacts(
            bound=False, organization=False, name_tag="", at_claim_assurance=False, names_indexed=False
        )
        assert judge(unbound, []).reason == "NO_VERIFIED_IDENTITY"
        low = AccountFacts(
            bound=True, organization=True, name_tag="me", at_claim_assurance=False, names_indexed=True
        )
        assert judge(low, [mine]) == judge(low, []) == judge(low, [mine, official])
        assert judge(low, []).reason == "NAME_NOT_ESTABLISHED"

    def test_another_name_inside_the_own_name_is_no_impersonation(self) -> None:
        """The branch's 招商银行深圳分行 contains the bank's 招商银行 and is still its own."""
        own = Found(0, 8, NameKind.VERIFIED, frozenset({"me"}))
        inside = Found(0, 4, NameKind.VERIFIED, frozenset({"bank"}))
        beside = Found(8, 12, NameKind.VERIFIED, frozenset({"bank"}))
        assert judge(ORG, [own, inside]).verdict is NameVerdict.CONSISTENT
        assert judge(ORG, [own, beside]).verdict is NameVerdict.IMPERSONATION

    def test_an_approved_brand_never_covers_another_name(self) -> None:
        """A brand approved before another organization held 抖音 does not make 星辰抖音 its own.

        SetApprovedNames refuses a brand containing a name already held (NAME_TAKEN); a name
        indexed after the approval is still another's inside the brand, as is a reserved name.
        """
        brand = Found(0, 4, NameKind.APPROVED, frozenset({"me"}))
        theirs = Found(2, 4, NameKind.VERIFIED, frozenset({"them"}))
        reserved = Found(0, 3, NameKind.RESERVED)
        assert judge(ORG, [brand]) == Judgement(NameVerdict.CONSISTENT, "APPROVED_NAME")
        assert judge(ORG, [brand, theirs]) == Judgement(NameVerdict.IMPERSONATION, "OTHER_ORGANIZATION_NAME")
        assert judge(ORG, [brand, reserved]) == Judgement(NameVerdict.IMPERSONATION, "RESERVED_NAME")


class TestPolicy:
    def test_a_default_list_ships_and_the_platforms_brands_join_it(self) -> None:
        """State bodies are reserved out of the box; a tenant adds its platform's brands."""
        settings = load_settings(
            environ={},
            overrides={"tenants": {"acme": {"display_names": {"platform_brands": ["星河社区"]}}}},
        )
        policy = settings.methods_for("acme").display_names
        assert {found.kind for found in policy.reserved().find(fold("星河社区国务院官方"))} == {
            NameKind.RESERVED,
            NameKind.OFFICIAL,
        }
        assert DisplayNamePolicy().reserved().holds("公安部")

    def test_a_tenant_replaces_the_reserved_list_and_the_official_words(self) -> None:
        """A tenant's lists replace the defaults; other tenants keep them.

        reserved_names replaces the state bodies (then the tenant's choice), official_words 官方.
        """
        table = {"reserved_names": ["市场监管总局"], "official_words": ["官方", "認證"]}
        settings = load_settings(environ={}, overrides={"tenants": {"acme": {"display_names": table}}})
        acme = settings.methods_for("acme").display_names.reserved()
        assert [f.kind for f in acme.find(fold("市场监管总局客服"))] == [NameKind.RESERVED]
        assert not acme.holds(fold("国务院"))
        assert [f.kind for f in acme.find(fold("认证商家"))] == [NameKind.OFFICIAL]
        default = settings.methods_for("default").display_names.reserved()
        assert default.holds(fold("国务院"))
        assert default.holds(fold("官方"))
        assert not default.holds(fold("市场监管总局"))

    @pytest.mark.parametrize(
        "table",
        [
            {"reserved_names": "国务院"},
            {"platform_brands": ["星"]},
            {"brands": ["x"]},
            {"official_words": ["!!"]},
        ],
    )
    def test_a_bad_table_is_refused_at_start(self, table: dict[str, object]) -> None:
        """Not a list, a one-letter name, an unknown key, a name of symbols: a one-line ConfigError."""
        with pytest.raises(ConfigError, match=r"tenants\.acme\.display_names"):
            load_settings(environ={}, overrides={"tenants": {"acme": {"display_names": table}}})
