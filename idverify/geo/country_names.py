"""The short Chinese and English name shown for each ISO 3166-1 country.

Codes and most names come from pycountry: English is its common name (its ISO name when it has
none), Chinese its ``zh_CN`` translation of that. The display policy overrides them where it
wants other words: Hong Kong, Macau and Taiwan carry the 中国 prefix and ", China"; Chinese names
are the short forms in everyday mainland use (as in GB/T 2659 and CLDR zh), where the translation
has a formal name, a Taiwan spelling or a typo; English names are the everyday short ones where ISO
has a formal one. A test pins every name, so a pycountry upgrade that changes one fails there.
"""

from __future__ import annotations

import gettext
from collections.abc import Mapping
from types import MappingProxyType

import pycountry

_ZH_OVERRIDES: Mapping[str, str] = {
    "BD": "孟加拉国",
    "BL": "圣巴泰勒米",
    "BO": "玻利维亚",
    "BQ": "荷属加勒比区",
    "BV": "布韦岛",
    "CC": "科科斯（基林）群岛",  # noqa: RUF001 - Chinese brackets
    "CD": "刚果（金）",  # noqa: RUF001 - Chinese brackets
    "CF": "中非",
    "CG": "刚果（布）",  # noqa: RUF001 - Chinese brackets
    "DO": "多米尼加",
    "FK": "福克兰群岛",
    "GS": "南乔治亚和南桑威奇群岛",
    "GT": "危地马拉",
    "HK": "中国香港",
    "HM": "赫德岛和麦克唐纳群岛",
    "IM": "马恩岛",
    "KG": "吉尔吉斯斯坦",
    "KH": "柬埔寨",
    "MO": "中国澳门",
    "MT": "马耳他",
    "PF": "法属波利尼西亚",
    "PN": "皮特凯恩群岛",
    "SH": "圣赫勒拿",
    "TF": "法属南部领地",
    "TT": "特立尼达和多巴哥",
    "TW": "中国台湾",
}

_EN_OVERRIDES: Mapping[str, str] = {
    "BN": "Brunei",
    "BQ": "Caribbean Netherlands",
    "CD": "DR Congo",
    "CG": "Republic of the Congo",
    "FK": "Falkland Islands",
    "FM": "Micronesia",
    "HK": "Hong Kong, China",
    "MF": "Saint Martin",
    "MO": "Macao, China",
    "PN": "Pitcairn Islands",
    "PS": "Palestine",
    "RU": "Russia",
    "SH": "Saint Helena",
    "ST": "São Tomé and Príncipe",
    "SX": "Sint Maarten",
    "TW": "Taiwan, China",
    "UM": "U.S. Outlying Islands",
    "VA": "Vatican City",
    "VG": "British Virgin Islands",
    "VI": "U.S. Virgin Islands",
}


# fallback=False: a pycountry build without its zh_CN catalogue fails at start, not in a label.
_CHINESE = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["zh_CN"], fallback=False)
# In code order, as the name index is built in (a later code would win a shared name).
_BY_CODE = sorted(pycountry.countries, key=lambda country: country.alpha_2)


def _names() -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    for country in _BY_CODE:
        code = country.alpha_2
        english = getattr(country, "common_name", country.name)
        names[code] = (
            _ZH_OVERRIDES.get(code) or _CHINESE.gettext(english),
            _EN_OVERRIDES.get(code) or english,
        )
    return names


def _iso_names() -> dict[str, tuple[str, ...]]:
    names: dict[str, tuple[str, ...]] = {}
    for country in _BY_CODE:
        english = [
            getattr(country, kind)
            for kind in ("name", "official_name", "common_name")
            if hasattr(country, kind)
        ]
        names[country.alpha_2] = tuple(dict.fromkeys([*english, *map(_CHINESE.gettext, english)]))
    return names


# code: (Chinese name, English name); every officially assigned code.
COUNTRIES: Mapping[str, tuple[str, str]] = MappingProxyType(_names())

# code: every name ISO gives it (short, official, common) in English and its Chinese translations:
# names that databases use ("Russian Federation", "Korea, Republic of", 大韩民国), which find the
# code but are never shown.
ISO_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(_iso_names())

# Codes outside ISO 3166-1 that databases use anyway (user-assigned or reserved codes).
EXTRA_COUNTRIES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "XK": ("科索沃", "Kosovo"),
    }
)
