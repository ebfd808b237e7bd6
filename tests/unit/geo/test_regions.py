"""The country and province tables."""

from __future__ import annotations

import json
from pathlib import Path

import pycountry
import pytest

from idverify.geo.country_names import ISO_NAMES
from idverify.geo.regions import (
    COUNTRIES,
    PROVINCES,
    TERRITORIES,
    country_code_for_name,
    country_names,
    province_for,
)

# Every label the service showed before its names came from pycountry (a frozen copy).
PINNED_LABELS: dict[str, list[str]] = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "iso3166_pinned.json").read_text(encoding="utf-8")
)["labels"]


# Spellings databases use that the hand-kept aliases held until ISO's own names (pycountry's) gave
# them: a pycountry release that drops one fails here rather than leaving an address unlabelled.
ISO_SPELLINGS: dict[str, tuple[str, ...]] = {
    "BD": ("孟加拉",),
    "BO": ("Bolivia, Plurinational State of",),
    "BN": ("Brunei Darussalam",),
    "BQ": ("Bonaire, Sint Eustatius, and Saba",),
    "CD": ("刚果民主共和国", "Congo, The Democratic Republic of the"),
    "CC": ("Cocos [Keeling] Islands",),
    "CF": ("中非共和国",),
    "CG": ("刚果", "刚果共和国", "Congo"),
    "CN": ("中华人民共和国", "People's Republic of China"),
    "CZ": ("Czech Republic",),
    "DO": ("多米尼加共和国",),
    "FM": ("密克罗尼西亚联邦", "Federated States of Micronesia", "Micronesia, Federated States of"),
    "GB": ("大不列颠及北爱尔兰联合王国",),
    "HK": ("香港", "中国香港特别行政区", "Hong Kong"),
    "IM": ("曼岛",),
    "IR": ("伊朗伊斯兰共和国", "Iran, Islamic Republic of"),
    "JO": ("Hashemite Kingdom of Jordan",),
    "KP": ("朝鲜民主主义人民共和国", "Democratic People's Republic of Korea"),
    "KR": ("大韩民国", "Korea, Republic of"),
    "LA": ("老挝人民民主共和国", "Lao People's Democratic Republic"),
    "LT": ("Republic of Lithuania",),
    "MD": ("摩尔多瓦共和国", "Republic of Moldova", "Moldova, Republic of"),
    "MF": ("Saint Martin (French part)",),
    "MO": ("澳门", "中国澳门特别行政区", "Macao"),
    "PS": ("Palestine, State of",),
    "RU": ("Russian Federation",),
    "SK": ("斯洛伐克共和国",),
    "SX": ("Sint Maarten (Dutch part)",),
    "SY": ("Syrian Arab Republic",),
    "TW": ("台湾", "Taiwan", "Taiwan, Province of China"),
    "TZ": ("Tanzania, United Republic of",),
    "UM": ("United States Minor Outlying Islands",),
    "US": ("美利坚合众国", "United States of America"),
    "VE": ("Venezuela, Bolivarian Republic of",),
    "VG": ("Virgin Islands, British",),
    "VI": ("Virgin Islands, U.S.",),
    "VN": ("越南社会主义共和国", "Viet Nam"),
}


