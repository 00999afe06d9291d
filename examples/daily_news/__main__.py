"""Run the example: ``python -m examples.daily_news auto --title "每日新闻" --count 3``."""

from __future__ import annotations

from examples.daily_news.cli import main

if __name__ == "__main__":
    main()
