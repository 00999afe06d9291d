"""News candidates for the daily batch: deterministic, offline, ``count * 5`` of them.

The seed's app picks today's news from its sources; this example makes them up from a
small built-in list so that it runs offline and every run of the same title and date
sees the same candidates in the same order (which is what makes a resumed run resume,
and what lets tests script the simulator by prompt).
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: How many candidates are picked per wanted post (the seed: "例如 count*5").
CANDIDATES_PER_POST = 5

# (headline, summary, category): the built-in "news feed".
_FEED: tuple[tuple[str, str, str], ...] = (
    ("长江流域迎来今年首场大范围降雨", "气象部门提醒沿江城市做好防汛准备。", "天气"),
    ("新一代国产大飞机完成首次跨洋试飞", "试飞历时十四小时，各项指标正常。", "科技"),
    ("城市夜间经济持续升温", "多地夜市客流同比增长三成。", "消费"),
    ("大熊猫幼崽首次与游客见面", "成都基地新生双胞胎状态良好。", "社会"),
    ("高校毕业生就业服务月启动", "线上线下同步提供超过十万个岗位。", "教育"),
    ("新能源汽车下乡活动走进西部县城", "充电设施覆盖率进一步提升。", "汽车"),
    ("国家图书馆推出古籍数字化新成果", "上万册善本可在线免费阅读。", "文化"),
    ("沿海城市试点无人机快递配送", "偏远海岛实现半小时送达。", "科技"),
    ("全民健身日各地举办马拉松", "参赛人数创历史新高。", "体育"),
    ("夏粮收购进度过半", "优质小麦价格保持稳定。", "农业"),
    ("老字号品牌借助直播焕发新生", "非遗技艺吸引大量年轻观众。", "消费"),
    ("青藏高原发现新的植物物种", "科研团队历时三年完成鉴定。", "科学"),
    ("城市更新让老街区焕然一新", "改造后的街区保留了历史风貌。", "城市"),
    ("中欧班列开行数量再创新高", "跨境物流效率明显提升。", "经济"),
    ("暑期文旅消费迎来高峰", "博物馆预约一票难求。", "文旅"),
    ("深海探测器刷新下潜纪录", "获取了大量珍贵的海底样本。", "科学"),
    ("社区食堂让老人吃上热乎饭", "多地推广助餐服务网络。", "民生"),
    ("人工智能助力早期疾病筛查", "试点医院筛查效率提高一倍。", "健康"),
    ("候鸟提前抵达湿地越冬", "保护区观测到多种珍稀鸟类。", "生态"),
    ("乡村音乐节吸引城市游客", "民宿入住率持续走高。", "文旅"),
    ("新版地铁线路图正式发布", "三条新线路年内开通运营。", "城市"),
    ("少年科技创新大赛落幕", "多项作品获得国家专利。", "教育"),
    ("非遗手工艺亮相国际展会", "海外订单同比翻番。", "文化"),
)

_STYLES = ("新闻插画风格", "写实摄影风格", "扁平插画风格", "水彩风格", "电影感构图")


@dataclass(frozen=True, slots=True)
class NewsCandidate:
    """One news item the batch may illustrate; ``index`` is its place in the batch (1-based)."""

    index: int
    post_id: str
    headline: str
    summary: str
    category: str
    prompt: str
    reference_asset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a step returns (and a map step's item is)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NewsCandidate:
        """Rebuild a candidate from :meth:`to_dict`'s output."""
        return cls(**data)


def post_id_for(title: str, date: str, index: int, batch: str = "") -> str:
    """A post's id: the date, a hash of the batch (its title, date and id) and its place in it.

    ``batch`` is the batch's own id (the flow passes its run id), so two batches for one
    title and date (``--key``) never share, or overwrite, a post.
    """
    digest = hashlib.sha256(f"{title}\n{date}\n{batch}".encode()).hexdigest()[:8]
    return f"{date.replace('-', '')}-{digest}-{index:02d}"


def find_assets(pattern: str | None) -> list[str]:
    """Files matching ``--assets-glob`` (sorted; directories left out; none is fine)."""
    if not pattern:
        return []
    return sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())


def pick_candidates(
    title: str, date: str, count: int, assets: list[str] | None = None, *, batch: str = ""
) -> list[NewsCandidate]:
    """``count * 5`` candidates for the batch ``title`` on ``date``, always the same ones.

    Their news and prompts depend on ``title`` and ``date`` only; their post ids on
    ``batch`` too (:func:`post_id_for`).

    The feed is rotated by the date, so each day starts elsewhere; past the end of the
    feed headlines repeat with a "(续 n)" suffix, so every prompt stays unique. Local
    assets (``--assets-glob``) are handed out in turn as reference pictures.
    """
    if count < 1:
        raise ValueError(f"count={count!r}: expected a whole number ≥ 1")
    total = count * CANDIDATES_PER_POST
    start = int(hashlib.sha256(date.encode()).hexdigest(), 16) % len(_FEED)
    files = assets or []
    picked: list[NewsCandidate] = []
    for n in range(total):
        headline, summary, category = _FEED[(start + n) % len(_FEED)]
        lap = n // len(_FEED)
        if lap:
            headline = f"{headline}（续 {lap}）"
        index = n + 1
        style = _STYLES[n % len(_STYLES)]
        prompt = f"{title}配图 #{index}：{headline}。{style}，画面中不出现文字"
        picked.append(
            NewsCandidate(
                index=index,
                post_id=post_id_for(title, date, index, batch),
                headline=headline,
                summary=summary,
                category=category,
                prompt=prompt,
                reference_asset=files[n % len(files)] if files else None,
            )
        )
    return picked
