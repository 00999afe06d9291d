"""Run the family-photo flow: ``python -m examples.family_photo``.

Without ``--base-url`` (or ``FAMILY_PHOTO_BASE_URL``) it starts the simulator and asks it for
a few faults on the way, so the retries show: the photo submission fails once with a 500,
a video status poll is rate-limited once, and the payment's answer is lost once after the
charge (a reset). The seed's log lines go to stderr; the files go to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from examples.api_retry import seed_logs
from examples.family_photo.client import Order, PayAPI, PhotoAPI
from regen import GiveUp, Kind, RegenError
from regen.providers import Transport, download_image

BASE_URL_VARIABLE = "FAMILY_PHOTO_BASE_URL"


@contextlib.contextmanager
def _server(base_url: str | None) -> Iterator[tuple[str, Any]]:
    """The API's base URL, and the simulator serving it when none was given."""
    if base_url:
        yield base_url.rstrip("/"), None
        return
    try:
        from regen.sim import run_simulator  # noqa: PLC0415 - the simulator is an extra
    except ImportError:
        sys.exit("the simulator needs regen's 'sim' extra: pip install 'regen[sim]'")
    with run_simulator(task_seconds=0.5) as sim:
        yield sim.url, sim


async def run(base_url: str, api_key: str, out: Path, *, faults: bool) -> dict[str, Any]:
    """The whole flow (``out`` must exist); returns what it made, for a caller to check."""

    def fault(spec: str) -> dict[str, str] | None:
        return {"X-Regen-Fault": spec} if faults else None

    async with Transport() as transport:
        photos = PhotoAPI(f"{base_url}/photo/v1", api_key, transport=transport)
        pay = PayAPI(f"{base_url}/v3/pay", api_key, transport=transport)

        task_id = await photos.generate_art_photo(
            "全家福，春节，水彩风格", style="watercolor", headers=fault("server_error*1")
        )
        photo = await photos.get_task_status(task_id)
        while photo.state is not None and not photo.state.final:
            await asyncio.sleep(0.3)
            photo = await photos.get_task_status(task_id)
        if photo.url is None:
            raise SystemExit(f"the photo task ended {photo.status}: {photo.error}")
        image = await download_image(photo.url, transport=transport)
        photo_path = image.save(out / f"art_photo{image.info.extension}")
        print(f"art photo   {task_id}: {image.info.width}x{image.info.height} -> {photo_path}")

        video = await photos.create_video("全家福动起来", image_url=photo.url, duration=3)
        # The same status call the front end polls, rate-limited once on the way.
        video = await photos.get_video_task_status(video.task_id, headers=fault("rate_limit:1*1"))
        clip = await download_image(video.url or "", transport=transport)
        video_path = clip.save(out / f"video{clip.info.extension}")
        print(f"video       {video.task_id}: {clip.info.format} -> {video_path}")

        order = Order("FP20240210000001", "全家福套餐", 990, "o_sim_user_0001")
        payment = await pay.transactions_jsapi(order, headers=fault("reset*1"))
        again = await pay.retry_payment(order)
        print(f"payment     {order.out_trade_no}: prepay_id={payment.prepay_id}")
        same = again.prepay_id == payment.prepay_id
        print(f"retried     {order.out_trade_no}: same prepay_id={same}")
        return {"photo": photo_path, "video": video_path, "payment": payment, "again": again}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.family_photo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--base-url",
        help=f"the API's root URL (default: ${BASE_URL_VARIABLE}, else start the simulator)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("FAMILY_PHOTO_API_KEY", "sk-family-photo-demo-0000")
    )
    parser.add_argument("--out", type=Path, default=Path("family_photo_out"))
    parser.add_argument(
        "--no-faults", action="store_true", help="do not ask the simulator for faults"
    )
    parser.add_argument("--quiet", action="store_true", help="no retry log lines")
    args = parser.parse_args(argv)
    given_by = "--base-url" if args.base_url else BASE_URL_VARIABLE
    args.base_url = args.base_url or os.environ.get(BASE_URL_VARIABLE)
    if args.base_url and not args.base_url.startswith(("http://", "https://")):
        parser.error(f"{given_by}={args.base_url!r}: expected the API's http(s) root URL")
    args.out.mkdir(parents=True, exist_ok=True)
    handler = None if args.quiet else seed_logs.install()
    try:
        with _server(args.base_url) as (base_url, sim):
            asyncio.run(
                run(base_url, args.api_key, args.out, faults=sim is not None and not args.no_faults)
            )
            if sim is not None:
                payments = sim.stats()["payments"]
                print(
                    f"simulator   payment requests={payments['requests']} "
                    f"charges={payments['charges']}"
                )
    except RegenError as error:
        print(_one_line(error, args.base_url, given_by), file=sys.stderr)
        return 1
    finally:
        if handler is not None:
            import logging  # noqa: PLC0415 - only to undo install()

            logging.getLogger("regen.retry").removeHandler(handler)
    return 0


def _one_line(error: RegenError, base_url: str | None, given_by: str) -> str:
    """What went wrong, in one line that says what to fix."""
    if base_url and isinstance(error, GiveUp) and error.kind in (Kind.CONNECTION, Kind.TIMEOUT):
        why = "no connection" if error.kind is Kind.CONNECTION else "no answer in time"
        if error.last is not None and error.last.reason:
            why += f" ({error.last.reason})"
        tries = len(error.attempts)
        drop = "drop --base-url" if given_by == "--base-url" else f"unset {given_by}"
        return (
            f"family_photo: cannot reach {base_url} (set by {given_by}): {why} after "
            f"{tries} attempt{'s' if tries != 1 else ''}. Check the URL and that the API "
            f"is up, or {drop} to run against the built-in simulator."
        )
    return f"family_photo: {error}"


if __name__ == "__main__":
    raise SystemExit(main())