class TestCountries:
    def test_labels_are_the_pinned_ones(self) -> None:
        """Every code shows exactly its pinned Chinese and English label, and no code is added or lost."""
        shown = {code: list(names) for code in PINNED_LABELS if (names := country_names(code)) is not None}
        assert shown == PINNED_LABELS
        assert set(COUNTRIES) == set(PINNED_LABELS) - {"XK"}

    def test_pinned_labels_lead_back_to_their_code(self) -> None:
        """Every pinned label, Chinese or English, finds its own code."""
        for code, (zh, en) in PINNED_LABELS.items():
            assert (country_code_for_name(zh), country_code_for_name(en)) == (code, code)

    @pytest.mark.parametrize(("code", "names"), ISO_SPELLINGS.items(), ids=list(ISO_SPELLINGS))
    def test_iso_spellings_find_their_code(self, code: str, names: tuple[str, ...]) -> None:
        assert [country_code_for_name(name) for name in names] == [code] * len(names)

    def test_every_iso_name_finds_its_code(self) -> None:
        """Official names ("Argentine Republic", 阿根廷共和国) find their code, none another's."""
        wrong = {
            name: found
            for code, names in ISO_NAMES.items()
            for name in names
            if (found := country_code_for_name(name)) != code
        }
        assert wrong == {}
        assert country_code_for_name("Argentine Republic") == "AR"

    def test_complete(self) -> None:
        """All 249 officially assigned ISO 3166-1 codes, each with both names."""
        assert len(COUNTRIES) == 249
        assert all(len(code) == 2 and code.isupper() and zh and en for code, (zh, en) in COUNTRIES.items())

    @pytest.mark.parametrize(
        ("code", "names"),
        [
            ("US", ("美国", "United States")),
            ("JP", ("日本", "Japan")),
            ("DE", ("德国", "Germany")),
            ("HK", ("中国香港", "Hong Kong, China")),
        ],
    )
    def test_names(self, code: str, names: tuple[str, str]) -> None:
        """A few names, as shown."""
        assert country_names(code) == names

    @pytest.mark.parametrize(
        ("name", "code"),
        [
            ("美国", "US"),
            ("美利坚合众国", "US"),
            ("United States of America", "US"),
            ("韩国", "KR"),
            ("Korea, Republic of", "KR"),
            ("Côte d'Ivoire", "CI"),
            ("cote divoire", "CI"),
            ("Viet Nam", "VN"),
            ("中国", "CN"),
            ("台湾", "TW"),
            ("Ｊａｐａｎ", "JP"),  # noqa: RUF001 - full-width letters must match
        ],
    )
    def test_code_for_name(self, name: str, code: str) -> None:
        """Chinese, English and alias spellings, in any case, width or accents, find the code."""
        assert country_code_for_name(name) == code

    @pytest.mark.parametrize("name", ["", "Atlantis", "0"])
    def test_unknown_name(self, name: str) -> None:
        """Names of no country find nothing."""
        assert country_code_for_name(name) is None

    def test_every_table_name_round_trips(self) -> None:
        """Every name in the table leads back to its own code."""
        for code, (zh, en) in COUNTRIES.items():
            assert (country_code_for_name(zh), country_code_for_name(en)) == (code, code)


class TestProvinces:
    def test_all_provincial_divisions(self) -> None:
        """31 mainland divisions plus Hong Kong, Macau and Taiwan, codes unique."""
        assert len(PROVINCES) == 31
        codes = [province.code for province in (*PROVINCES, *TERRITORIES)]
        assert len(set(codes)) == 34
        assert all(province.is_mainland for province in PROVINCES)
        assert not any(territory.is_mainland for territory in TERRITORIES)

    def test_codes_are_iso_3166_2_cn_as_pycountry_lists_them(self) -> None:
        """The table's codes are exactly ISO 3166-2:CN's (one source): it adds only the policy's names."""
        iso = {subdivision.code for subdivision in pycountry.subdivisions.get(country_code="CN")}
        assert {province.code for province in (*PROVINCES, *TERRITORIES)} == iso
        assert all(territory.country_code in COUNTRIES for territory in TERRITORIES)

    def test_found_by_the_iso_name(self) -> None:
        """A database that spells a division as ISO does ("Guangdong Sheng", "Hong Kong SAR") finds it."""
        for subdivision in pycountry.subdivisions.get(country_code="CN"):
            found = province_for("", [subdivision.name])
            assert found is not None, subdivision.name
            assert found.code == subdivision.code

    @pytest.mark.parametrize("province", PROVINCES, ids=lambda province: province.code)
    def test_each_by_every_spelling(self, province) -> None:  # type: ignore[no-untyped-def]
        """Each division is found by its letter code, old number, and names with their suffixes."""
        suffix = province.code.removeprefix("CN-")
        for code in (suffix, suffix.lower(), province.code, province.gb_code, f"CN-{province.gb_code}"):
            assert province_for(code) is province
        for name in (
            province.name_zh,
            province.name_en,
            province.name_zh + "省",
            province.name_en + " Province",
        ):
            assert province_for("", [name]) is province

    @pytest.mark.parametrize(
        ("name", "code"),
        [
            ("Shaanxi", "CN-SN"),
            ("Shanxi", "CN-SX"),
            ("陕西省", "CN-SN"),
            ("山西", "CN-SX"),
            ("Anhui", "CN-AH"),
            ("Nei Mongol Zizhiqu", "CN-NM"),
        ],
    )
    def test_similar_names_kept_apart(self, name: str, code: str) -> None:
        """Shaanxi is not Shanxi, and Anhui keeps its 'hui'."""
        province = province_for("", [name])
        assert province is not None
        assert province.code == code

    def test_code_wins_over_names_and_names_are_tried_in_order(self) -> None:
        """A known code decides; otherwise the first name that matches."""
        assert province_for("GD", ["Beijing"]).code == "CN-GD"  # type: ignore[union-attr]
        assert province_for("ZZ", ["", "nowhere", "Beijing"]).code == "CN-BJ"  # type: ignore[union-attr]
        assert province_for("", []) is None
