"""A deterministic demo community after Baigong Road (白公路社区), Zhong County, Chongqing.

About 300 residents across 孤寡 / 空巢 / 残疾, about 40 merchants and responders, six
grids, the default service catalog. The same seed always gives the same community.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

from registry.catalog import default_catalog
from registry.models import (
    EmergencyContact,
    Grid,
    Merchant,
    MerchantService,
    PriceKind,
    Resident,
    ResidentPhone,
    ServiceCategory,
)

COMMUNITY = "白公路社区"
GRIDS = [(f"BG{i:02d}", f"第{n}网格") for i, n in enumerate("一二三四五六", start=1)]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐冉谭向秦"
FEMALE = ["秀英", "桂兰", "玉兰", "淑珍", "凤英", "素芬", "翠华", "兰芳", "桂芳", "秀珍", "明华"]
MALE = ["建国", "志强", "国华", "德明", "永福", "正清", "世荣", "光明", "家富", "树林", "文彬"]
STREETS = ["白公路", "白公路", "忠州大道", "巴王路", "滨江路"]
CONDITIONS = ["高血压", "糖尿病", "冠心病", "慢阻肺", "关节炎", "白内障", "脑梗后遗症", ""]
MEDICINES = {
    "高血压": "硝苯地平缓释片",
    "糖尿病": "二甲双胍",
    "冠心病": "阿司匹林肠溶片",
    "慢阻肺": "沙美特罗替卡松",
    "关节炎": "布洛芬缓释胶囊",
    "白内障": "",
    "脑梗后遗症": "阿托伐他汀",
    "": "",
}
NOTES = ["", "", "说话请慢一点", "下午四点后再打", "钥匙在302邻居家", "耳背，请大声", "只说方言"]
RELATIONS = [("儿子", "family"), ("女儿", "family"), ("邻居", "neighbour")]

#: kind, count, name pattern, opening hours (None = 24 hours), categories
MERCHANT_PLAN: list[tuple[str, int, list[str], tuple[str, str] | None, list[str]]] = [
    (
        "pharmacy",
        12,
        ["康华大药房", "桐君阁药房", "益丰大药房", "和平药房"],
        ("08:00", "22:00"),
        ["medicine"],
    ),
    (
        "supermarket",
        10,
        ["永辉超市", "新世纪超市", "重百超市", "邻里生鲜"],
        ("07:00", "22:00"),
        ["groceries", "meal"],
    ),
    (
        "shop",
        8,
        ["便民小卖部", "家电维修部", "五金店", "社区便利店"],
        ("08:00", "20:00"),
        ["groceries", "repair", "meal"],
    ),
    (
        "clinic",
        6,
        ["社区卫生服务站", "仁爱诊所", "忠州中医诊所"],
        ("08:00", "18:00"),
        ["doctor", "emergency"],
    ),
    ("clinic", 1, ["白公路24小时急诊站"], None, ["doctor", "emergency"]),
    ("water", 1, ["忠县自来水公司抢修队"], None, ["water"]),
    ("electricity", 1, ["国网忠县供电所"], None, ["electricity"]),
    ("gas", 1, ["忠县燃气公司抢修中心"], None, ["gas"]),
]

BASE_LAT, BASE_LON = 30.2996, 108.0380


@dataclass
class DemoCommunity:
    """Everything the generator makes, ready to add to a session in this order."""

    grids: list[Grid] = field(default_factory=list)
    catalog: list[ServiceCategory] = field(default_factory=list)
    merchants: list[Merchant] = field(default_factory=list)
    services: list[MerchantService] = field(default_factory=list)
    residents: list[Resident] = field(default_factory=list)
    phones: list[ResidentPhone] = field(default_factory=list)
    contacts: list[EmergencyContact] = field(default_factory=list)


def _hours(span: tuple[str, str] | None) -> dict[str, list[list[str]]]:
    start, end = span or ("00:00", "24:00")
    return {str(day): [[start, end]] for day in range(7)}


def _near(rng: random.Random) -> tuple[float, float]:
    return (
        round(BASE_LAT + rng.uniform(-0.012, 0.012), 6),
        round(BASE_LON + rng.uniform(-0.012, 0.012), 6),
    )


def generate(*, seed: int = 2026, residents: int = 300) -> DemoCommunity:
    """The demo community for a seed; ids are assigned here so rows link up."""
    rng = random.Random(seed)
    out = DemoCommunity()
    out.grids = [Grid(code=code, name=name, community=COMMUNITY) for code, name in GRIDS]
    grid_codes = [g.code for g in out.grids]
    out.catalog = default_catalog()

    merchant_id = 0
    for kind, count, names, span, categories in MERCHANT_PLAN:
        for i in range(count):
            merchant_id += 1
            home = grid_codes[(merchant_id - 1) % len(grid_codes)]
            # the first pharmacy and supermarket keep a night window, as real ones do
            hours = None if i == 0 and kind in ("pharmacy", "supermarket") else span
            utility = kind in ("water", "electricity", "gas") or span is None
            area = grid_codes if utility else sorted({home, *rng.sample(grid_codes, 2)})
            lat, lon = _near(rng)
            branch = names[i % len(names)]
            name = branch if count <= len(names) else f"{branch}({i // len(names) + 1}号店)"
            out.merchants.append(
                Merchant(
                    id=merchant_id,
                    name=name,
                    kind=kind,
                    address=f"{rng.choice(STREETS)}{rng.randint(1, 300)}号",
                    grid_code=home,
                    lat=lat,
                    lon=lon,
                    service_grids=area,
                    radius_m=0 if utility else 2000,
                    capacity=10 if utility else rng.randint(2, 5),
                    hours=_hours(hours),
                    phones=[f"+86139{merchant_id:08d}", f"+86136{merchant_id:08d}"],
                    contract_start=date(2026, 1, 1),
                    contract_end=date(2027, 12, 31),
                )
            )
            out.services.extend(
                MerchantService(
                    merchant_id=merchant_id,
                    category_code=c,
                    # the note words who pays as a merchants file would (an export
                    # imports again unchanged)
                    price_note={"medicine": "政府补贴 自付5元", "doctor": "政府补贴"}.get(
                        c, "自费"
                    ),
                    price_kind=PriceKind.SUBSIDISED
                    if c in ("medicine", "doctor")
                    else PriceKind.SELF_PAID,
                    # a delivery's share the resident pays: said on the calls
                    price_yuan=5 if c == "medicine" else None,
                )
                for c in categories
            )

    groups_cycle = [["孤寡"], ["空巢"], ["残疾"], ["空巢", "残疾"], ["孤寡", "残疾"]]
    contact_id = 0
    phone_id = 0
    for rid in range(1, residents + 1):
        female = rng.random() < 0.58
        surname = rng.choice(SURNAMES)
        given = rng.choice(FEMALE if female else MALE)
        birth_year = rng.randint(1928, 1962)
        condition = rng.choice(CONDITIONS)
        lat, lon = _near(rng)
        building, unit, room = (
            rng.randint(1, 24),
            rng.randint(1, 4),
            rng.randint(1, 6) * 100 + rng.randint(1, 4),
        )
        street = rng.choice(STREETS)
        out.residents.append(
            Resident(
                id=rid,
                name=surname + given,
                sex="女" if female else "男",
                birth_year=birth_year,
                id_number=f"500233{birth_year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
                f"{rng.randint(100, 999)}{rng.choice('0123456789X')}",
                address=f"{street}{rng.randint(1, 300)}号{building}栋{unit}单元{room}室",
                building=str(building),
                unit=str(unit),
                room=str(room),
                grid_code=grid_codes[rid % len(grid_codes)],
                community=COMMUNITY,
                lat=lat,
                lon=lon,
                groups=groups_cycle[rid % len(groups_cycle)],
                health_notes=f"{condition}，需定期服药" if condition else "",
                conditions=condition,
                medicines=MEDICINES[condition],
                notes=rng.choice(NOTES),
            )
        )
        phone_id += 1
        out.phones.append(
            ResidentPhone(id=phone_id, resident_id=rid, number=f"+862354{rid:06d}", kind="landline")
        )
        if rng.random() < 0.6:
            phone_id += 1
            out.phones.append(
                ResidentPhone(
                    id=phone_id, resident_id=rid, number=f"+86138{rid:08d}", kind="mobile"
                )
            )
        n_contacts = 1 if "孤寡" in out.residents[-1].groups else rng.randint(1, 3)
        for position in range(n_contacts):
            contact_id += 1
            relation, kind = RELATIONS[position % len(RELATIONS)]
            contact_given = rng.choice(MALE if relation == "儿子" else FEMALE)
            out.contacts.append(
                EmergencyContact(
                    id=contact_id,
                    resident_id=rid,
                    position=position,
                    name=(surname if relation != "邻居" else rng.choice(SURNAMES)) + contact_given,
                    relation=relation if "孤寡" not in out.residents[-1].groups else "网格员",
                    kind=kind if "孤寡" not in out.residents[-1].groups else "grid_worker",
                    phone=f"+86137{contact_id:08d}",
                    when_to_call="任何时间" if position == 0 else "白天",
                )
            )
    return out
