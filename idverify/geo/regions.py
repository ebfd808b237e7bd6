"""Names of countries and of China's provincial-level divisions, and how databases spell them.

Databases name the same place many ways (``Guangdong``, ``广东省``, ``CN-GD``, ``44``); this module
turns any of them into one ISO code and the short labels the display policy shows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from idverify.geo.country_names import COUNTRIES, EXTRA_COUNTRIES, ISO_NAMES

__all__ = [
    "COUNTRIES",
    "PROVINCES",
    "TERRITORIES",
    "Province",
    "country_code_for_name",
    "country_names",
    "province_for",
]


@dataclass(frozen=True, slots=True)
class Province:
    """A provincial-level division of China as ISO 3166-2:CN lists it.

    Attributes:
        code: ISO 3166-2 code (``CN-GD``).
        name_zh: short Chinese name without 省/市/自治区 (``广东``).
        name_en: English name (``Guangdong``).
        gb_code: two-digit GB/T 2260 code, which ISO used before 2017 (``44``).
        country_code: ISO 3166-1 code of the place: ``CN``, or ``HK``/``MO``/``TW`` for the
            territories ISO lists under CN as well.
    """

    code: str
    name_zh: str
    name_en: str
    gb_code: str
    country_code: str = "CN"

    @property
    def is_mainland(self) -> bool:
        """Whether the division is in mainland China (not Hong Kong, Macau or Taiwan)."""
        return self.country_code == "CN"


PROVINCES: tuple[Province, ...] = (
    Province("CN-AH", "安徽", "Anhui", "34"),
    Province("CN-BJ", "北京", "Beijing", "11"),
    Province("CN-CQ", "重庆", "Chongqing", "50"),
    Province("CN-FJ", "福建", "Fujian", "35"),
    Province("CN-GS", "甘肃", "Gansu", "62"),
    Province("CN-GD", "广东", "Guangdong", "44"),
    Province("CN-GX", "广西", "Guangxi", "45"),
    Province("CN-GZ", "贵州", "Guizhou", "52"),
    Province("CN-HI", "海南", "Hainan", "46"),
    Province("CN-HE", "河北", "Hebei", "13"),
    Province("CN-HL", "黑龙江", "Heilongjiang", "23"),
    Province("CN-HA", "河南", "Henan", "41"),
    Province("CN-HB", "湖北", "Hubei", "42"),
    Province("CN-HN", "湖南", "Hunan", "43"),
    Province("CN-JS", "江苏", "Jiangsu", "32"),
    Province("CN-JX", "江西", "Jiangxi", "36"),
    Province("CN-JL", "吉林", "Jilin", "22"),
    Province("CN-LN", "辽宁", "Liaoning", "21"),
    Province("CN-NM", "内蒙古", "Inner Mongolia", "15"),
    Province("CN-NX", "宁夏", "Ningxia", "64"),
    Province("CN-QH", "青海", "Qinghai", "63"),
    Province("CN-SN", "陕西", "Shaanxi", "61"),
    Province("CN-SD", "山东", "Shandong", "37"),
    Province("CN-SH", "上海", "Shanghai", "31"),
    Province("CN-SX", "山西", "Shanxi", "14"),
    Province("CN-SC", "四川", "Sichuan", "51"),
    Province("CN-TJ", "天津", "Tianjin", "12"),
    Province("CN-XJ", "新疆", "Xinjiang", "65"),
    Province("CN-XZ", "西藏", "Xizang", "54"),
    Province("CN-YN", "云南", "Yunnan", "53"),
    Province("CN-ZJ", "浙江", "Zhejiang", "33"),
)

# ISO 3166-2:CN lists these too; the display policy shows them as 中国香港 and so on,
# whether a database files them as countries or as subdivisions of CN.
TERRITORIES: tuple[Province, ...] = (
    Province("CN-HK", "香港", "Hong Kong", "91", country_code="HK"),
    Province("CN-MO", "澳门", "Macao", "92", country_code="MO"),
    Province("CN-TW", "台湾", "Taiwan", "71", country_code="TW"),
)

# Spellings that normalizing cannot derive from the names above.
_PROVINCE_ALIASES: Mapping[str, tuple[str, ...]] = {
    "CN-BJ": ("Peking",),
    "CN-NM": ("Nei Mongol", "Neimenggu", "Nei Menggu", "Inner Mongol"),
    "CN-XZ": ("Tibet", "Xizang Zizhiqu"),
    "CN-SN": ("Shaanxi Sheng", "Shensi"),
    "CN-XJ": ("Sinkiang",),
    "CN-HK": ("Hong Kong SAR", "Hongkong", "Xianggang"),
    "CN-MO": ("Macau", "Macao SAR", "Aomen"),
    "CN-TW": ("Taiwan Province of China", "台湾省"),
}

# Words that a database may append to a division's name; dropped from the end before matching.
_ZH_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市")
_EN_SUFFIX_WORDS = frozenset(
    {
        "province",
        "sheng",
        "municipality",
        "city",
        "shi",
        "autonomous",
        "region",
        "zizhiqu",
        "special",
        "administrative",
        "sar",
        "zhuang",
        "zhuangzu",
        "hui",
        "huizu",
        "uygur",
        "uyghur",
        "uighur",
        "weiwuer",
        "of",
        "china",
    }
)

# Country names databases use that are neither the table's nor ISO's (ISO_NAMES: official names,
# "Korea, Republic of", their Chinese translations): ip2region uses Chinese names, its newer
# files English ones, and neither carries codes for every row.
_COUNTRY_ALIASES: Mapping[str, tuple[str, ...]] = {
    "AE": ("阿拉伯联合酋长国", "UAE"),
    "AX": ("Åland",),
    "BA": ("波黑", "波斯尼亚和黑山共和国"),
    "BV": ("布维特岛",),
    "BQ": ("博奈尔岛、圣尤斯达蒂斯和萨巴",),
    "CD": ("扎伊尔", "Democratic Republic of the Congo"),
    "CC": ("科科斯群岛",),
    "CG": ("Congo Republic",),
    "CI": ("象牙海岸", "Ivory Coast"),
    "CV": ("Cape Verde",),
    "CZ": ("捷克共和国",),
    "GB": ("UK", "Great Britain", "Britain"),
    "GG": ("格恩西岛",),
    "GP": ("瓜德罗普岛",),
    "GS": ("南乔治亚岛和南桑威齐群岛",),
    "HK": ("香港特别行政区", "Hong Kong SAR", "Hong Kong SAR China"),
    "HM": ("赫德与麦克唐纳群岛",),
    "KG": ("吉尔吉克斯坦",),
    "KN": ("St Kitts and Nevis",),
    "KP": ("朝鲜民主共和国",),
    "KR": ("Korea", "Republic of Korea"),
    "LY": ("阿拉伯利比亚民众国",),
    "ME": ("黑山共和国",),
    "MF": ("圣马丁",),
    "MK": ("马其顿", "前南斯拉夫马其顿共和国", "Macedonia"),
    "MO": ("澳门特别行政区", "Macau", "Macao SAR China"),
    "MM": ("Burma",),
    "MQ": ("马提尼克群岛",),
    "MS": ("蒙塞拉特群岛",),
    "PS": ("巴勒斯坦领土", "Palestinian Territory"),
    "RU": ("俄罗斯联邦",),
    "SC": ("塞舌尔群岛",),
    "SJ": ("斯瓦尔巴特和扬马延",),
    "SX": ("圣马丁岛",),
    "SY": ("叙利亚阿拉伯共和国",),
    "SZ": ("埃斯瓦蒂尼", "Swaziland"),
    "TF": ("法属南部领土",),
    "TL": ("East Timor",),
    "TR": ("Turkey",),
    "TW": ("台湾省", "中华民国"),
    "UM": ("美国边远小岛", "U.S. Minor Outlying Islands"),
    "US": ("USA",),
    "VA": ("圣座", "圣座（梵蒂冈）", "梵蒂冈城国", "Holy See", "Vatican"),  # noqa: RUF001 - Chinese brackets
    "VG": ("英属维京群岛",),
    "VI": ("美属维京群岛",),
}

_NOT_ALNUM = re.compile(r"[\W_]+")


def _normalized(name: str) -> str:
    """Case-, width-, accent- and punctuation-free form of a name, for matching."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NOT_ALNUM.sub("", bare)


