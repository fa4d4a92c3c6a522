"""Chinese display names of the world's column names and vocabulary values, for the dictionary's ``reason_zh``
(a reason a bank sends to a customer is Chinese throughout: issue 21). One home for these names; a value the
world adds without a name here keeps its raw spelling, which ``tests/test_features.py`` reports as a defect (no Latin letter in any ``reason_zh``)."""

from __future__ import annotations

ZH = {
    # customers' attributes (column names)
    "acquisition_channel": "获客渠道",
    "education": "学历",
    "gender": "性别",
    "occupation": "职业",
    "partner_bank": "合作银行",
    "province": "所在省份",
    # their values
    "livestream": "直播",
    "offline_promoter": "线下推广",
    "organic": "自然流量",
    "search_ad": "搜索广告",
    "social_referral": "社交推荐",
    "associate": "大专",
    "bachelor": "本科",
    "high_school": "高中及以下",
    "master_plus": "硕士及以上",
    "F": "女",
    "M": "男",
    "civil_servant": "公务员",
    "freelancer": "自由职业",
    "gig_worker": "灵活就业",
    "salaried": "受薪雇员",
    "self_employed": "个体经营",
    "student": "学生",
    "bank_a": "甲银行",
    "bank_b": "乙银行",
    "bank_c": "丙银行",
    # order categories
    "apparel": "服饰",
    "electronics": "电子产品",
    "grocery": "日用百货",
    "beauty": "美妆",
    "home": "家居",
    "baby": "母婴",
    "sports": "运动",
    "digital_goods": "数字商品",
    "travel": "旅行",
    "other": "其他",
    "gift_cards": "礼品卡",
    "phone_topup": "话费充值",
    "game_credits": "游戏点卡",
    # card spending channels
    "platform": "平台内",
    "online": "线上",
    "offline": "线下",
    # statement payment types
    "none_due": "无应还款",
    "full": "全额还款",
    "minimum": "最低还款",
    "partial": "部分还款",
    "below_minimum": "低于最低还款",
    "missed": "未还款",
}


def zh(value: str) -> str:
    """The Chinese name of a column name or vocabulary value (the raw value when none is known)."""
    return ZH.get(value, value)
