"""Customer profile features (raw ``customers``: values as of the world's start, so never after a snapshot).

Strings become numbers for XGBoost: known ordinal scales keep their order, two/three-level nominal columns are
one-hot encoded, other nominal columns get integer codes in sorted order of their values (the code map is in
the dictionary definition). Decoy (pure-noise) and proxy columns are kept on purpose, so the explanation stage
can show that they carry no (decoys) or only indirect (proxy) signal.
"""

from __future__ import annotations

import polars as pl

from cardlab.features.dictionary import Catalog, dirs
from cardlab.features.families import ALL, ident
from cardlab.features.texts import zh as zh_name

ORDINAL = {
    "education": ("high_school", "associate", "bachelor", "master_plus"),
}
SKIP = {"customer_id", "signup_date"}
KNOWN = {
    "age": ("age in years", "年龄", dirs()),
    "city_tier": ("city tier (1 = largest cities ... 5)", "城市等级", dirs()),
    "income_band": ("self-reported/estimated income band (higher = more income)", "收入档位", dirs()),
    "membership_level": ("platform membership level", "会员等级", dirs(churn=-1)),
    "paid_member": ("paid membership (1 = yes)", "付费会员", dirs(churn=-1)),
    "purchase_power": ("platform's purchase-power index (1-100)", "购买力指数", dirs()),
    "thin_file": ("no/thin credit-bureau file (1 = yes)", "征信白户/薄档", dirs()),
    "bureau_score": ("bureau-like credit score (null when thin file)", "征信评分", dirs(credit=-1, limit=-1)),
    "bureau_revolving_fen": (
        "revolving balance on the customer's other credit cards, from the bureau (fen; null when thin file)",
        "征信报告：他行信用卡循环余额",
        dirs(),
    ),
    "bureau_card_utilisation": (
        "utilisation of the customer's other credit cards, from the bureau (0-1; null when thin file)",
        "征信报告：他行信用卡使用率",
        dirs(credit=1),
    ),
    "device_price_band": (
        "price band of the customer's phone (proxy of purchase power)",
        "手机价格档位（代理变量）",
        dirs(),
    ),
}


def static_catalog(customers: pl.LazyFrame) -> Catalog:
    """Catalog of profile features (category vocabularies are read from the data, sorted)."""
    schema = customers.collect_schema()
    cat = Catalog(ALL)
    strings = [c for c, dt in schema.items() if c not in SKIP and (dt == pl.String or dt == pl.Categorical)]
    vocab = (
        customers.select([pl.col(c).cast(pl.String).unique().sort().implode() for c in strings]).collect()
        if strings
        else pl.DataFrame()
    )
    for c, dt in schema.items():
        if c in SKIP:
            continue
        fam = "decoy" if c.startswith("decoy") else ("proxy" if c == "device_price_band" else "profile")
        if c in strings:
            values = [v for v in vocab[c][0].to_list() if v is not None]
            if c in ORDINAL and set(values) <= set(ORDINAL[c]):
                order = ORDINAL[c]
                mapping = {v: i for i, v in enumerate(order)}
                cat.add(
                    f"cust_{c}",
                    pl.col(c).cast(pl.String).replace_strict(mapping, default=None),
                    family=fam,
                    window=None,
                    definition=f"{c} as ordinal code {mapping}",
                    en=f"{c.replace('_', ' ')}",
                    zh=f"客户属性：{zh_name(c)}",
                    source=f"customers.{c}",
                )
            elif len(values) <= 3:
                for v in values:
                    cat.add(
                        f"cust_{c}_{ident(v)}",
                        (pl.col(c).cast(pl.String) == v),
                        family=fam,
                        window=None,
                        definition=f"1 if {c} == '{v}'",
                        en=f"{c.replace('_', ' ')} is {v}",
                        zh=f"客户属性：{zh_name(c)}为{zh_name(v)}",
                        source=f"customers.{c}",
                    )
            else:
                mapping = {v: i for i, v in enumerate(values)}
                cat.add(
                    f"cust_{c}_code",
                    pl.col(c).cast(pl.String).replace_strict(mapping, default=None),
                    family=fam,
                    window=None,
                    definition=f"{c} as nominal integer code {mapping}",
                    en=f"{c.replace('_', ' ')} (category)",
                    zh=f"客户属性：{zh_name(c)}",
                    source=f"customers.{c}",
                )
        elif dt.is_numeric() or dt == pl.Boolean:
            text, zh, d = KNOWN.get(c, (f"raw customer column {c}", f"客户属性：{c}", dirs()))
            if fam == "decoy":
                text, zh = (
                    "pure-noise decoy column (no causal or predictive link by design)",
                    "噪声诱饵变量（设计上无预测力）",
                )
            cat.add(
                f"cust_{c}",
                pl.col(c),
                family=fam,
                window=None,
                definition=text,
                en=text,
                zh=zh,
                direction=d,
                source=f"customers.{c}",
            )
    return cat


def tenure_feature(cat: Catalog) -> None:
    cat.add(
        "cust_months_since_signup",
        ((pl.col("snapshot_date") - pl.col("signup_date")).dt.total_days() / 30.4375),
        family="profile",
        window=None,
        definition="months from platform sign-up to the snapshot date",
        en="customer tenure on the platform",
        zh="平台注册时长（至快照日）",
        direction=dirs(churn=-1),
        source="customers.signup_date",
    )