def _division_key(name: str) -> str:
    """Matching key of a division name with 省/市/自治区 or their English words dropped."""
    words = [word for word in _NOT_ALNUM.split(unicodedata.normalize("NFKC", name).casefold()) if word]
    while len(words) > 1 and words[-1] in _EN_SUFFIX_WORDS:
        words.pop()
    key = _normalized("".join(words))
    for suffix in _ZH_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


def _index_countries() -> dict[str, str]:
    index: dict[str, str] = {}
    for table in (EXTRA_COUNTRIES, COUNTRIES):
        for code, (name_zh, name_en) in table.items():
            index[_normalized(name_zh)] = code
            index[_normalized(name_en)] = code
    # Names shown win, then the spellings kept here, then ISO's own names.
    for aliases in (_COUNTRY_ALIASES, ISO_NAMES):
        for code, names in aliases.items():
            for name in names:
                index.setdefault(_normalized(name), code)
    return index


def _index_divisions() -> tuple[dict[str, Province], dict[str, Province]]:
    by_code: dict[str, Province] = {}
    by_name: dict[str, Province] = {}
    for province in (*PROVINCES, *TERRITORIES):
        suffix = province.code.removeprefix("CN-")
        for code in (suffix, province.code, province.gb_code, f"CN-{province.gb_code}"):
            by_code[code] = province
        for name in (province.name_zh, province.name_en, *_PROVINCE_ALIASES.get(province.code, ())):
            by_name[_division_key(name)] = province
    return by_code, by_name


_COUNTRY_BY_NAME = MappingProxyType(_index_countries())
_DIVISION_BY_CODE, _DIVISION_BY_NAME = (MappingProxyType(index) for index in _index_divisions())


def country_names(code: str) -> tuple[str, str] | None:
    """The Chinese and English names of a country code, or None for a code not in the table."""
    return COUNTRIES.get(code) or EXTRA_COUNTRIES.get(code)


def country_code_for_name(name: str) -> str | None:
    """The ISO 3166-1 code of a country named in Chinese or English, or None if unknown."""
    if not name:
        return None
    return _COUNTRY_BY_NAME.get(_normalized(name))


def province_for(code: str, names: Iterable[str] = ()) -> Province | None:
    """The division of China that a database's subdivision code or names denote.

    Args:
        code: the subdivision code as a database gives it: ``GD``, ``CN-GD``, ``44`` or empty.
        names: the names it gives (``Guangdong``, ``广东省``, ``Inner Mongolia Autonomous Region``),
            tried in order when the code is missing or unknown.

    Returns:
        The province, municipality or autonomous region (or Hong Kong, Macau, Taiwan), or None.
    """
    if code:
        found = _DIVISION_BY_CODE.get(code.strip().upper())
        if found is not None:
            return found
    for name in names:
        if name:
            found = _DIVISION_BY_NAME.get(_division_key(name))
            if found is not None:
                return found
    return None
